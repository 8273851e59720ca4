"""``AgentConfig``: the typed, validated base of every agent's config (docs/design.md convention 5), SynthER and
MADiff included."""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

C = TypeVar("C", bound="AgentConfig")


@dataclass(kw_only=True)
class AgentConfig:
    """Fields every agent has.

    Args:
        batch_size: minibatch size per gradient step.
        learning_rate: base learning rate of every optimizer.
        lr_schedule: ``"constant"`` or ``"cosine"`` (decays over the ``total_timesteps`` of each ``learn`` call).
        obs_normalization: ``"gaussian"``, ``"minmax"``, ``"cdf"`` or ``"none"``; fitted on the dataset, saved with
            the model.
        precision: ``"fp32"`` or ``"bf16"`` (autocast).
        eval_seed: seed of the fixed initial noise used by ``predict(..., deterministic=True)``.
        compile: compile every network with ``torch.compile`` (in place, so checkpoints keep their keys).
        cuda_graph: on CUDA, run act-time sampling as a captured CUDA graph (one launch per decision instead of
            one per kernel; :mod:`diffagents.cuda_graph`). Batch sizes seen first are graphed (up to 4 per call
            site), other shapes run eagerly, as does everything on CPU. Checkpoints written before this field
            existed load with the default (off).
    """

    renamed_fields: ClassVar[dict[str, str]] = {}
    """Old field name -> new name: checkpoints written with the old names load, keyword arguments warn."""

    batch_size: int = 256
    learning_rate: float = 3e-4
    lr_schedule: str = "constant"
    obs_normalization: str = "gaussian"
    precision: str = "fp32"
    eval_seed: int = 0
    compile: bool = False
    cuda_graph: bool = False

    def __post_init__(self) -> None:
        self._check(self.batch_size >= 1, "batch_size", ">= 1", self.batch_size)
        self._check(self.learning_rate > 0, "learning_rate", "> 0", self.learning_rate)
        self._check(self.lr_schedule in ("constant", "cosine"), "lr_schedule", "'constant' or 'cosine'",
                    self.lr_schedule)
        self._check(self.obs_normalization in ("gaussian", "minmax", "cdf", "none"), "obs_normalization",
                    "'gaussian', 'minmax', 'cdf' or 'none'", self.obs_normalization)
        self._check(self.precision in ("fp32", "bf16"), "precision", "'fp32' or 'bf16'", self.precision)

    def _check_clip_is_bounded(self, clip_denoised: bool) -> None:
        """Clipping the x0 estimate to [-1, 1] (``clip_denoised``) needs observations normalised into [-1, 1]:
        only the ``"cdf"`` and ``"minmax"`` normalisers map them there (shared by the trajectory planners)."""
        self._check(not clip_denoised or self.obs_normalization in ("cdf", "minmax"), "obs_normalization",
                    "'cdf' or 'minmax' with clip_denoised=True (the clip needs states in [-1, 1]; set "
                    "clip_denoised=False for other normalizers)", self.obs_normalization)

    def _check(self, ok: bool, name: str, expected: str, got: Any) -> None:
        if not ok:
            raise ValueError(f"{type(self).__name__}.{name}: expected {expected}, got {got!r}")

    @classmethod
    def from_kwargs(cls: type[C], owner: str, hyperparameters: dict[str, Any]) -> C:
        """The config of agent ``owner`` from its keyword arguments, naming unknown ones.

        Raises:
            ValueError: a keyword is not a field of the config.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        for old in sorted(set(hyperparameters) & set(cls.renamed_fields)):
            warnings.warn(f"{owner}: hyperparameter {old!r} is now {cls.renamed_fields[old]!r}", DeprecationWarning,
                          stacklevel=3)
        hyperparameters = cls._renamed(hyperparameters)
        unknown = sorted(set(hyperparameters) - names)
        if unknown:
            raise ValueError(f"{owner}: unknown hyperparameters {unknown}; expected some of {sorted(names)}")
        return cls(**hyperparameters)

    @classmethod
    def _renamed(cls, d: dict[str, Any]) -> dict[str, Any]:
        return {cls.renamed_fields.get(k, k): v for k, v in d.items()}

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls: type[C], d: dict[str, Any]) -> C:
        names = {f.name: f for f in dataclasses.fields(cls)}
        d = cls._renamed(d)
        unknown = sorted(set(d) - set(names))
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown fields {unknown}")
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        return cls(**kwargs)  # type: ignore[arg-type]


def _jsonable(v: Any) -> Any:
    if isinstance(v, tuple):
        return list(v)
    return v
