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

CPU budget (compute-budget.md Sec. 6, 1 thread): the paper configuration (width 2048, 100k steps, 128 Heun
steps, millions of samples) takes days; width 256-512 x 3-4 blocks, 20-50k steps and 32-64 sampling steps fit
in 20-30 minutes.

Layout: this module holds the config and the generator; :mod:`~diffagents.agents.synther_data` reads real
transitions (:data:`~diffagents.agents.synther_data.FIELDS`), :mod:`~diffagents.agents.synther_upsample` writes
upsampled Minari datasets, :mod:`~diffagents.agents.synther_checkpoint` implements ``save`` / ``load`` and
:mod:`~diffagents.agents.synther_env` the world-model env.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from diffagents.agents.synther_checkpoint import load_synther, save_synther
from diffagents.agents.synther_data import start_states, transition_arrays
from diffagents.agents.synther_upsample import default_upsampled_id, write_upsampled
from diffagents.data import GaussianNormalizer, ObsFlattener, load_dataset
from diffagents.diffusion import GaussianDiffusion, NoiseSchedule
from diffagents.guidance import Inpaint
from diffagents.nn import ResidualMLPDenoiser
from diffagents.roles.synthesizer import EDMProcess, TransitionSynthesizer
from diffagents.training import EMA, Updater, check_finite, make_lr_schedule

__all__ = ["SynthER", "SynthERConfig", "default_upsampled_id"]


@dataclass(kw_only=True)
class SynthERConfig:
    """Hyperparameters (defaults: official ``config/resmlp_denoiser.gin`` and Lu et al. 2023, App. B).

    Args:
        width, n_blocks, expansion, time_dim, activation, fourier_scale: the residual MLP denoiser
            (paper: width 2048 offline / 1024 online, 6 blocks, ReLU, random Fourier features of N(0, 1)).
        process: ``"edm"`` (paper) or ``"discrete"``.
        sample_steps: sampling steps (paper: 128 EDM Heun steps).
        sigma_data, sigma_min, sigma_max, rho, s_churn, s_tmin, s_tmax, s_noise, p_mean, p_std: EDM settings.
        schedule, num_train_steps, sampler: discrete process (``"vp"``/``"cosine"``/``"linear"``;
            ``"ddpm"``/``"ddim"``/``"dpm"``). The cosine schedule ends at alpha_bar ~ 2e-9, where eps-prediction
            turns small noise errors into huge x0 errors: use it only with ``clip_denoised`` (e.g. 5).
        clip_denoised: optional clipping of the denoised estimate to ``[-c, c]`` (normalised units).
        batch_size, learning_rate, lr_schedule, train_steps, weight_decay, adam_betas, grad_clip: training
            (paper: 1024, 3e-4 cosine, 100k steps, Adam betas (0.9, 0.99)).
        ema_decay, ema_every, ema_warmup: EMA of the weights used for sampling (paper: 0.995 every 10 steps).
        sample_batch_size: rows per sampling batch.
        terminal_threshold: a generated terminal flag above it counts as terminal.
        clip_observations: clip generated observations to finite observation-space bounds.
    """

    width: int = 1024
    n_blocks: int = 6
    expansion: int = 1
    time_dim: int = 64
    activation: str = "relu"
    fourier_scale: float = 1.0
    process: str = "edm"
    sample_steps: int = 128
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
    num_train_steps: int = 1000
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

    def __post_init__(self) -> None:
        self.adam_betas = (float(self.adam_betas[0]), float(self.adam_betas[1]))
        for name in ("width", "n_blocks", "expansion", "time_dim", "sample_steps", "num_train_steps",
                     "batch_size", "train_steps", "ema_every", "sample_batch_size"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 1):
                raise ValueError(f"SynthERConfig.{name}: expected an int >= 1, got {getattr(self, name)!r}")
        choices = {"process": ("edm", "discrete"), "schedule": ("cosine", "vp", "linear"),
                   "sampler": ("ddpm", "ddim", "dpm"), "lr_schedule": ("constant", "cosine")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"SynthERConfig.{name}: expected one of {allowed}, got {getattr(self, name)!r}")
        if self.time_dim % 2:
            raise ValueError(f"SynthERConfig.time_dim: expected an even int, got {self.time_dim}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"SynthERConfig.ema_decay: expected a value in [0, 1), got {self.ema_decay}")
        if self.clip_denoised is not None and not self.clip_denoised > 0:
            raise ValueError(f"SynthERConfig.clip_denoised: expected None or > 0, got {self.clip_denoised}")
        if not self.learning_rate > 0:
            raise ValueError(f"SynthERConfig.learning_rate: expected > 0, got {self.learning_rate}")
        if self.process == "discrete" and self.sample_steps > self.num_train_steps:
            raise ValueError(f"SynthERConfig.sample_steps: expected <= num_train_steps={self.num_train_steps} for "
                             f"the discrete process, got {self.sample_steps}")

    def to_dict(self) -> dict[str, Any]:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v)
                for f in dataclasses.fields(self)}


