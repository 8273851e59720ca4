"""Pickle-free checkpoints of :class:`~diffagents.agents.synther.SynthER`: config JSON, safetensors weights
(denoiser and EMA) and the Gaussian normaliser statistics (:mod:`diffagents.persistence`)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from diffagents import __version__
from diffagents.data import GaussianNormalizer
from diffagents.persistence import (
    TRAINING_WEIGHTS,
    Checkpoint,
    CheckpointError,
    drop_ema_source,
    fill_from_ema,
    read_checkpoint,
    save_checkpoint,
)
from diffagents.spaces import space_from_dict, space_to_dict
from diffagents.training import EMA

if TYPE_CHECKING:
    from diffagents.agents.synther import SynthER


def save_synther(gen: SynthER, path: str | os.PathLike[str], *, weights_dtype: str | None = None,
                 exclude: Sequence[str] = ()) -> str:
    """Atomically write ``gen``: config JSON + safetensors weights (as ``weights_dtype``) + normaliser statistics
    (no pickle); ``exclude=["training_weights"]`` leaves out the denoiser the EMA copy averages (sampling uses the
    EMA copy; :func:`~diffagents.persistence.drop_ema_source`)."""
    weights = {"denoiser": gen.synth.denoiser.state_dict()}
    if gen.ema is not None:
        weights["ema"] = gen.ema.model.state_dict()
    arrays = {}
    if gen.normalizer is not None:
        arrays = {"norm_mean": np.asarray(gen.normalizer.mean, np.float64),
                  "norm_std": np.asarray(gen.normalizer.std, np.float64)}
    meta = {"algorithm": "SynthER", "diffagents_version": __version__, "config": gen.config.to_dict(),
            "observation_space": space_to_dict(gen.observation_space),
            "action_space": space_to_dict(gen.action_space), "seed": gen.seed,
            "num_timesteps": gen.num_timesteps, "fit_log": gen.fit_log}
    ckpt = Checkpoint(meta=meta, weights=weights, arrays=arrays)
    if TRAINING_WEIGHTS in exclude and gen.ema is not None:
        drop_ema_source(ckpt, {"denoiser": gen.synth.denoiser}, gen.ema.model)
    return str(save_checkpoint(path, ckpt, weights_dtype=weights_dtype))


def load_synther(cls: type[SynthER], path: str | os.PathLike[str], *, device: str | torch.device = "auto"
                 ) -> SynthER:
    """Rebuild a generator saved by :func:`save_synther`; raises :class:`CheckpointError` on a bad file."""
    ckpt = read_checkpoint(path, load_optimizers=False)
    meta = ckpt.meta
    if meta.get("algorithm") != "SynthER":
        raise CheckpointError(f"checkpoint {str(path)!r}: algorithm is {meta.get('algorithm')!r}, expected 'SynthER'")
    try:
        config = {k: tuple(v) if isinstance(v, list) else v for k, v in meta["config"].items()}
        gen = cls(space_from_dict(meta["observation_space"]), space_from_dict(meta["action_space"]),
                  device=device, seed=int(meta.get("seed", 0)), **config)
        gen.synth.denoiser.load_state_dict(fill_from_ema(ckpt)["denoiser"])
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
