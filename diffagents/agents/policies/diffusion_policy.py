"""Diffusion Policy (Chi et al., RSS 2023): visuomotor policy learning via action diffusion (low-dim variant).

A conditional denoiser over action chunks ``(B, Tp, A)`` (a 1-D temporal U-Net with FiLM conditioning, or a
DiT-style transformer with ``backbone="transformer"``) takes the flattened, normalised history of the last
``To`` observations as its global condition. DDPM training with 100 levels (squared-cosine schedule,
eps-prediction, x0 clipping), AdamW (lr 1e-4, betas (0.95, 0.999), weight decay 1e-6), cosine LR decay after a
linear warm-up, EMA with power warm-up (0.75, max 0.9999), observations min-max normalised and actions scaled to
[-1, 1] from the action-space bounds.

Chunk layout (the reference ``diffusion_policy`` code and LeRobot): a training window has ``Tp`` steps starting
``To - 1`` steps before the current step ``s``; the first ``To`` observations are the condition and all ``Tp``
actions are the target. At act time the executed actions are ``[To - 1, To - 1 + Ta)`` of the sampled chunk
(receding horizon: a new chunk every ``Ta`` env steps, or when an episode restarts). Windows start at every
step of every episode and are padded by repeating the episode's first observation/action before its start and
its last observation/action after its end (``SequenceSampler`` edge padding), so the observation history at an
episode start repeats the first observation, exactly as ``predict`` does after ``episode_start``.

Inference: DDIM with 10 steps by default (the paper's real-robot setting; cheap on CPU); the paper's simulation
setting is ``sampler="ddpm", sampler_steps=None`` (all 100 levels). Use with a chunk-executing env through
:meth:`DiffusionPolicy.predict_chunk` and ``diffagents.wrappers.chunks.ChunkedActionWrapper(env, Ta,
obs_history=To)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from diffagents.core.config import AgentConfig
from diffagents.core.contract import CHUNKS
from diffagents.core.offline import OfflineAgent
from diffagents.core.registry import register_agent
from diffagents.data.batches import attach_chunk_windows
from diffagents.diffusion import GaussianDiffusion, NoiseSchedule
from diffagents.execution.chunks import act_with_chunks, predict_chunk_with
from diffagents.nn import DiT1D, TemporalUNet
from diffagents.roles.chunk_policy import ActionChunkPolicy
from diffagents.training import EMA, Updater


@dataclass(kw_only=True)
class DiffusionPolicyConfig(AgentConfig):
    """Hyperparameters of :class:`DiffusionPolicy` (``train_diffusion_unet_lowdim_workspace.yaml``).

    ``dim``/``dim_mults`` give the U-Net's ``down_dims`` (paper: 256 x (1, 2, 4) = (256, 512, 1024)).
    """

    batch_size: int = 256
    learning_rate: float = 1e-4
    lr_schedule: str = "cosine"
    lr_warmup_steps: int = 500
    weight_decay: float = 1e-6
    adam_betas: tuple[float, float] = (0.95, 0.999)
    grad_clip: float | None = None
    obs_normalization: str = "minmax"
    obs_horizon: int = 2
    pred_horizon: int = 16
    action_horizon: int = 8
    backbone: str = "unet"
    dim: int = 256
    dim_mults: tuple[int, ...] = (1, 2, 4)
    kernel_size: int = 5
    n_groups: int = 8
    d_model: int = 256
    n_layers: int = 8
    n_heads: int = 4
    dropout: float = 0.0
    n_diffusion_steps: int = 100
    schedule: str = "cosine"
    prediction_type: str = "eps"
    clip_denoised: bool = True
    renamed_fields: ClassVar[dict[str, str]] = {"clip_sample": "clip_denoised"}
    sampler: str = "ddim"
    sampler_steps: int | None = 10
    ema_power: float = 0.75
    ema_max_decay: float = 0.9999

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check(self.obs_horizon >= 1, "obs_horizon", ">= 1", self.obs_horizon)
        self._check(self.action_horizon >= 1, "action_horizon", ">= 1", self.action_horizon)
        self._check(self.obs_horizon - 1 + self.action_horizon <= self.pred_horizon, "pred_horizon",
                    f">= obs_horizon - 1 + action_horizon = {self.obs_horizon - 1 + self.action_horizon}",
                    self.pred_horizon)
        self._check(self.backbone in ("unet", "transformer"), "backbone", "'unet' or 'transformer'", self.backbone)
        factor = 2 ** (len(self.dim_mults) - 1)
        self._check(self.backbone != "unet" or self.pred_horizon % factor == 0, "pred_horizon",
                    f"a multiple of {factor} (2 ** (len(dim_mults) - 1)) for the U-Net", self.pred_horizon)
        self._check(self.lr_warmup_steps >= 0, "lr_warmup_steps", ">= 0", self.lr_warmup_steps)
        self._check(self.sampler in ("ddpm", "ddim", "dpm"), "sampler", "'ddpm', 'ddim' or 'dpm'", self.sampler)
        self._check(0 < self.ema_power and 0 < self.ema_max_decay < 1, "ema_power/ema_max_decay",
                    "power > 0 and max decay in (0, 1)", (self.ema_power, self.ema_max_decay))


# ---------------------------------------------------------------------------------------------- agent
@register_agent
class DiffusionPolicy(OfflineAgent):
    """Diffusion Policy as an SB3 ``BaseAlgorithm`` trained offline on action-chunk windows of a Minari dataset.

    Example:
        >>> agent = DiffusionPolicy(env="Pendulum-v1", dataset=ds, dim=64)
        >>> agent.learn(10_000)
        >>> action, state = agent.predict(obs, state=state, episode_start=starts, deterministic=True)
    """

    config_class = DiffusionPolicyConfig
    batch_spec = CHUNKS
    distillable = True
    sampler_swappable = True

    @classmethod
    def tiny_config(cls) -> dict[str, Any]:
        return dict(obs_horizon=2, pred_horizon=8, action_horizon=4, dim=8, dim_mults=(1, 2), n_diffusion_steps=10,
                    sampler_steps=3, batch_size=8, lr_warmup_steps=2)
    acting_fields = OfflineAgent.acting_fields | {"action_horizon", "sampler", "sampler_steps"}
    config: DiffusionPolicyConfig

    @classmethod
    def bench_config(cls) -> dict[str, Any]:
        """The CPU budget ``diffagents bench`` times (docs/compute-budget.md Sec. 6-7)."""
        return dict(dim=64, batch_size=64)

    def build(self, obs_dim: int, act_dim: int) -> dict[str, nn.Module]:
        c = self.config
        cond_dim = c.obs_horizon * obs_dim
        diffusion = GaussianDiffusion(NoiseSchedule(num_train_steps=c.n_diffusion_steps, kind=c.schedule),  # type: ignore[arg-type]
                                      prediction_type=c.prediction_type)  # type: ignore[arg-type]
        denoiser: nn.Module
        if c.backbone == "unet":
            denoiser = TemporalUNet(act_dim, dim=c.dim, dim_mults=c.dim_mults, cond_dim=cond_dim,
                                    kernel_size=c.kernel_size, n_groups=c.n_groups, film=True)
        else:
            denoiser = DiT1D(act_dim, horizon_max=c.pred_horizon, d_model=c.d_model, n_layers=c.n_layers,
                             n_heads=c.n_heads, cond_dim=cond_dim, dropout=c.dropout)
        policy = ActionChunkPolicy(denoiser, diffusion, c.pred_horizon, act_dim, sampler=c.sampler,
                                   num_inference_steps=c.sampler_steps, clip_sample=1.0 if c.clip_denoised else None)
        self.ema = EMA(policy, power=c.ema_power, max_decay=c.ema_max_decay)
        self.chunks_sampled = 0
        return {"policy": policy}

    def _make_updaters(self) -> dict[str, Updater]:
        c = self.config
        return {"policy": Updater(self.nets["policy"].parameters(), c.learning_rate, grad_clip=c.grad_clip,
                                  optimizer="adamw", weight_decay=c.weight_decay, betas=c.adam_betas,
                                  name="policy")}

    def _attach_data(self) -> None:
        attach_chunk_windows(self, self.config.obs_horizon, self.config.pred_horizon)

    def _update_learning_rate(self, optimizers: Any) -> None:
        """SB3's schedule (cosine over the ``learn`` call) times a linear warm-up over ``lr_warmup_steps``."""
        super()._update_learning_rate(optimizers)
        w = self.config.lr_warmup_steps
        if w > 0 and self._n_updates < w:
            factor = (self._n_updates + 1) / w
            for opt in optimizers if isinstance(optimizers, list) else [optimizers]:
                for group in opt.param_groups:
                    group["lr"] *= factor

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        policy: ActionChunkPolicy = self.nets["policy"]  # type: ignore[assignment]
        cond = batch["obs"][:, : self.config.obs_horizon].flatten(1)  # (B, To * O)
        loss, stats = policy.loss(batch["actions"], cond)  # actions (B, Tp, A)
        self.updaters["policy"].step(loss)
        assert self.ema is not None
        self.ema.update(policy, self.num_timesteps)
        return stats

    def _sample_chunks(self, cond: torch.Tensor, deterministic: bool) -> torch.Tensor:
        assert self.ema is not None
        self.chunks_sampled += cond.shape[0]
        policy: ActionChunkPolicy = self.ema.model  # type: ignore[assignment]
        return self._graphed("chunks", policy.sample, cond, generator=self.eval_generator() if deterministic else None,
                             key=(policy.sampler,))

    def act(self, obs: torch.Tensor, state: Any, episode_start: np.ndarray | None, deterministic: bool
             ) -> tuple[torch.Tensor, Any]:
        c = self.config
        return act_with_chunks(obs, state, episode_start, obs_horizon=c.obs_horizon, action_horizon=c.action_horizon,
                               sample=lambda cond: self._sample_chunks(cond, deterministic))

    def predict_chunk(self, obs_history: Any, deterministic: bool = True) -> np.ndarray:
        """The ``Ta`` env-space actions to execute next, ``(Ta, A)`` for a history ``(K, O)`` (oldest first) or
        ``(B, Ta, A)`` for ``(B, K, O)``; for ``ChunkedActionWrapper(env, Ta, obs_history=To)``."""
        c = self.config
        return predict_chunk_with(self, obs_history, c.obs_horizon, c.action_horizon,
                                  lambda cond: self._sample_chunks(cond, deterministic))
