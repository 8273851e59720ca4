"""Batch samplers over tensors that already live on the training device.

Both samplers move their arrays to the device once; a batch is one ``torch.randint`` plus one indexing op per
field (no per-sample Python loops, no host-to-device copies per batch).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from diffagents.data.errors import DataError


def _to_tensor(name: str, arr: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    if isinstance(arr, torch.Tensor):
        return arr.to(device)
    arr = np.asarray(arr)
    if arr.dtype == np.float64:
        arr = arr.astype(np.float32)
    if arr.dtype.kind not in "biuf":
        raise DataError(f"array {name!r}: expected a numeric or bool dtype, got {arr.dtype}")
    return torch.from_numpy(np.ascontiguousarray(arr)).to(device)


def _random_index(n: int, batch_size: int, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    if batch_size < 1:
        raise DataError(f"batch_size: expected an integer >= 1, got {batch_size}")
    gen_device = generator.device if generator is not None else device
    idx = torch.randint(0, n, (batch_size,), generator=generator, device=gen_device)
    return idx.to(device)


class TensorSampler:
    """Uniform minibatches from equally long arrays stored as tensors on ``device``.

    Args:
        arrays: Field name -> array with the same first dimension ``N`` (float64 is stored as float32).
        device: Torch device for storage and batches.

    Raises:
        DataError: If ``arrays`` is empty or the first dimensions differ.
    """

    def __init__(self, arrays: Mapping[str, np.ndarray | torch.Tensor], device: str | torch.device = "cpu") -> None:
        if not arrays:
            raise DataError("arrays: expected at least one array, got an empty mapping")
        self.device = torch.device(device)
        self.tensors = {k: _to_tensor(k, v, self.device) for k, v in arrays.items()}
        lengths = {k: int(v.shape[0]) for k, v in self.tensors.items()}
        n = next(iter(lengths.values()))
        bad = {k: v for k, v in lengths.items() if v != n}
        if bad:
            raise DataError(f"arrays: expected first dimension {n} for every field, got {lengths}")
        if n == 0:
            raise DataError("arrays: expected at least one row, got 0")
        self._n = n

    def __len__(self) -> int:
        return self._n

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Draw ``batch_size`` rows uniformly with replacement.

        Args:
            batch_size: Number of rows ``B``.
            generator: Optional torch generator (CPU or on ``device``) for reproducible batches.

        Returns:
            Field name -> ``(B, ...)`` tensor on ``device``.
        """
        idx = _random_index(self._n, batch_size, generator, self.device)
        return {k: v[idx] for k, v in self.tensors.items()}


class WindowSampler:
    """Horizon-``H`` window batches gathered from padded per-episode arrays on ``device``.

    Built by :meth:`diffagents.data.TrajectoryWindows.sampler`; memory is that of the padded dataset, not of
    ``M x H`` windows.

    Args:
        flat: Padded rows keyed by field (see :mod:`diffagents.data.windows`).
        index: ``(M,)`` first row of each window.
        horizon: ``H``.
        device: Torch device.
        joint: Put the agent axis first for observations/actions (``(B, N, H, D)``).
    """

    def __init__(
        self, flat: Mapping[str, np.ndarray], index: np.ndarray, horizon: int,
        device: str | torch.device = "cpu", joint: bool = False,
    ) -> None:
        self.device = torch.device(device)
        self.flat = {k: _to_tensor(k, v, self.device) for k, v in flat.items()}
        self.index = torch.as_tensor(np.asarray(index, dtype=np.int64), device=self.device)
        self.offsets = torch.arange(horizon, device=self.device)
        self.horizon = horizon
        self.joint = joint
        if len(self.index) == 0:
            raise DataError("index: expected at least one window, got 0")

    def __len__(self) -> int:
        return int(self.index.shape[0])

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Draw ``batch_size`` windows uniformly with replacement.

        Returns:
            Field -> ``(B, H, ...)`` tensor (``(B, N, H, D)`` observations/actions when ``joint``).
        """
        idx = _random_index(len(self), batch_size, generator, self.device)
        rows = self.index[idx, None] + self.offsets  # (B, H)
        out = {k: v[rows] for k, v in self.flat.items()}
        if self.joint:
            for k in ("observations", "actions"):
                out[k] = out[k].transpose(1, 2)  # (B, H, N, D) -> (B, N, H, D)
        return out
