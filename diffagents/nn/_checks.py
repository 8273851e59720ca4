"""Input validation shared by the denoisers (shape-only, so no host syncs and nothing on the hot path but
Python integer comparisons)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

BATCH = "B"


def fmt_shape(dims: Sequence[int | str]) -> str:
    """``(B, 4)`` style rendering of an expected shape."""
    return "(" + ", ".join(str(d) for d in dims) + ")"


def check_positive(name: str, value: int) -> None:
    """Raise a ``ValueError`` naming ``name`` unless ``value`` is a positive integer."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name}: expected a positive integer, got {value!r}")


def check_probability(name: str, value: float) -> None:
    """Raise a ``ValueError`` unless ``0 <= value < 1``."""
    if not 0.0 <= float(value) < 1.0:
        raise ValueError(f"{name}: expected a probability in [0, 1), got {value!r}")


def check_features(x: torch.Tensor, dim: int, name: str = "x") -> None:
    """Require a ``(B, dim)`` tensor."""
    if x.ndim != 2 or x.shape[1] != dim:
        raise ValueError(f"{name}: expected shape {fmt_shape((BATCH, dim))}, got {tuple(x.shape)}")


def check_sequence(x: torch.Tensor, dim: int, name: str = "x") -> None:
    """Require a ``(B, H, dim)`` tensor."""
    if x.ndim != 3 or x.shape[2] != dim:
        raise ValueError(f"{name}: expected shape {fmt_shape((BATCH, 'H', dim))}, got {tuple(x.shape)}")


def check_time(t: torch.Tensor, batch: int) -> torch.Tensor:
    """Return ``t`` as a ``(B,)`` tensor; a 0-d ``t`` is broadcast to the batch."""
    if t.ndim == 1 and t.shape[0] == batch:
        return t
    if t.ndim == 0:
        return t.expand(batch)
    raise ValueError(f"t: expected shape ({batch},) (one diffusion level per sample), got {tuple(t.shape)}")


def check_cond(cond: torch.Tensor | None, batch: int, cond_dim: int) -> None:
    """Require ``cond`` to be ``(B, cond_dim)`` when ``cond_dim > 0`` and ``None`` otherwise."""
    if cond_dim == 0:
        if cond is not None:
            raise ValueError(
                f"cond: the model was built with cond_dim=0 and takes no condition, got shape {tuple(cond.shape)}"
            )
        return
    if cond is None:
        raise ValueError(
            f"cond: the model was built with cond_dim={cond_dim}; expected a tensor of shape "
            f"{fmt_shape((batch, cond_dim))}, got None"
        )
    if cond.ndim != 2 or cond.shape[0] != batch or cond.shape[1] != cond_dim:
        raise ValueError(f"cond: expected shape {fmt_shape((batch, cond_dim))}, got {tuple(cond.shape)}")


def no_null_error(owner: str) -> ValueError:
    """The error for a ``cond_mask`` passed to a model without a learned null condition."""
    return ValueError(
        f"cond_mask: {owner} was built without classifier-free guidance (cfg_dropout=0 and cfg=False), so it has "
        "no learned null condition; build it with cfg_dropout > 0 or cfg=True, or pass cond_mask=None"
    )
