"""Per-dimension normalizers fitted on a dataset and applied identically at act time.

* :class:`GaussianNormalizer`: ``(x - mean) / std``.
* :class:`MinMaxNormalizer` (alias "limits", Diffuser's ``LimitsNormalizer``): ``[min, max] -> [-1, 1]``.
* :class:`CDFNormalizer` (Diffuser's ``CDFNormalizer``): each dimension through its empirical CDF, mapped to
  ``[-1, 1]``; robust to heavy tails and multimodal marginals.

Every normalizer fits over all axes but the last (``(N, D)`` or ``(N, ..., D)``), accepts numpy arrays or
torch tensors on any device (same type and dtype out), and round-trips through :meth:`state_dict` /
:func:`normalizer_from_state_dict` (numpy arrays, floats and strings only: JSON / safetensors friendly).
Fit on real steps (e.g. ``Transitions.observations``), not on padded windows, whose zeros would bias the
statistics.
"""

from __future__ import annotations

from typing import Any, ClassVar, TypeVar

import numpy as np
import torch

from diffagents.data.errors import DataError

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


def _fit_matrix(x: np.ndarray | torch.Tensor) -> np.ndarray:
    arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if arr.ndim < 1 or arr.size == 0:
        raise DataError(f"normalizer fit: expected a non-empty array (N, ..., D), got shape {arr.shape}")
    mat = arr.reshape(-1, arr.shape[-1]).astype(np.float64)
    if not np.isfinite(mat).all():
        raise DataError("normalizer fit: expected finite values, got NaN/Inf")
    return mat


def _like(stat: np.ndarray, x: ArrayT) -> ArrayT:
    if isinstance(x, torch.Tensor):
        return torch.as_tensor(stat, dtype=x.dtype, device=x.device)
    return stat.astype(x.dtype if np.issubdtype(x.dtype, np.floating) else np.float32)


class Normalizer:
    """Base class: subclasses define ``kind``, ``_fit``, ``_forward``, ``_inverse`` and ``stats``."""

    kind: ClassVar[str] = ""
    stats: ClassVar[tuple[str, ...]] = ()

    def __init__(self) -> None:
        self.fitted = False

    def fit(self, x: np.ndarray | torch.Tensor) -> Normalizer:
        """Fit the statistics on ``x`` of shape ``(N, D)`` or ``(N, ..., D)``; returns ``self``."""
        self._fit(_fit_matrix(x))
        self.fitted = True
        return self

    def _check(self, x: Any) -> None:
        if not self.fitted:
            raise DataError(f"{type(self).__name__}: expected a fitted normalizer, got an unfitted one")
        dim = int(getattr(self, self.stats[0]).shape[-1])
        if x.shape[-1] != dim:
            raise DataError(f"{type(self).__name__}: expected last dimension {dim}, got shape {tuple(x.shape)}")

    def normalize(self, x: ArrayT) -> ArrayT:
        """Map data-space ``x`` (``(..., D)``) to the normalized space."""
        self._check(x)
        return self._forward(x if isinstance(x, torch.Tensor) else np.asarray(x))

    def unnormalize(self, x: ArrayT) -> ArrayT:
        """Inverse of :meth:`normalize`."""
        self._check(x)
        return self._inverse(x if isinstance(x, torch.Tensor) else np.asarray(x))

    def state_dict(self) -> dict[str, np.ndarray | float | str]:
        """Statistics as numpy arrays plus ``kind``."""
        out: dict[str, np.ndarray | float | str] = {"kind": self.kind}
        for name in self.stats:
            out[name] = np.asarray(getattr(self, name), dtype=np.float64).copy()
        return out

    @classmethod
    def from_state_dict(cls, d: dict[str, Any]) -> Normalizer:
        """Rebuild a fitted normalizer (dispatches on ``d['kind']`` when called on the base class)."""
        kind = str(d.get("kind", ""))
        target = cls if cls is not Normalizer else NORMALIZERS.get(kind)
        if target is None or (cls is not Normalizer and kind != cls.kind):
            raise DataError(f"normalizer state 'kind': expected one of {sorted(NORMALIZERS)}, got {kind!r}")
        obj = target()
        for name in target.stats:
            if name not in d:
                raise DataError(f"normalizer state: expected field {name!r} for {kind!r}, got {sorted(d)}")
            setattr(obj, name, np.asarray(d[name], dtype=np.float64))
        obj.fitted = True
        return obj

    def _fit(self, x: np.ndarray) -> None:
        raise NotImplementedError

    def _forward(self, x: ArrayT) -> ArrayT:
        raise NotImplementedError

    def _inverse(self, x: ArrayT) -> ArrayT:
        raise NotImplementedError


