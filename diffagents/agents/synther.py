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
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from diffagents import __version__
from diffagents.data import GaussianNormalizer, ObsFlattener, load_dataset, to_transitions
from diffagents.diffusion import GaussianDiffusion, NoiseSchedule
from diffagents.guidance import Inpaint
from diffagents.nn import ResidualMLPDenoiser
from diffagents.persistence import Checkpoint, CheckpointError, read_checkpoint, save_checkpoint
from diffagents.roles.synthesizer import EDMProcess, TransitionSynthesizer
from diffagents.spaces import space_from_dict, space_to_dict, spaces_equal
from diffagents.training import EMA, Updater, check_finite, make_lr_schedule

FIELDS = ("observations", "actions", "rewards", "next_observations", "terminations")


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
        """Env-unit arrays from a Minari dataset / id, ``Transitions``, SB3 ``ReplayBuffer`` or dict of arrays."""
        data = self.dataset if data is None else data
        if data is None:
            raise ValueError("data: expected a Minari dataset, Transitions, an SB3 ReplayBuffer or a dict, got None")
        if isinstance(data, dict):
            missing = [k for k in FIELDS if k not in data]
            if missing:
                raise ValueError(f"data: dict is missing fields {missing}; expected {list(FIELDS)}")
            arrays = {k: np.asarray(data[k]) for k in FIELDS}
        elif hasattr(data, "pos") and hasattr(data, "buffer_size") and hasattr(data, "observations"):
            arrays = sb3_buffer_arrays(data, self.flattener)
        elif hasattr(data, "as_arrays") and hasattr(data, "flattener"):
            if data.observations.shape[-1] != self.obs_dim:
                raise ValueError(f"data: Transitions have obs dim {data.observations.shape[-1]}, expected "
                                 f"{self.obs_dim}; build them with to_transitions(ds, flattener=gen.flattener)")
            arrays = {k: getattr(data, k) for k in FIELDS}
        else:
            ds = load_dataset(data)
            for label, a, b in (("observation_space", ds.observation_space, self.observation_space),
                                ("action_space", ds.action_space, self.action_space)):
                if not spaces_equal(a, b):
                    raise ValueError(f"{label}: the generator was built for {b} but the dataset has {a}")
            tr = to_transitions(ds, flattener=self.flattener)
            arrays = {k: getattr(tr, k) for k in FIELDS}
        return arrays

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
                (:data:`FIELDS`, env units). Default: the ``dataset`` given at construction.
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
    def save(self, path: str | os.PathLike[str]) -> str:
        """Atomically write config JSON + safetensors weights + normaliser statistics (no pickle)."""
        weights = {"denoiser": self.synth.denoiser.state_dict()}
        if self.ema is not None:
            weights["ema"] = self.ema.model.state_dict()
        arrays = {}
        if self.normalizer is not None:
            arrays = {"norm_mean": np.asarray(self.normalizer.mean, np.float64),
                      "norm_std": np.asarray(self.normalizer.std, np.float64)}
        meta = {"algorithm": "SynthER", "diffagents_version": __version__, "config": self.config.to_dict(),
                "observation_space": space_to_dict(self.observation_space),
                "action_space": space_to_dict(self.action_space), "seed": self.seed,
                "num_timesteps": self.num_timesteps, "fit_log": self.fit_log}
        return str(save_checkpoint(path, Checkpoint(meta=meta, weights=weights, arrays=arrays)))

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, device: str | torch.device = "auto") -> SynthER:
        """Rebuild a generator saved with :meth:`save`; raises :class:`CheckpointError` on a bad file."""
        ckpt = read_checkpoint(path, load_optimizers=False)
        meta = ckpt.meta
        if meta.get("algorithm") != "SynthER":
            raise CheckpointError(f"checkpoint {str(path)!r}: algorithm is {meta.get('algorithm')!r}, expected 'SynthER'")
        try:
            config = {k: tuple(v) if isinstance(v, list) else v for k, v in meta["config"].items()}
            gen = cls(space_from_dict(meta["observation_space"]), space_from_dict(meta["action_space"]),
                      device=device, seed=int(meta.get("seed", 0)), **config)
            gen.synth.denoiser.load_state_dict(ckpt.weights["denoiser"])
            if "ema" in ckpt.weights:
                gen.ema = EMA(gen.synth.denoiser, decay=gen.config.ema_decay)
                gen.ema.model.load_state_dict(ckpt.weights["ema"])
            if "norm_mean" in ckpt.arrays:
                norm = GaussianNormalizer()
                norm.mean, norm.std, norm.fitted = ckpt.arrays["norm_mean"], ckpt.arrays["norm_std"], True
                norm._check(np.zeros((1, gen.x_dim)))
                gen.normalizer = norm
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise CheckpointError(f"checkpoint {str(path)!r} does not match a SynthER generator: {exc}") from exc
        gen.num_timesteps = int(meta.get("num_timesteps", 0))
        gen.fit_log = list(meta.get("fit_log", []))
        gen.synth.denoiser.eval()
        return gen

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


