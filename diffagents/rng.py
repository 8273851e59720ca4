"""Capture and restore every RNG a training run draws from (Python, NumPy legacy global, torch CPU and CUDA).

Used by checkpoints so that a run killed and resumed from its last checkpoint ends with the same weights as an
uninterrupted run (on CPU; CUDA kernels may be non-deterministic).
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def get_rng_state() -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Return ``(json_meta, arrays)`` describing all RNG states."""
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)  # type: ignore[misc]  # noqa: NPY002
    py_version, py_state, py_gauss = random.getstate()
    meta = {"numpy": {"kind": kind, "pos": int(pos), "has_gauss": int(has_gauss), "cached": float(cached)},
            "python": {"version": py_version, "state": list(py_state), "gauss": py_gauss}}
    arrays = {"rng/numpy_keys": np.asarray(keys, dtype=np.uint32),
              "rng/torch": torch.get_rng_state().numpy().copy()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            arrays[f"rng/cuda{i}"] = s.numpy().copy()
    return meta, arrays


def set_rng_state(meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    """Restore what :func:`get_rng_state` captured; raises KeyError if parts are missing."""
    n = meta["numpy"]
    np.random.set_state((n["kind"], arrays["rng/numpy_keys"], n["pos"], n["has_gauss"], n["cached"]))  # noqa: NPY002
    p = meta["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
    torch.set_rng_state(torch.from_numpy(np.ascontiguousarray(arrays["rng/torch"])))
    if torch.cuda.is_available():
        states = [torch.from_numpy(np.ascontiguousarray(arrays[f"rng/cuda{i}"]))
                  for i in range(torch.cuda.device_count()) if f"rng/cuda{i}" in arrays]
        if states:
            torch.cuda.set_rng_state_all(states)
