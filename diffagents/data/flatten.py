"""Stable flattening of (Dict) observations into float32 vectors.

Key order (documented and stable):

* a goal-conditioned Dict with keys ``observation``, ``achieved_goal`` and ``desired_goal`` (PointMaze,
  gymnasium-robotics) flattens to ``observation + desired_goal``; ``achieved_goal`` is dropped because it is
  a copy of part of ``observation``;
* any other Dict flattens all its keys in sorted order (gymnasium's ``Dict`` order);
* a ``Box`` is flattened row-major (C order).

The flattener is JSON-serialisable (:meth:`ObsFlattener.to_dict`) so it can be saved with any model trained on
flattened data and re-applied identically at act time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from gymnasium import spaces

from diffagents.data.errors import DataError

GOAL_KEYS = ("observation", "achieved_goal", "desired_goal")


def default_keys(space: spaces.Dict) -> tuple[str, ...]:
    """The default key order for a Dict space (see the module docstring)."""
    keys = tuple(space.spaces.keys())
    if set(keys) == set(GOAL_KEYS):
        return ("observation", "desired_goal")
    return tuple(sorted(keys))


def _box_of(space: spaces.Space, name: str, what: str) -> spaces.Box:
    if not isinstance(space, spaces.Box):
        raise DataError(f"{what} field {name!r}: expected a gymnasium Box, got {type(space).__name__}")
    return space


@dataclass(frozen=True)
class ObsFlattener:
    """Flatten Box or one-level Dict-of-Box observations to float32 vectors.

    Attributes:
        keys: Dict keys in flattening order, or ``None`` when the source space is a Box.
        shapes: Shape of each part (one entry for a Box).
        low: Lower bounds of the flat space.
        high: Upper bounds of the flat space.
    """

    keys: tuple[str, ...] | None
    shapes: tuple[tuple[int, ...], ...]
    low: np.ndarray
    high: np.ndarray

    @classmethod
    def from_space(
        cls, space: spaces.Space, keys: Sequence[str] | None = None, *, what: str = "observation_space"
    ) -> ObsFlattener:
        """Build the flattener of ``space``.

        Args:
            space: A ``Box`` or a ``Dict`` of ``Box`` spaces.
            keys: Explicit key order for a Dict (default: :func:`default_keys`).
            what: Name of the space in error messages (``"action_space"`` when flattening actions).

        Returns:
            The flattener.

        Raises:
            DataError: If the space (or a Dict entry) is not a Box, or a requested key is missing.
        """
        if isinstance(space, spaces.Dict):
            order = tuple(keys) if keys is not None else default_keys(space)
            missing = [k for k in order if k not in space.spaces]
            if missing:
                raise DataError(f"{what}: expected keys {list(order)}, got {list(space.spaces)}")
            boxes = [_box_of(space.spaces[k], k, what) for k in order]
            return cls(
                keys=order,
                shapes=tuple(tuple(b.shape) for b in boxes),
                low=np.concatenate([b.low.reshape(-1) for b in boxes]).astype(np.float32),
                high=np.concatenate([b.high.reshape(-1) for b in boxes]).astype(np.float32),
            )
        if keys is not None:
            raise DataError(f"{what}: expected a Dict when keys={list(keys)} are given, got {type(space).__name__}")
        box = _box_of(space, "(whole space)", what)
        return cls(
            keys=None,
            shapes=(tuple(box.shape),),
            low=box.low.reshape(-1).astype(np.float32),
            high=box.high.reshape(-1).astype(np.float32),
        )

    @property
    def dim(self) -> int:
        """Size of the flat vector."""
        return int(self.low.shape[0])

    @property
    def flat_space(self) -> spaces.Box:
        """The flat ``Box`` (float32) that :meth:`__call__` maps into."""
        return spaces.Box(self.low.copy(), self.high.copy(), dtype=np.float32)

    def _flatten_part(self, x: Any, shape: tuple[int, ...], name: str) -> np.ndarray:
        arr = np.asarray(x, dtype=np.float32)
        nd = len(shape)
        if arr.ndim < nd or tuple(arr.shape[arr.ndim - nd :]) != shape:
            raise DataError(f"observation field {name!r}: expected trailing shape {shape}, got {arr.shape}")
        return arr.reshape(*arr.shape[: arr.ndim - nd], int(np.prod(shape)))

    def __call__(self, obs: Any) -> np.ndarray:
        """Flatten one observation, a batch ``(B, ...)`` or a dict of arrays ``{key: (T, ...)}``.

        Returns:
            ``float32`` array of shape ``(..., dim)``.
        """
        if self.keys is None:
            if isinstance(obs, Mapping):
                raise DataError("observation: expected an array for a Box space, got a dict")
            return self._flatten_part(obs, self.shapes[0], "observation")
        if not isinstance(obs, Mapping):
            raise DataError(f"observation: expected a dict with keys {list(self.keys)}, got {type(obs).__name__}")
        missing = [k for k in self.keys if k not in obs]
        if missing:
            raise DataError(f"observation: expected keys {list(self.keys)}, missing {missing}")
        parts = [self._flatten_part(obs[k], s, k) for k, s in zip(self.keys, self.shapes)]
        return np.concatenate(parts, axis=-1)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able description (infinite bounds are written as strings)."""
        return {
            "keys": list(self.keys) if self.keys is not None else None,
            "shapes": [list(s) for s in self.shapes],
            "low": [str(v) if not np.isfinite(v) else float(v) for v in self.low],
            "high": [str(v) if not np.isfinite(v) else float(v) for v in self.high],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ObsFlattener:
        """Inverse of :meth:`to_dict`."""
        for field in ("keys", "shapes", "low", "high"):
            if field not in d:
                raise DataError(f"flattener: expected field {field!r}, got keys {sorted(d)}")
        keys = tuple(d["keys"]) if d["keys"] is not None else None
        return cls(
            keys=keys,
            shapes=tuple(tuple(int(v) for v in s) for s in d["shapes"]),
            low=np.array([float(v) for v in d["low"]], dtype=np.float32),
            high=np.array([float(v) for v in d["high"]], dtype=np.float32),
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ObsFlattener):
            return NotImplemented
        return (
            self.keys == other.keys
            and self.shapes == other.shapes
            and np.array_equal(self.low, other.low)
            and np.array_equal(self.high, other.high)
        )

    __hash__ = None  # type: ignore[assignment]