def start_states(gen: SynthER, data: Any = None) -> np.ndarray:
    """Flat episode-start observations of ``data`` (all observations for buffers / dicts without episodes)."""
    data = gen.dataset if data is None else data
    if data is None:
        raise ValueError("dataset: as_env needs a dataset (or the generator's default dataset) for start states")
    if isinstance(data, dict) or hasattr(data, "pos"):
        return gen._arrays(data)["observations"].reshape(-1, gen.obs_dim).astype(np.float32)
    if hasattr(data, "episode_ids"):
        _, first = np.unique(data.episode_ids, return_index=True)
        return np.asarray(data.observations[first], np.float32)
    from diffagents.data import read_episodes

    table = read_episodes(load_dataset(data), flattener=gen.flattener)
    return table.observations[table.obs_offsets].astype(np.float32)


def sb3_buffer_arrays(rb: Any, flattener: ObsFlattener) -> dict[str, np.ndarray]:
    """The filled part of an SB3 (Dict)ReplayBuffer as env-unit arrays (actions unscaled from [-1, 1]).

    Terminal flags are ``dones * (1 - timeouts)`` (SB3's bootstrap mask); with ``optimize_memory_usage`` the
    next observation is the following slot and the slot at ``pos`` of a full buffer is skipped, as SB3 does.
    """
    size = rb.buffer_size if rb.full else rb.pos
    idx = np.arange(size)
    if getattr(rb, "optimize_memory_usage", False) and rb.full:
        idx = idx[idx != rb.pos]
    if len(idx) == 0:
        raise ValueError("data: the replay buffer is empty")

    def rows(a: np.ndarray, at: np.ndarray = idx) -> np.ndarray:
        return a[at].reshape(len(at) * rb.n_envs, *a.shape[2:])  # (n, n_envs, ...) -> (n * n_envs, ...)

    def flat(obs: Any, at: np.ndarray = idx) -> np.ndarray:
        if isinstance(obs, dict):
            return flattener({k: rows(v, at) for k, v in obs.items()})
        return rows(obs, at).reshape(len(at) * rb.n_envs, -1).astype(np.float32)

    if getattr(rb, "optimize_memory_usage", False):
        nxt = flat(rb.observations, (idx + 1) % rb.buffer_size)
    else:
        nxt = flat(rb.next_observations)
    low, high = rb.action_space.low.reshape(-1), rb.action_space.high.reshape(-1)
    scaled = np.clip(rows(rb.actions).reshape(-1, low.shape[0]), -1.0, 1.0)
    return {"observations": flat(rb.observations), "actions": low + (scaled + 1.0) * 0.5 * (high - low),
            "rewards": rows(rb.rewards), "next_observations": nxt,
            "terminations": rows(rb.dones * (1.0 - rb.timeouts)) > 0.5}


