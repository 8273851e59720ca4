"""Hyperparameters of MADiff (Zhu et al., NeurIPS 2024): :class:`MADiffConfig` (paper / ``zbzhu99/madiff``
defaults) and :data:`CPU_HYPERPARAMETERS` (a preset that trains in the CPU budget). The agent is
:class:`diffagents.agents.multiagent.madiff.MADiff`, which re-exports both names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from diffagents.core.config import AgentConfig

#: Settings that fit the CPU budget of docs/compute-budget.md Sec. 6-7 (10-20k steps in about 20-40 min for 3
#: agents at 1 thread; ~55 ms per MADiff-C decision). Measured in short development runs on mpe-spread expert
#: data (5k steps of data, T=20, DDIM 5, lr 1e-3, 10 evaluation episodes):
#: * the first U-Net level must be wider than the per-agent observation (18 on simple_spread), or the output is
#:   rank-limited: training loss after 400 steps 0.70 with dim 16, 0.43 with dim 32 and (1, 2, 4), 0.09 with
#:   dim 64 and (1, 2);
#: * with short training, x0-prediction keeps plans continuous with the inpainted observation: planned
#:   next-observation error 0.16 (x0) vs 0.37 (eps) after 800 steps; normalised score -22 / -3 / 18 after
#:   1k / 2k / 3k steps with x0, -113 after 1.5k steps with eps.
#: ``returns_scale=50`` suits team returns of about -17 (expert) to -80 (random). Use as
#: ``MADiff(env, dataset, **CPU_HYPERPARAMETERS)``.
CPU_HYPERPARAMETERS: dict[str, Any] = {
    "dim": 64, "dim_mults": (1, 2), "n_diffusion_steps": 20, "prediction_type": "x0", "sampler": "ddim",
    "sampler_steps": 10, "learning_rate": 1e-3, "inv_hidden": (256, 256), "returns_scale": 50.0, "ema_start": 1000,
}


@dataclass(kw_only=True)
class MADiffConfig(AgentConfig):
    """Hyperparameters of :class:`MADiff`; defaults follow ``zbzhu99/madiff`` ``exp_specs/mpe/spread/
    mad_mpe_spread_ctde_exp.yaml`` (paper scale: days on CPU; see :data:`CPU_HYPERPARAMETERS`).

    Args:
        horizon: planned steps from the current one (MPE: 24); the diffused window is ``history + horizon``,
            which must be divisible by ``2 ** (len(dim_mults) - 1)``.
        history: ``K`` past steps inpainted with the current one (MPE: 0; SMAC: 20).
        n_diffusion_steps / schedule: training process (200 steps, cosine = ``squaredcos_cap_v2``).
        prediction_type: ``"eps"`` (MADiff), ``"x0"`` (Diffuser's choice) or ``"v"``; with few diffusion steps and
            short training, ``"x0"`` keeps plans continuous with the inpainted history (see the benchmark).
        dim / dim_mults / n_heads / agent_embedding / attention / activation: the joint U-Net.
        cfg_dropout / guidance_weight: classifier-free guidance (0.25 / 1.2).
        returns_scale: team returns-to-go are divided by it (the paper's 700 is for OMAR's per-agent data).
        target_return: normalised return to condition on at every act step (the paper uses 0.9 on its own
            scale); ``None`` = per episode step, the ``target_quantile`` of the dataset's returns-to-go at that
            step (data-driven and valid for negative rewards; saved with the model).
        target_quantile: quantile used when ``target_return`` is None.
        discount: for returns-to-go (0.99).
        decentralized: MADiff-D (see the module docstring) instead of MADiff-C.
        shared_inv_dyn / inv_hidden / inv_batch_size: inverse dynamics (per-agent 2 x 256 on MPE).
        ema_decay / ema_start / ema_every: EMA of the planner used to act (0.995).
        replan_every: replan every k steps (1 = MADiff's per-step replanning).
        sampler / sampler_steps / clip_denoised: act-time sampler (DDPM over all levels; clip the x0 estimate to
            [-1, 1]; needs the ``"cdf"`` or ``"minmax"`` normalizer, whose data lie in [-1, 1], and is refused otherwise).
        pad_mode / loss_on_padding: windows past the episode end repeat the final observation (``"edge"``,
            MADiff's ``use_zero_padding=False``) and are trained on (``pred_future_padding=True``).
        grad_clip: optional gradient-norm clip.
    """

    batch_size: int = 32
    learning_rate: float = 2e-4
    obs_normalization: str = "cdf"
    horizon: int = 24
    history: int = 0
    n_diffusion_steps: int = 200
    schedule: str = "cosine"
    prediction_type: str = "eps"
    dim: int = 128
    dim_mults: tuple[int, ...] = (1, 4, 8)
    n_heads: int = 4
    agent_embedding: bool = True
    attention: bool = True
    activation: str = "mish"
    cfg_dropout: float = 0.25
    guidance_weight: float = 1.2
    returns_scale: float = 700.0
    target_return: float | None = None
    target_quantile: float = 0.9
    discount: float = 0.99
    decentralized: bool = False
    shared_inv_dyn: bool = False
    inv_hidden: tuple[int, ...] = (256, 256)
    inv_batch_size: int = 256
    ema_decay: float = 0.995
    ema_start: int = 2000
    ema_every: int = 10
    replan_every: int = 1
    sampler: str = "ddpm"
    sampler_steps: int | None = None
    clip_denoised: bool = True
    pad_mode: str = "edge"
    loss_on_padding: bool = True
    grad_clip: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check(self.history >= 0, "history", ">= 0", self.history)
        self._check_clip_is_bounded(self.clip_denoised)
        self._check(self.horizon >= 2, "horizon", ">= 2", self.horizon)
        factor = 2 ** (len(self.dim_mults) - 1)
        self._check((self.history + self.horizon) % factor == 0, "horizon",
                    f"history + horizon divisible by {factor} (2 ** (len(dim_mults) - 1))", self.horizon)
        self._check(0.0 <= self.cfg_dropout < 1.0, "cfg_dropout", "in [0, 1)", self.cfg_dropout)
        self._check(self.returns_scale > 0, "returns_scale", "> 0", self.returns_scale)
        self._check(0.0 <= self.target_quantile <= 1.0, "target_quantile", "in [0, 1]", self.target_quantile)
        self._check(1 <= self.replan_every < self.horizon, "replan_every", f"in [1, horizon - 1 = {self.horizon - 1}]",
                    self.replan_every)
        self._check(self.pad_mode in ("edge", "zeros"), "pad_mode", "'edge' or 'zeros'", self.pad_mode)
        self._check(self.prediction_type in ("eps", "x0", "v"), "prediction_type", "'eps', 'x0' or 'v'",
                    self.prediction_type)
        self._check(self.inv_batch_size >= 1, "inv_batch_size", ">= 1", self.inv_batch_size)

    @property
    def window(self) -> int:
        return self.history + self.horizon