class SynthER:
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

    def __init__(self, observation_space: spaces.Space[Any], action_space: spaces.Space[Any], *,
                 device: str | torch.device = "auto", seed: int | None = None, dataset: Any = None,
                 **config: Any) -> None:
        self.config = SynthERConfig(**config)
        if not isinstance(action_space, spaces.Box) or not np.all(np.isfinite(action_space.low)) or \
                not np.all(np.isfinite(action_space.high)):
            raise TypeError(f"action_space: SynthER needs a bounded Box, got {action_space}")
        keys = sorted(observation_space.spaces) if isinstance(observation_space, spaces.Dict) else None
        self.flattener = ObsFlattener.from_space(observation_space, keys=keys)
        self.observation_space = observation_space
        self.action_space = action_space
        self.obs_dim, self.act_dim = self.flattener.dim, int(np.prod(action_space.shape))
        self.x_dim = 2 * self.obs_dim + self.act_dim + 2
        self.device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device)
        self.seed = 0 if seed is None else int(seed)
        self.dataset = dataset
        self.normalizer: GaussianNormalizer | None = None
        self.num_timesteps = 0
        self.fit_log: list[dict[str, float]] = []
        with torch.random.fork_rng(devices=[]):  # seeded init without touching the caller's global RNG
            torch.manual_seed(self.seed)
            self.synth = self._build().to(self.device)
        self.ema: EMA | None = None

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_dataset(cls, dataset: Any, **kwargs: Any) -> SynthER:
        """A generator with the spaces of ``dataset`` (a Minari dataset, id or folder), which becomes the default data."""
        ds = load_dataset(dataset)
        return cls(ds.observation_space, ds.action_space, dataset=ds, **kwargs)

    def _build(self) -> TransitionSynthesizer:
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
            process = GaussianDiffusion(NoiseSchedule(num_train_steps=c.num_train_steps, kind=c.schedule),  # type: ignore[arg-type]
                                        prediction_type="eps")
            kwargs = {}
        return TransitionSynthesizer(denoiser, process, self.x_dim, sampler=c.sampler,
                                     num_inference_steps=c.sample_steps, clip_sample=c.clip_denoised, **kwargs)

    @property
    def fitted(self) -> bool:
        return self.normalizer is not None

    # ------------------------------------------------------------------ data
    def _arrays(self, data: Any) -> dict[str, np.ndarray]:
        """Env-unit arrays of ``data`` (default: the construction dataset); see
        :func:`~diffagents.agents.synther_data.transition_arrays`."""
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
            progress_bar: bool = False, refit_normalizer: bool = True, log_every: int = 100) -> SynthER:
        """Train the denoiser on ``data`` for ``steps`` gradient steps (default ``config.train_steps``).

        Args:
            data: a Minari dataset / id / folder, a :class:`~diffagents.data.Transitions`, an SB3 ``ReplayBuffer``
                (only its filled part; its [-1, 1] actions are mapped back to env units) or a dict of arrays
                (:data:`~diffagents.agents.synther_data.FIELDS`, env units). Default: the ``dataset`` given at
                construction.
            steps: gradient steps; the cosine LR schedule spans them.
            batch_size: minibatch size (default ``config.batch_size``).
            progress_bar: show a tqdm bar.
            refit_normalizer: refit the Gaussian normaliser on ``data`` (always done on the first fit).
            log_every: steps between finite-loss checks / logged losses.
        """
        c = self.config
        x = self.to_matrix(self._arrays(data))
        if refit_normalizer or self.normalizer is None:
            norm = GaussianNormalizer()
            norm.fit(x)
            self.normalizer = norm
        assert self.normalizer is not None
        xn = torch.from_numpy(self.normalizer.normalize(x).astype(np.float32)).to(self.device)  # (N, D)
        steps = c.train_steps if steps is None else int(steps)
        bs = c.batch_size if batch_size is None else int(batch_size)
        net = self.synth.denoiser
        net.train()
        updater = Updater(net.parameters(), c.learning_rate, grad_clip=c.grad_clip, weight_decay=c.weight_decay,
                          betas=c.adam_betas, name="denoiser")
        self.ema = EMA(net, decay=c.ema_decay, power=0.75 if c.ema_warmup else None, max_decay=c.ema_decay,
                       update_every=c.ema_every)
        lr_at = make_lr_schedule(c.learning_rate, c.lr_schedule)
        gen = torch.Generator(self.device).manual_seed(self.seed * 100_003 + len(self.fit_log))
        bar = _progress(steps, progress_bar)
        t0, losses = time.perf_counter(), []
        for step in range(steps):
            lr = lr_at(1.0 - step / steps) if callable(lr_at) else lr_at
            for group in updater.optimizer.param_groups:
                group["lr"] = lr
            idx = torch.randint(0, xn.shape[0], (bs,), generator=gen, device=self.device)
            loss, stats = self.synth.loss(xn[idx], generator=gen)
            updater.step(loss)
            self.ema.update(net, step)
            if step % log_every == 0 or step == steps - 1:
                losses.append(check_finite(dict(stats), self.num_timesteps + step)["diffusion_loss"])
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        net.eval()
        self.num_timesteps += steps
        seconds = time.perf_counter() - t0
        self.fit_log.append({"steps": steps, "rows": int(x.shape[0]), "seconds": seconds,
                             "first_loss": losses[0] if losses else math.nan,
                             "final_loss": losses[-1] if losses else math.nan})
        return self

    # ------------------------------------------------------------------ sampling
    def _net(self) -> torch.nn.Module:
        return self.ema.model if self.ema is not None else self.synth.denoiser

    def _check_fitted(self) -> GaussianNormalizer:
        if self.normalizer is None:
            raise RuntimeError("SynthER: call fit(...) (or load a fitted checkpoint) before sampling")
        return self.normalizer

    def refit_and_sample(self, data: Any, n: int, *, steps: int | None, batch_size: int | None = None,
                         seed: int | None = None, sample_steps: int | None = None
                         ) -> tuple[dict[str, np.ndarray], dict[str, float]]:
        """Fit on ``data``, then draw ``n`` transitions: the retraining step of the online replay buffers.

        Returns:
            The samples and ``{"fit_s", "sample_s", "final_loss"}`` timings / loss.
        """
        t0 = time.perf_counter()
        self.fit(data, steps=steps, batch_size=batch_size)
        t1 = time.perf_counter()
        samples = self.sample(n, seed=seed, sample_steps=sample_steps)
        stats = {"fit_s": t1 - t0, "sample_s": time.perf_counter() - t1,
                 "final_loss": float(self.fit_log[-1]["final_loss"])}
        return samples, stats

    def sample(self, n: int, *, batch_size: int | None = None, seed: int | None = None, temperature: float = 1.0,
               sample_steps: int | None = None) -> dict[str, np.ndarray]:
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
        sampler, net, chunks = self.synth.make_sampler(sample_steps), self._net(), []
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

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike[str], *, weights_dtype: str | None = None,
             exclude: Sequence[str] = ()) -> str:
        """Atomically write config JSON + safetensors weights + normaliser statistics (no pickle); the weights
        stored as ``weights_dtype`` (``"float16"``: half size, see :func:`~diffagents.persistence.save_checkpoint`);
        ``exclude=["training_weights"]`` leaves out the denoiser that the EMA copy (what samples) averages."""
        return save_synther(self, path, weights_dtype=weights_dtype, exclude=exclude)

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, device: str | torch.device = "auto") -> SynthER:
        """Rebuild a generator saved with :meth:`save`; raises :class:`CheckpointError` on a bad file."""
        return load_synther(cls, path, device=device)

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

    def as_env(self, dataset: Any = None, *, max_episode_steps: int = 1000, sample_steps: int | None = None) -> Any:
        """A Gymnasium env backed by the generator (see :class:`diffagents.agents.synther_env.SynthEREnv`)."""
        from diffagents.agents.synther_env import SynthEREnv

        return SynthEREnv(self, start_states(self, dataset), max_episode_steps=max_episode_steps,
                          sample_steps=sample_steps)

def _progress(total: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="SynthER fit")