class GaussianNormalizer(Normalizer):
    """``(x - mean) / std`` per dimension (``std`` floored at ``eps``)."""

    kind = "gaussian"
    stats = ("mean", "std")

    def __init__(self, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps

    def _fit(self, x: np.ndarray) -> None:
        self.mean = x.mean(axis=0)
        self.std = np.maximum(x.std(axis=0), self.eps)

    def _forward(self, x: ArrayT) -> ArrayT:
        return (x - _like(self.mean, x)) / _like(self.std, x)

    def _inverse(self, x: ArrayT) -> ArrayT:
        return x * _like(self.std, x) + _like(self.mean, x)


class MinMaxNormalizer(Normalizer):
    """Affine map of ``[min, max]`` to ``[-1, 1]`` per dimension (constant dimensions map to 0)."""

    kind = "minmax"
    stats = ("low", "high")

    def _fit(self, x: np.ndarray) -> None:
        self.low = x.min(axis=0)
        self.high = x.max(axis=0)

    def _scale(self) -> np.ndarray:
        return np.maximum(self.high - self.low, 1e-8) / 2.0

    def _forward(self, x: ArrayT) -> ArrayT:
        centre = (self.high + self.low) / 2.0
        return (x - _like(centre, x)) / _like(self._scale(), x)

    def _inverse(self, x: ArrayT) -> ArrayT:
        centre = (self.high + self.low) / 2.0
        return x * _like(self._scale(), x) + _like(centre, x)


def _interp_torch(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """Per-dimension ``np.interp`` for ``x (..., D)`` with knots ``xp, fp (D, K)`` (clamped at the ends)."""
    shape = x.shape
    xt = x.reshape(-1, shape[-1]).T.contiguous()  # (D, n)
    k = xp.shape[1]
    hi = torch.searchsorted(xp, xt, right=True).clamp(1, k - 1)  # (D, n)
    lo = hi - 1
    x0, x1 = xp.gather(1, lo), xp.gather(1, hi)
    y0, y1 = fp.gather(1, lo), fp.gather(1, hi)
    w = ((xt - x0) / (x1 - x0).clamp_min(1e-12)).clamp(0.0, 1.0)
    return (y0 + w * (y1 - y0)).T.reshape(shape)


class CDFNormalizer(Normalizer):
    """Empirical-CDF normalizer: ``x -> 2 F_d(x) - 1`` per dimension, piecewise-linear between quantiles.

    Args:
        n_quantiles: Number of quantile knots stored per dimension.
    """

    kind = "cdf"
    stats = ("quantiles", "levels")  # both (K, D)

    def __init__(self, n_quantiles: int = 1000) -> None:
        super().__init__()
        self.n_quantiles = n_quantiles

    def _fit(self, x: np.ndarray) -> None:
        levels = np.linspace(0.0, 1.0, self.n_quantiles)
        q = np.quantile(x, levels, axis=0)  # (K, D)
        # strictly increasing knots so that the map is invertible (ties spread by a tiny epsilon)
        q = q + np.arange(q.shape[0])[:, None] * 1e-9 * np.maximum(1.0, np.abs(q).max(axis=0, keepdims=True))
        self.quantiles = q
        self.levels = np.broadcast_to(levels[:, None], q.shape).copy()

    def _map(self, x: ArrayT, xp: np.ndarray, fp: np.ndarray) -> ArrayT:
        """Interpolate each dimension ``d`` of ``x`` on knots ``xp[:, d] -> fp[:, d]`` (``(K, D)``)."""
        if isinstance(x, torch.Tensor):
            return _interp_torch(x, _like(xp.T.copy(), x), _like(fp.T.copy(), x))
        flat = x.reshape(-1, x.shape[-1])
        cols = [np.interp(flat[:, d], xp[:, d], fp[:, d]) for d in range(flat.shape[1])]  # loop over dims only
        return np.stack(cols, axis=-1).reshape(x.shape).astype(_like(xp[0], x).dtype)

    def _forward(self, x: ArrayT) -> ArrayT:
        return self._map(x, self.quantiles, self.levels) * 2.0 - 1.0

    def _inverse(self, x: ArrayT) -> ArrayT:
        return self._map((x + 1.0) / 2.0, self.levels, self.quantiles)


NORMALIZERS: dict[str, type[Normalizer]] = {
    "gaussian": GaussianNormalizer, "minmax": MinMaxNormalizer, "limits": MinMaxNormalizer,
    "cdf": CDFNormalizer,
}


def make_normalizer(name: str, **kwargs: Any) -> Normalizer:
    """Unfitted normalizer by name: ``"gaussian"``, ``"minmax"`` / ``"limits"`` or ``"cdf"``."""
    if name not in NORMALIZERS:
        raise DataError(f"normalizer name: expected one of {sorted(NORMALIZERS)}, got {name!r}")
    return NORMALIZERS[name](**kwargs)


def normalizer_from_state_dict(d: dict[str, Any]) -> Normalizer:
    """Rebuild any fitted normalizer from :meth:`Normalizer.state_dict`."""
    return Normalizer.from_state_dict(d)
