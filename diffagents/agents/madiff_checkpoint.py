"""Pickle-free checkpoints of :class:`~diffagents.agents.madiff.MADiff` (JSON metadata + safetensors).

The file holds the config, the agents and their spaces (:class:`~diffagents.agents.madiff_data.AgentSpec`),
the planner, inverse dynamics and EMA weights, the optimizers, the observation normalizer and the per-step
target returns, written atomically by :func:`diffagents.persistence.save_checkpoint`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from diffagents import __version__
from diffagents.agents.madiff_data import AgentSpec
from diffagents.persistence import (
    Checkpoint,
    CheckpointError,
    drop_ema_source,
    fill_from_ema,
    read_checkpoint,
    save_checkpoint,
)

if TYPE_CHECKING:
    from diffagents.agents.madiff import MADiff


def save_madiff(agent: MADiff, path: Any, *, optimizers: bool = True, weights_dtype: str | None = None,
                training_weights: bool = True) -> None:
    """Atomically write ``agent`` to ``path`` (``.zip`` is appended when ``path`` has no suffix); without the
    optimizer states when ``optimizers`` is False (inference-only), without the network the EMA copy averages
    when ``training_weights`` is False (:func:`~diffagents.persistence.drop_ema_source`), the weights stored as
    ``weights_dtype``
    (see :func:`~diffagents.persistence.save_checkpoint`)."""
    arrays: dict[str, np.ndarray] = {}
    norm_meta = None
    if agent.normalizer is not None:
        scalars = {}
        for key, value in agent.normalizer.state_dict().items():
            if isinstance(value, np.ndarray):
                arrays[f"normalizer/{key}"] = value
            else:
                scalars[key] = value
        norm_meta = scalars
    weights = {name: m.state_dict() for name, m in agent.nets.items()} | {"ema": agent.ema.model.state_dict()}
    meta = {
        "algo": "MADiff", "diffagents_version": __version__, "config": agent.config.to_dict(),
        "agents": agent.spec.to_dict(), "normalizer": norm_meta, "num_timesteps": int(agent.num_timesteps),
        "ema_num_updates": agent.ema.num_updates,
    }
    if agent.targets is not None:
        arrays["targets"] = agent.targets
    optim = {name: u.state_dict() for name, u in agent.updaters.items()} if optimizers else {}
    ckpt = Checkpoint(meta=meta, weights=weights, arrays=arrays, optimizers=optim)
    if not training_weights:
        drop_ema_source(ckpt, agent.nets, agent.ema.model)
    save_checkpoint(path, ckpt, weights_dtype=weights_dtype)


def load_madiff(cls: type[MADiff], path: Any, env: Any = None, device: torch.device | str = "auto",
                dataset: Any = None) -> MADiff:
    """Rebuild an agent of class ``cls`` saved by :func:`save_madiff`; never unpickles.

    Raises:
        CheckpointError: corrupt file, another algorithm, or agents / spaces that differ from ``env``'s
            (the message names the agent and the field).
    """
    from diffagents.data import normalizer_from_state_dict

    ckpt = read_checkpoint(path)
    where = str(path)
    if ckpt.meta.get("algo") != "MADiff":
        raise CheckpointError(f"checkpoint {where!r} holds a {ckpt.meta.get('algo')} agent, not a MADiff")
    try:
        spec = AgentSpec.from_dict(ckpt.meta["agents"])
        config = cls.config_class.from_dict(ckpt.meta["config"])
    except (KeyError, ValueError, TypeError) as exc:
        raise CheckpointError(f"checkpoint {where!r}: invalid metadata: {exc}") from exc
    try:
        agent = cls(env=env, device=device, _spec=spec, **vars(config))
    except ValueError as exc:
        raise CheckpointError(f"checkpoint {where!r} does not match the env: {exc}") from exc
    try:
        weights = fill_from_ema(ckpt)
        for name, module in agent.nets.items():
            module.load_state_dict(weights[name])
        agent.ema.model.load_state_dict(ckpt.weights["ema"])
        for name, upd in agent.updaters.items():
            if name in ckpt.optimizers:
                upd.load_state_dict(ckpt.optimizers[name])
        if ckpt.meta.get("normalizer") is not None:
            state = dict(ckpt.meta["normalizer"])
            state |= {k.split("/", 1)[1]: v for k, v in ckpt.arrays.items() if k.startswith("normalizer/")}
            agent.normalizer = normalizer_from_state_dict(state)
    except (KeyError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {where!r} does not match this MADiff configuration: "
                              f"{type(exc).__name__}: {exc}") from exc
    agent.ema.num_updates = int(ckpt.meta.get("ema_num_updates", 0))
    agent.num_timesteps = int(ckpt.meta.get("num_timesteps", 0))
    if "targets" in ckpt.arrays:
        agent.targets = np.asarray(ckpt.arrays["targets"], dtype=np.float32)
    if dataset is not None:
        agent.set_dataset(dataset)
    return agent
