"""JSON descriptions of Gymnasium spaces, so checkpoints never need pickle to restore them."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces


def space_to_dict(space: spaces.Space[Any]) -> dict[str, Any]:
    """Describe a Box / Discrete / MultiDiscrete / Dict space as plain JSON data."""
    if isinstance(space, spaces.Box):
        return {
            "type": "Box",
            "shape": list(space.shape),
            "dtype": str(space.dtype),
            "low": np.asarray(space.low, dtype=np.float64).tolist(),
            "high": np.asarray(space.high, dtype=np.float64).tolist(),
        }
    if isinstance(space, spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, spaces.MultiDiscrete):
        return {"type": "MultiDiscrete", "nvec": np.asarray(space.nvec).tolist()}
    if isinstance(space, spaces.Dict):
        return {"type": "Dict", "spaces": {k: space_to_dict(v) for k, v in space.spaces.items()}}
    raise TypeError(f"space: cannot serialise {type(space).__name__}; supported: Box, Discrete, MultiDiscrete, Dict")


def space_from_dict(d: dict[str, Any]) -> spaces.Space[Any]:
    """Inverse of :func:`space_to_dict`; raises ValueError on malformed input."""
    try:
        kind = d["type"]
        if kind == "Box":
            low = np.asarray(d["low"], dtype=np.float64).reshape(d["shape"])
            high = np.asarray(d["high"], dtype=np.float64).reshape(d["shape"])
            dtype = np.dtype(d["dtype"])
            return spaces.Box(low.astype(dtype), high.astype(dtype), shape=tuple(d["shape"]), dtype=dtype)  # type: ignore[arg-type]
        if kind == "Discrete":
            return spaces.Discrete(int(d["n"]), start=int(d.get("start", 0)))
        if kind == "MultiDiscrete":
            return spaces.MultiDiscrete(np.asarray(d["nvec"], dtype=np.int64))
        if kind == "Dict":
            return spaces.Dict({k: space_from_dict(v) for k, v in d["spaces"].items()})
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"space: malformed space description {d!r}: {exc}") from exc
    raise ValueError(f"space: unknown space type {kind!r}")


def spaces_equal(a: spaces.Space[Any], b: spaces.Space[Any]) -> bool:
    """Structural equality (type, shape, bounds, keys) that ignores dtype width differences of bounds."""
    if type(a) is not type(b):
        return False
    if isinstance(a, spaces.Box) and isinstance(b, spaces.Box):
        return a.shape == b.shape and np.allclose(a.low, b.low) and np.allclose(a.high, b.high)
    if isinstance(a, spaces.Dict) and isinstance(b, spaces.Dict):
        return set(a.spaces) == set(b.spaces) and all(spaces_equal(a[k], b[k]) for k in a.spaces)
    return a == b