def _progress(total: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="SynthER fit")


def config_summary(gen: SynthER) -> str:
    """A one-line JSON summary of the generator (recorded in upsampled datasets)."""
    return json.dumps({"config": gen.config.to_dict(), "num_timesteps": gen.num_timesteps, "seed": gen.seed},
                      sort_keys=True)


def default_upsampled_id(dataset_id: str, n: int) -> str:
    """``ns/env/name-vN`` -> ``ns/env/name-synther{n}-vN``."""
    stem, sep, version = dataset_id.rpartition("-v")
    return f"{stem}-synther{n}-v{version}" if sep and version.isdigit() else f"{dataset_id}-synther{n}-v0"


def write_upsampled(gen: SynthER, ds: Any, n: int, new_id: str | None, *, seed: int | None,
                    batch_size: int | None) -> Any:
    """Implementation of :meth:`SynthER.upsample` (real episodes copied, synthetic ones as 1-step episodes)."""
    import warnings

    import minari
    from minari.data_collector import EpisodeBuffer

    from diffagents.data.recipes.base import reference_scores

    for label, a, b in (("observation_space", ds.observation_space, gen.observation_space),
                        ("action_space", ds.action_space, gen.action_space)):
        if not spaces_equal(a, b):
            raise ValueError(f"{label}: the generator was built for {b} but the dataset has {a}")
    syn = gen.sample(n, seed=seed, batch_size=batch_size)
    buffers: list[Any] = []
    for ep in ds.iterate_episodes():
        buffers.append(EpisodeBuffer(id=len(buffers), observations=ep.observations, actions=ep.actions,
                                     rewards=np.asarray(ep.rewards), terminations=np.asarray(ep.terminations),
                                     truncations=np.asarray(ep.truncations)))
    n_real_eps = len(buffers)
    obs_pairs = gen.unflatten_obs(np.stack([syn["observations"], syn["next_observations"]], axis=1))  # (n, 2, ...)
    act = syn["actions"].reshape(n, 1, *gen.action_space.shape).astype(gen.action_space.dtype)
    for i in range(n):
        obs_i = {k: v[i] for k, v in obs_pairs.items()} if isinstance(obs_pairs, dict) else obs_pairs[i]
        term = bool(syn["terminations"][i])
        buffers.append(EpisodeBuffer(id=len(buffers), observations=obs_i, actions=act[i],
                                     rewards=np.asarray([syn["rewards"][i]], np.float64),
                                     terminations=np.asarray([term]), truncations=np.asarray([not term])))
    new_id = new_id or default_upsampled_id(ds.spec.dataset_id, n)
    refs = reference_scores(ds)
    env_spec = ds.env_spec
    summary = config_summary(gen)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        out = minari.create_dataset_from_buffers(
            new_id, buffers, env=env_spec, algorithm_name="SynthER", author="diffagents",
            author_email="diffagents@localhost", code_permalink="diffagents.agents.synther.SynthER.upsample",
            observation_space=None if env_spec is not None else ds.observation_space,
            action_space=None if env_spec is not None else ds.action_space,
            ref_min_score=refs[0] if refs else None, ref_max_score=refs[1] if refs else None,
            description=(f"{ds.spec.dataset_id} ({ds.total_steps} real steps, episodes 0..{n_real_eps - 1}) upsampled "
                         f"with {n} SynthER transitions (one-step episodes {n_real_eps}..{n_real_eps + n - 1}; "
                         f"truncated unless terminal). Generator: {summary}"))
    out.storage.update_metadata({"diffagents_synther": {
        "source": ds.spec.dataset_id, "real_steps": int(ds.total_steps), "real_episodes": n_real_eps,
        "synthetic_steps": n, "generator": json.loads(summary)}})
    return minari.load_dataset(new_id)
