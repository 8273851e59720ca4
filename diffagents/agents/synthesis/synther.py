"""SynthER (Lu et al. 2023, "Synthetic Experience Replay"): diffusion-generated transitions for RL learners.

A generator, not an SB3 ``BaseAlgorithm``: an unconditional diffusion model over whole transitions
``x = [s, a, r, s', terminal]`` (Sec. 3), Gaussian-normalised per dimension, whose samples are mixed into the
data a standard learner trains on:

* offline: :meth:`SynthER.upsample` writes a Minari dataset with real + synthetic transitions (Sec. 4);
* online: :class:`diffagents.wrappers.sb3.SynthERReplayBuffer` (SB3) and
  :class:`diffagents.wrappers.synther_tianshou.SynthERTianshouBuffer` retrain the generator on the real buffer
  every K env steps and serve batches with a fixed synthetic ratio (Sec. 5, UTD 20, 50 % synthetic);
* :meth:`SynthER.as_env` turns the generator into a Gymnasium world model by inpainting ``(s, a)``.

Denoiser: :class:`~diffagents.nn.ResidualMLPDenoiser` (width 1024-2048, 6 LayerNorm residual blocks, random
Fourier time features). Process: EDM (Karras et al. 2022) with SynthER's settings by default; a discrete
VP / cosine eps-prediction process with DDPM / DDIM / DPM-Solver++ sampling is available with
``process="discrete"``. Deviations from the official code (documented): each residual block has two linear
layers (``expansion=1``) where SynthER's has one; the EMA uses a warm-up (decay ``1 - (1 + k)^-0.75`` capped
at ``ema_decay``) so short CPU fits are usable; the terminal flag is thresholded at 0.5 as in the paper.

CPU budget (docs/compute-budget.md Sec. 6, 1 thread): the paper configuration (width 2048, 100k steps, 128 Heun
steps, millions of samples) takes days; width 256-512 x 3-4 blocks, 20-50k steps and 32-64 sampling steps fit
in 20-30 minutes.

Layout: this module holds the config and the generator; :mod:`~diffagents.agents.synthesis.synther_data` reads real
transitions (:data:`~diffagents.agents.synthesis.synther_data.FIELDS`), :mod:`~diffagents.agents.synthesis.synther_upsample` writes
upsampled Minari datasets, the kernel (:mod:`diffagents.core`) implements ``fit``'s loop, ``save`` / ``load``, and
:mod:`~diffagents.agents.synthesis.synther_env` the world-model env.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from gymnasium import spaces

from diffagents.agents.synthesis.synther_data import start_states, transition_arrays
from diffagents.agents.synthesis.synther_upsample import default_upsampled_id, write_upsampled
from diffagents.core.config import AgentConfig
from diffagents.core.contract import TRANSITION_ROWS
from diffagents.core.loop import run_training
from diffagents.core.registry import register_agent
from diffagents.core.standalone import StandaloneAgent
from diffagents.data import GaussianNormalizer, ObsFlattener, load_dataset
from diffagents.diffusion import GaussianDiffusion, NoiseSchedule
from diffagents.diffusion.edm import EDMProcess
from diffagents.guidance import Inpaint
from diffagents.nn import ResidualMLPDenoiser
from diffagents.roles.synthesizer import TransitionSynthesizer
from diffagents.spaces import space_from_dict, space_to_dict
from diffagents.training import EMA, Updater

__all__ = ["SynthER", "SynthERConfig", "default_upsampled_id"]


@dataclass(kw_only=True)
class SynthERConfig(AgentConfig):
    """Hyperparameters (defaults: official ``config/resmlp_denoiser.gin`` and Lu et al. 2023, App. B).

    Args:
        width, n_blocks, expansion, time_dim, activation, fourier_scale: the residual MLP denoiser
            (paper: width 2048 offline / 1024 online, 6 blocks, ReLU, random Fourier features of N(0, 1)).
        process: ``"edm"`` (paper) or ``"discrete"``.
        sampler_steps: sampling steps (paper: 128 EDM Heun steps).
        sigma_data, sigma_min, sigma_max, rho, s_churn, s_tmin, s_tmax, s_noise, p_mean, p_std: EDM settings.
        schedule, n_diffusion_steps, sampler: discrete process (``"vp"``/``"cosine"``/``"linear"``;
            ``"ddpm"``/``"ddim"``/``"dpm"``). The cosine schedule ends at alpha_bar ~ 2e-9, where eps-prediction
            turns small noise errors into huge x0 errors: use it only with ``clip_denoised`` (e.g. 5).
        clip_denoised: optional clipping of the denoised estimate to ``[-c, c]`` (normalised units).
        batch_size, learning_rate, lr_schedule, train_steps, weight_decay, adam_betas, grad_clip: training
            (paper: 1024, 3e-4 cosine, 100k steps, Adam betas (0.9, 0.99)).
        ema_decay, ema_every, ema_warmup: EMA of the weights used for sampling (paper: 0.995 every 10 steps).
        sample_batch_size: rows per sampling batch.
        terminal_threshold: a generated terminal flag above it counts as terminal.
        clip_observations: clip generated observations to finite observation-space bounds.
        obs_normalization: the transition normaliser; SynthER's is ``"gaussian"`` per dimension (Sec. 3).
        precision / eval_seed / compile / cuda_graph: :class:`~diffagents.core.config.AgentConfig` fields
            (``eval_seed``, ``compile`` and ``cuda_graph`` are not used by the generator).
    """

    width: int = 1024
    n_blocks: int = 6
    expansion: int = 1
    time_dim: int = 64
    activation: str = "relu"
    fourier_scale: float = 1.0
    process: str = "edm"
    sampler_steps: int = 128
    sigma_data: float = 1.0
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    rho: float = 7.0
    s_churn: float = 80.0
    s_tmin: float = 0.05
    s_tmax: float = 50.0
    s_noise: float = 1.003
    p_mean: float = -1.2
    p_std: float = 1.2
    schedule: str = "vp"
    n_diffusion_steps: int = 1000
    sampler: str = "dpm"
    clip_denoised: float | None = None
    batch_size: int = 1024
    learning_rate: float = 3e-4
    lr_schedule: str = "cosine"
    train_steps: int = 100_000
    weight_decay: float = 0.0
    adam_betas: tuple[float, float] = (0.9, 0.99)
    grad_clip: float | None = None
    ema_decay: float = 0.995
    ema_every: int = 10
    ema_warmup: bool = True
    sample_batch_size: int = 10_000
    terminal_threshold: float = 0.5
    clip_observations: bool = True

    renamed_fields: ClassVar[dict[str, str]] = {"num_train_steps": "n_diffusion_steps", "sample_steps": "sampler_steps"}

    def __post_init__(self) -> None:
        super().__post_init__()
        self.adam_betas = (float(self.adam_betas[0]), float(self.adam_betas[1]))
        for name in ("width", "n_blocks", "expansion", "time_dim", "sampler_steps", "n_diffusion_steps",
                     "batch_size", "train_steps", "ema_every", "sample_batch_size"):
            value = getattr(self, name)
            self._check(isinstance(value, int) and value >= 1, name, "an int >= 1", value)
        choices = {"process": ("edm", "discrete"), "schedule": ("cosine", "vp", "linear"),
                   "sampler": ("ddpm", "ddim", "dpm")}
        for name, allowed in choices.items():
            self._check(getattr(self, name) in allowed, name, f"one of {allowed}", getattr(self, name))
        self._check(self.obs_normalization == "gaussian", "obs_normalization",
                    "'gaussian' (SynthER normalises whole transitions per dimension)", self.obs_normalization)
        self._check(self.time_dim % 2 == 0, "time_dim", "an even int", self.time_dim)
        self._check(0.0 <= self.ema_decay < 1.0, "ema_decay", "a value in [0, 1)", self.ema_decay)
        self._check(self.clip_denoised is None or self.clip_denoised > 0, "clip_denoised", "None or > 0",
                    self.clip_denoised)
        self._check(self.process != "discrete" or self.sampler_steps <= self.n_diffusion_steps, "sampler_steps",
                    f"<= n_diffusion_steps={self.n_diffusion_steps} for the discrete process", self.sampler_steps)


@register_agent(kind="generator")
class SynthER(StandaloneAgent):
    """Transition generator: ``fit`` on real data, ``sample`` synthetic transitions in env units.

    Args:
        observation_space: a ``Box`` or a ``Dict`` of ``Box`` (flattened over *all* keys in sorted order, so
            samples can be turned back into dicts).
        action_space: a bounded ``Box``.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        seed: seed of the weight initialisation and of the training / sampling RNGs.
        dataset: optional default training data (a Minari dataset or id) for :meth:`fit`, :meth:`upsample`
            and :meth:`as_env`.
        **config: fields of :class:`SynthERConfig`.
    """

    config_class = SynthERConfig  # type: ignore[assignment]
    batch_spec = TRANSITION_ROWS
    acting_fields = StandaloneAgent.acting_fields | {"sampler_steps", "sampler", "sample_batch_size",
                                                     "terminal_threshold", "clip_observations"}
    config: SynthERConfig

    def __init__(self, observation_space: spaces.Space[Any], action_space: spaces.Space[Any], *,
                 device: str | torch.device = "auto", seed: int | None = None, dataset: Any = None,
                 verbose: int = 0, tensorboard_log: str | None = None, **config: Any) -> None:
        self.config = SynthERConfig.from_kwargs(type(self).__name__, config)
        super().__init__(device=device, seed=0 if seed is None else int(seed), verbose=verbose,
                         tensorboard_log=tensorboard_log)
        if not isinstance(action_space, spaces.Box) or not np.all(np.isfinite(action_space.low)) or \
                not np.all(np.isfinite(action_space.high)):
            raise TypeError(f"action_space: SynthER needs a bounded Box, got {action_space}")
        keys = sorted(observation_space.spaces) if isinstance(observation_space, spaces.Dict) else None
        self.flattener = ObsFlattener.from_space(observation_space, keys=keys)
        self.observation_space = observation_space
        self.action_space = action_space
        self.obs_dim, self.act_dim = self.flattener.dim, int(np.prod(action_space.shape))
        self.x_dim = 2 * self.obs_dim + self.act_dim + 2
        self.seed: int = 0 if seed is None else int(seed)
        self.dataset = dataset
        self.fit_log: list[dict[str, float]] = []
        with torch.random.fork_rng(devices=[]):  # seeded init without touching the caller's global RNG
            torch.manual_seed(self.seed)
            self.synth = self.build().to(self.device)
        self._rows: torch.Tensor | None = None  # (N, D) normalised training rows of the current fit
        self._fit_gen: torch.Generator | None = None
        self._fit_batch = self.config.batch_size
        self._first_stats: dict[str, torch.Tensor] = {}

    @classmethod
    def tiny_config(cls) -> dict[str, Any]:
        return dict(width=32, n_blocks=1, time_dim=16, batch_size=64, sampler_steps=4)

    @classmethod
    def bench_config(cls) -> dict[str, Any]:
        """``diffagents bench`` times the CPU budget of the zoo recipes (docs/compute-budget.md Sec. 6)."""
        return dict(width=512, n_blocks=4, batch_size=256, sampler_steps=32)

    @property
    def nets(self) -> dict[str, torch.nn.Module]:
        return {"denoiser": self.synth.denoiser}

    @property
    def normalizer(self) -> GaussianNormalizer | None:
        """The per-dimension Gaussian normaliser of transition rows (``normalizers["transition"]``)."""
        return self.normalizers.get("transition")

    @normalizer.setter
    def normalizer(self, value: GaussianNormalizer | None) -> None:
        self.normalizers["transition"] = value

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_dataset(cls, dataset: Any, **kwargs: Any) -> SynthER:
        """A generator with the spaces of ``dataset`` (a Minari dataset, id or folder), which becomes the default data."""
        ds = load_dataset(dataset)
        return cls(ds.observation_space, ds.action_space, dataset=ds, **kwargs)

    def build(self) -> TransitionSynthesizer:
        c = self.config
        edm = c.process == "edm"
        denoiser = ResidualMLPDenoiser(
            x_dim=self.x_dim, width=c.width, n_blocks=c.n_blocks, time_dim=c.time_dim, activation=c.activation,
            expansion=c.expansion, time_embedding="fourier" if edm else "sinusoidal", fourier_scale=c.fourier_scale)
        if edm:
            process: Any = EDMProcess(sigma_data=c.sigma_data, sigma_min=c.sigma_min, sigma_max=c.sigma_max,
                                      p_mean=c.p_mean, p_std=c.p_std)
            kwargs: dict[str, Any] = dict(rho=c.rho, s_churn=c.s_churn, s_tmin=c.s_tmin, s_tmax=c.s_tmax,
                                          s_noise=c.s_noise)
        else:
            process = GaussianDiffusion(NoiseSchedule(num_train_steps=c.n_diffusion_steps, kind=c.schedule),  # type: ignore[arg-type]
                                        prediction_type="eps")
            kwargs = {}
        return TransitionSynthesizer(denoiser, process, self.x_dim, sampler=c.sampler,
                                     num_inference_steps=c.sampler_steps, clip_sample=c.clip_denoised, **kwargs)

    @property
    def fitted(self) -> bool:
        return self.normalizer is not None

    # ------------------------------------------------------------------ data
    def _arrays(self, data: Any) -> dict[str, np.ndarray]:
        """Env-unit arrays of ``data`` (default: the construction dataset); see
        :func:`~diffagents.agents.synthesis.synther_data.transition_arrays`."""
        return transition_arrays(self, data)

    def to_matrix(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        """``[s, a, r, s', terminal]`` rows ``(N, D)`` float32 from env-unit arrays."""
        n = len(arrays["rewards"])
        parts = [np.asarray(arrays["observations"], np.float32).reshape(n, self.obs_dim),
                 np.asarray(arrays["actions"], np.float32).reshape(n, self.act_dim),
                 np.asarray(arrays["rewards"], np.float32).reshape(n, 1),
                 np.asarray(arrays["next_observations"], np.float32).reshape(n, self.obs_dim),
                 np.asarray(arrays["terminations"], np.float32).reshape(n, 1)]
        x = np.concatenate(parts, axis=1)
        if n == 0 or not np.isfinite(x).all():
            raise ValueError(f"data: expected at least one finite transition, got {n} rows (or NaN/Inf)")
        return x

    def split(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Env-unit rows ``(N, D)`` -> transition dict; actions clipped, terminals thresholded."""
        o, a = self.obs_dim, self.act_dim
        obs, nxt = x[:, :o], x[:, o + a + 1: 2 * o + a + 1]
        if self.config.clip_observations:
            obs, nxt = self.clip_obs(obs), self.clip_obs(nxt)
        act = np.clip(x[:, o:o + a], self.action_space.low.reshape(-1), self.action_space.high.reshape(-1))
        return {"observations": obs.astype(np.float32), "actions": act.astype(np.float32),
                "rewards": x[:, o + a].astype(np.float32), "next_observations": nxt.astype(np.float32),
                "terminations": x[:, -1] > self.config.terminal_threshold}

    def clip_obs(self, obs: np.ndarray) -> np.ndarray:
        """Clip flat observations to the finite bounds of the observation space."""
        low = np.where(np.isfinite(self.flattener.low), self.flattener.low, -np.inf)
        high = np.where(np.isfinite(self.flattener.high), self.flattener.high, np.inf)
        return np.clip(obs, low, high)

    def unflatten_obs(self, flat: np.ndarray) -> Any:
        """Flat observations ``(..., obs_dim)`` -> the observation space's layout (a dict for Dict spaces)."""
        if self.flattener.keys is None:
            return flat.reshape(*flat.shape[:-1], *self.flattener.shapes[0])
        out, start = {}, 0
        for key, shape in zip(self.flattener.keys, self.flattener.shapes):
            size = int(np.prod(shape))
            out[key] = flat[..., start:start + size].reshape(*flat.shape[:-1], *shape)
            start += size
        return out

    # ------------------------------------------------------------------ training
    def fit(self, data: Any = None, steps: int | None = None, batch_size: int | None = None, *,
            progress_bar: bool = False, refit_normalizer: bool = True, log_every: int = 100, callback: Any = None,
            checkpoint_dir: str | os.PathLike[str] | None = None, checkpoint_every: int = 1000) -> SynthER:
        """Train the denoiser on ``data`` for ``steps`` gradient steps (default ``config.train_steps``) in the one
        training loop (:func:`diffagents.core.loop.run_training`), with a fresh optimizer and EMA per fit (the
        online buffers refit every K env steps) and the cosine LR schedule spanning the fit.

        Args:
            data: a Minari dataset / id / folder, a :class:`~diffagents.data.Transitions`, an SB3 ``ReplayBuffer``
                (only its filled part; its [-1, 1] actions are mapped back to env units) or a dict of arrays
                (:data:`~diffagents.agents.synthesis.synther_data.FIELDS`, env units). Default: the ``dataset`` given at
                construction.
            steps: gradient steps; the cosine LR schedule spans them.
            batch_size: minibatch size (default ``config.batch_size``).
            progress_bar: show a progress bar.
            refit_normalizer: refit the Gaussian normaliser on ``data`` (always done on the first fit).
            log_every: steps between finite-loss checks / logged losses.
            callback: SB3 callbacks, as for any agent's ``learn``.
            checkpoint_dir / checkpoint_every: crash-safe checkpoints of the generator's first fit; calling
                ``fit`` again with the same folder resumes from the newest one (bitwise on CPU).
        """
        c = self.config
        x = self.to_matrix(self._arrays(data))
        if refit_normalizer or self.normalizer is None:
            norm = GaussianNormalizer()
            norm.fit(x)
            self.normalizer = norm
        assert self.normalizer is not None
        self._rows = torch.from_numpy(self.normalizer.normalize(x).astype(np.float32)).to(self.device)  # (N, D)
        steps = c.train_steps if steps is None else int(steps)
        self._fit_batch = c.batch_size if batch_size is None else int(batch_size)
        first = self.num_timesteps == 0
        if checkpoint_dir is not None and not first:
            raise ValueError("checkpoint_dir: resumable fits are the generator's first fit (num_timesteps 0), got "
                             f"num_timesteps {self.num_timesteps}")
        net = self.synth.denoiser
        self._new_optimizer_and_ema()
        self._fit_gen = torch.Generator(self.device).manual_seed(self.seed * 100_003 + len(self.fit_log))
        self._progress_origin = self.num_timesteps
        self._first_stats = {}
        t0 = self.train_wall_s
        run_training(self, steps, callback, log_interval=log_every, tb_log_name="SynthER",
                     reset_num_timesteps=first, progress_bar=progress_bar, checkpoint_dir=checkpoint_dir,
                     checkpoint_every=checkpoint_every)
        net.eval()
        first_loss = self._first_stats.get("diffusion_loss")
        final = getattr(self, "last_train_stats", {}) or {}
        self.fit_log.append({"steps": steps, "rows": int(x.shape[0]), "seconds": self.train_wall_s - t0,
                             "first_loss": float(first_loss) if first_loss is not None else math.nan,
                             "final_loss": float(final.get("diffusion_loss", math.nan))})
        return self

    def sample_batch(self, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """``x`` rows ``(B, D)`` of the current fit, drawn with the fit's own generator."""
        assert self._rows is not None
        gen = self._fit_gen if generator is None else generator
        idx = torch.randint(0, self._rows.shape[0], (self._fit_batch,), generator=gen, device=self.device)
        return {"x": self._rows[idx]}

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One denoising-score-matching step on transition rows (EDM loss, Karras et al. 2022 Eq. 2 / Sec. 5)."""
        loss, stats = self.synth.loss(batch["x"], generator=self._fit_gen)
        self.updaters["denoiser"].step(loss)
        assert self.ema is not None
        self.ema.update(self.synth.denoiser, self.num_timesteps - self._progress_origin)
        if not self._first_stats:
            self._first_stats = {k: v.detach() for k, v in stats.items()}
        return dict(stats)

    # ------------------------------------------------------------------ sampling
    def _net(self) -> torch.nn.Module:
        return self.ema.model if self.ema is not None else self.synth.denoiser

    def _check_fitted(self) -> GaussianNormalizer:
        if self.normalizer is None:
            raise RuntimeError("SynthER: call fit(...) (or load a fitted checkpoint) before sampling")
        return self.normalizer

    def refit_and_sample(self, data: Any, n: int, *, steps: int | None, batch_size: int | None = None,
                         seed: int | None = None, sampler_steps: int | None = None
                         ) -> tuple[dict[str, np.ndarray], dict[str, float]]:
        """Fit on ``data``, then draw ``n`` transitions: the retraining step of the online replay buffers.

        Returns:
            The samples and ``{"fit_s", "sample_s", "final_loss"}`` timings / loss.
        """
        t0 = time.perf_counter()
        self.fit(data, steps=steps, batch_size=batch_size)
        t1 = time.perf_counter()
        samples = self.sample(n, seed=seed, sampler_steps=sampler_steps)
        stats = {"fit_s": t1 - t0, "sample_s": time.perf_counter() - t1,
                 "final_loss": float(self.fit_log[-1]["final_loss"])}
        return samples, stats

    def sample(self, n: int, *, batch_size: int | None = None, seed: int | None = None, temperature: float = 1.0,
               sampler_steps: int | None = None) -> dict[str, np.ndarray]:
        """Draw ``n`` synthetic transitions in env units.

        Returns:
            ``observations (n, obs_dim)``, ``actions (n, act_dim)`` (inside the action space), ``rewards (n,)``,
            ``next_observations (n, obs_dim)`` (float32, flat) and ``terminations (n,)`` bool.
        """
        norm = self._check_fitted()
        if n < 1:
            raise ValueError(f"n: expected >= 1, got {n}")
        bs = batch_size or self.config.sample_batch_size
        gen = torch.Generator(self.device).manual_seed(self.seed if seed is None else int(seed))
        sampler, net, chunks = self.synth.make_sampler(sampler_steps), self._net(), []
        for start in range(0, n, bs):
            m = min(bs, n - start)
            xs = self.synth.sample(m, net=net, sampler=sampler, generator=gen, device=self.device,
                                   temperature=temperature)
            chunks.append(xs.cpu().numpy())
        return self.split(norm.unnormalize(np.concatenate(chunks)))

    def sample_given(self, observations: np.ndarray, actions: np.ndarray, *, seed: int | None = None,
                     sampler: Any = None, temperature: float = 1.0) -> dict[str, np.ndarray]:
        """Sample ``(r, s', terminal)`` for given flat ``(s, a)`` rows by inpainting them during sampling."""
        norm = self._check_fitted()
        b = len(observations)
        rows = np.zeros((b, self.x_dim), np.float32)
        rows[:, :self.obs_dim] = np.asarray(observations, np.float32).reshape(b, self.obs_dim)
        rows[:, self.obs_dim:self.obs_dim + self.act_dim] = np.asarray(actions, np.float32).reshape(b, self.act_dim)
        values = torch.from_numpy(norm.normalize(rows).astype(np.float32)).to(self.device)
        mask = torch.zeros((b, self.x_dim), dtype=torch.bool, device=self.device)
        mask[:, :self.obs_dim + self.act_dim] = True
        gen = torch.Generator(self.device).manual_seed(self.seed if seed is None else int(seed))
        xs = self.synth.sample(b, net=self._net(), sampler=sampler, guides=[Inpaint(mask, values)], generator=gen,
                               device=self.device, temperature=temperature)
        out = self.split(norm.unnormalize(xs.cpu().numpy()))
        out["observations"] = rows[:, :self.obs_dim]
        return out

    # ------------------------------------------------------------------ persistence (core/checkpoint.py)
    def checkpoint_spaces(self) -> dict[str, Any]:
        return {"observation_space": space_to_dict(self.observation_space),
                "action_space": space_to_dict(self.action_space)}

    @classmethod
    def from_checkpoint_meta(cls, meta: dict[str, Any], config: SynthERConfig, *, env: Any, device: Any
                             ) -> SynthER:
        extra = meta.get("extra") or {}
        gen = cls(space_from_dict(meta["observation_space"]), space_from_dict(meta["action_space"]), device=device,
                  seed=int(extra.get("seed", 0)), **config.to_dict())
        if meta.get("has_ema", True):  # a fitted generator: the checkpoint fills these
            gen._new_optimizer_and_ema()
        return gen

    def _new_optimizer_and_ema(self) -> None:
        """A fresh Adam (SynthER's betas, weight decay, clip) and EMA (warm-up power 0.75 capped at ``ema_decay``)
        of the denoiser: each fit starts them anew (the online buffers' refit)."""
        c, net = self.config, self.synth.denoiser
        self.updaters = {"denoiser": Updater(net.parameters(), c.learning_rate, grad_clip=c.grad_clip,
                                             weight_decay=c.weight_decay, betas=c.adam_betas, name="denoiser")}
        self.ema = EMA(net, decay=c.ema_decay, power=0.75 if c.ema_warmup else None, max_decay=c.ema_decay,
                       update_every=c.ema_every)

    def extra_state(self) -> dict[str, Any]:
        return super().extra_state() | {"seed": self.seed, "fit_log": self.fit_log}

    def load_extra_state(self, extra: dict[str, Any]) -> None:
        super().load_extra_state(extra)
        self.fit_log = list(extra.get("fit_log", []))
        self.synth.denoiser.eval()

    def extra_arrays(self) -> dict[str, np.ndarray]:
        if self._fit_gen is None:
            return {}
        return {"fit_generator": self._fit_gen.get_state().numpy().copy()}

    def load_extra_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        if "fit_generator" in arrays:
            self._fit_gen = torch.Generator(self.device)
            self._fit_gen.set_state(torch.from_numpy(np.ascontiguousarray(arrays["fit_generator"])))

    @classmethod
    def load(cls, path: Any, env: Any = None, device: str | torch.device = "auto", dataset: Any = None) -> SynthER:
        """Rebuild a generator saved with :meth:`save` (config JSON + safetensors weights + normaliser statistics,
        the weights possibly stored as float16; ``exclude=["training_weights"]`` files hold only the EMA copy
        that samples); never unpickles and raises :class:`CheckpointError` on a bad file."""
        gen = super().load(path, env=env, device=device)
        if dataset is not None:
            gen.dataset = dataset
        return gen  # type: ignore[no-any-return]

    # ------------------------------------------------------------------ offline upsampling and world model
    def upsample(self, dataset: Any = None, n: int = 100_000, new_id: str | None = None, *,
                 seed: int | None = None, batch_size: int | None = None) -> Any:
        """Write a new Minari dataset: every real episode of ``dataset`` plus ``n`` synthetic transitions.

        Each synthetic transition is stored as a one-step episode ``(s, a, r, s')`` with ``terminations`` =
        the generated terminal flag and ``truncations`` = its negation (so TD learners bootstrap exactly where
        they should and never chain unrelated synthetic rows); their episode ids follow the real ones. The
        dataset description and the ``diffagents_synther`` metadata record the generator config. Writing costs
        about 1 ms per synthetic transition with Minari's HDF5 backend (reading it back ~2 ms).

        Args:
            dataset: the real dataset (default: the one given at construction).
            n: number of synthetic transitions.
            new_id: the new dataset id (default: ``<id stem>-synther<n>-v<version>``).
        """
        return write_upsampled(self, load_dataset(self.dataset if dataset is None else dataset), n, new_id,
                               seed=seed, batch_size=batch_size)

    def as_env(self, dataset: Any = None, *, max_episode_steps: int = 1000, sampler_steps: int | None = None) -> Any:
        """A Gymnasium env backed by the generator (see :class:`diffagents.agents.synthesis.synther_env.SynthEREnv`)."""
        from diffagents.agents.synthesis.synther_env import SynthEREnv

        return SynthEREnv(self, start_states(self, dataset), max_episode_steps=max_episode_steps,
                          sampler_steps=sampler_steps)
