"""Host-to-device copies of observation and batch arrays.

On CUDA the array is staged in page-locked (pinned) memory and copied with ``non_blocking=True``, so the copy
is a DMA the GPU orders on the current stream and the host does not wait for it; elsewhere it is a plain
``torch.as_tensor``.
"""

from __future__ import annotations

from typing import Any

import torch


def to_device(array: Any, device: torch.device | str, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``array`` (NumPy or anything ``torch.as_tensor`` takes) as a tensor on ``device``.

    Args:
        array: host data.
        device: target device.
        dtype: optional dtype (default: the array's).

    Returns:
        The tensor on ``device``; on CUDA the copy may still be in flight (ordered before later kernels).
    """
    device = torch.device(device)
    if device.type != "cuda":
        return torch.as_tensor(array, dtype=dtype, device=device)
    if isinstance(array, torch.Tensor) and array.is_cuda:
        return array.to(device=device, dtype=dtype)
    host = torch.as_tensor(array, dtype=dtype)  # no copy when the dtype already matches
    return host.pin_memory().to(device, non_blocking=True)
