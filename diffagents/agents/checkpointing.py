"""Pickle-free checkpoints of :class:`~diffagents.agents.base.OfflineAgent` s: ``save`` / ``load`` and the
crash-safe training checkpoints of ``learn(checkpoint_dir=...)`` (integration.md Sec. 1.2).

A checkpoint (:class:`~diffagents.persistence.Checkpoint`, JSON metadata + safetensors) holds the config, the
spaces and flattener, every network, the EMA copy, the optimizers, the normalizers, the step counters, the
agent's ``_extra_state()`` and ``_extra_arrays()`` and every RNG state (:mod:`diffagents.rng`), so a run killed
and resumed from its newest ``step_*.zip`` ends with the weights of an uninterrupted run (CPU, same seed).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from diffagents import __version__
from diffagents.persistence import (
    Checkpoint,
    CheckpointError,
    fill_from_ema,
    read_checkpoint,
    save_checkpoint,
)
from diffagents.rng import get_rng_state, set_rng_state
from diffagents.spaces import space_from_dict, space_to_dict
from diffagents.training import check_finite

if TYPE_CHECKING:
    from diffagents.agents.base import OfflineAgent


def agent_checkpoint(agent: OfflineAgent) -> Checkpoint:
    """Everything needed to rebuild ``agent`` and continue its training, RNG states included."""
    arrays: dict[str, np.ndarray] = {}
    norm_meta: dict[str, Any] = {}
    for name, norm in agent.normalizers.items():
        if norm is None:
            continue
        scalars = {}
        for key, value in norm.state_dict().items():
            if isinstance(value, np.ndarray):
                arrays[f"normalizer/{name}/{key}"] = value
            else:
                scalars[key] = value
        norm_meta[name] = {"class": type(norm).__name__, "scalars": scalars}
    weights = {name: m.state_dict() for name, m in agent.nets.items()}
    if agent.ema is not None:
        weights["ema"] = agent.ema.model.state_dict()
    optim = {name: u.state_dict() for name, u in agent.updaters.items()}
    rng_meta, rng_arrays = get_rng_state()
    arrays.update(rng_arrays)
    arrays.update({f"extra/{key}": value for key, value in agent._extra_arrays().items()})
    meta = {
        "algo": type(agent).__name__,
        "diffagents_version": __version__,
        "config": agent.config.to_dict(),
        "observation_space": space_to_dict(agent.observation_space),
        "action_space": space_to_dict(agent.action_space),
        "flattener": agent.flattener.to_dict(),
        "normalizers": norm_meta,
        "num_timesteps": int(agent.num_timesteps),
        "n_updates": int(agent._n_updates),
        "train_wall_s": float(agent.train_wall_s),
        "ema_num_updates": agent.ema.num_updates if agent.ema is not None else 0,
        "extra": agent._extra_state(),
        "rng": rng_meta,
    }
    return Checkpoint(meta=meta, weights=weights, arrays=arrays, optimizers=optim)


def restore_agent(agent: OfflineAgent, ckpt: Checkpoint, where: str) -> None:
    """Load ``ckpt`` (read from ``where``) into ``agent``, built with the checkpoint's config and spaces.

    Raises:
        CheckpointError: the weights, optimizers or normalizers do not match the agent's configuration.
    """
    from diffagents import data

    try:
        weights = fill_from_ema(ckpt)
        for name, module in agent.nets.items():
            module.load_state_dict(weights[name])
        if agent.ema is not None:
            agent.ema.model.load_state_dict(ckpt.weights["ema"])
            agent.ema.num_updates = int(ckpt.meta.get("ema_num_updates", 0))
        for name, upd in agent.updaters.items():
            if name in ckpt.optimizers:
                upd.load_state_dict(ckpt.optimizers[name])
        agent.flattener = data.ObsFlattener.from_dict(ckpt.meta["flattener"])
        for name, info in ckpt.meta.get("normalizers", {}).items():
            prefix = f"normalizer/{name}/"
            state = dict(info["scalars"])
            state.update({k[len(prefix):]: v for k, v in ckpt.arrays.items() if k.startswith(prefix)})
            norm_cls = getattr(data, info["class"])
            agent.normalizers[name] = norm_cls.from_state_dict(state)
        agent._load_extra_arrays({k[len("extra/"):]: v for k, v in ckpt.arrays.items() if k.startswith("extra/")})
    except (KeyError, RuntimeError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"checkpoint {where!r} does not match this {type(agent).__name__} "
                              f"configuration: {type(exc).__name__}: {exc}") from exc
    agent.num_timesteps = int(ckpt.meta.get("num_timesteps", 0))
    agent._n_updates = int(ckpt.meta.get("n_updates", 0))
    agent.train_wall_s = float(ckpt.meta.get("train_wall_s", 0.0))
    agent._load_extra_state(ckpt.meta.get("extra", {}))


def load_agent(cls: type[OfflineAgent], path: Any, env: Any = None, device: torch.device | str = "auto",
               dataset: Any = None) -> OfflineAgent:
    """Implementation of :meth:`OfflineAgent.load` (``cls`` is the class it was called on; the base class
    dispatches on the checkpoint's ``algo``)."""
    from diffagents.agents.base import OfflineAgent

    ckpt = read_checkpoint(path)
    algo = ckpt.meta.get("algo")
    if cls is not OfflineAgent and algo != cls.__name__:
        raise CheckpointError(f"checkpoint {str(path)!r} holds a {algo} agent, not a {cls.__name__}")
    target: type[OfflineAgent] = cls
    if cls is OfflineAgent:
        from diffagents.agents import get_agent_class

        try:
            target = get_agent_class(str(algo))
        except ValueError as exc:
            raise CheckpointError(f"checkpoint {str(path)!r}: {exc}") from exc
        if not issubclass(target, OfflineAgent):
            return target.load(path, env=env, device=device)  # type: ignore[no-any-return]
    try:
        obs_space = space_from_dict(ckpt.meta["observation_space"])
        act_space = space_from_dict(ckpt.meta["action_space"])
        config = target.config_class.from_dict(ckpt.meta["config"])
    except (KeyError, ValueError, TypeError) as exc:
        raise CheckpointError(f"checkpoint {str(path)!r}: invalid metadata: {exc}") from exc
    try:
        agent = target(env=env, dataset=None, device=device, _spaces=(obs_space, act_space),
                       _init_setup_model=True, **config.to_dict())
    except ValueError as exc:
        raise CheckpointError(f"checkpoint {str(path)!r} does not match the env: {exc}") from exc
    restore_agent(agent, ckpt, str(path))
    if dataset is not None:
        agent.set_dataset(dataset)
    return agent


def checkpoints_in(folder: Path) -> list[Path]:
    """The ``step_*.zip`` training checkpoints of ``folder``, oldest first."""
    found = []
    for p in folder.glob("step_*.zip"):
        try:
            found.append((int(p.stem.split("_")[1]), p))
        except ValueError:
            continue
    return [p for _, p in sorted(found)]


def write_training_checkpoint(agent: OfflineAgent, folder: Path, keep: int) -> None:
    """Atomically write ``folder/step_<num_timesteps>.zip`` and delete all but the ``keep`` newest."""
    check_finite({}, agent.num_timesteps)
    save_checkpoint(folder / f"step_{agent.num_timesteps:09d}.zip", agent_checkpoint(agent))
    for old in checkpoints_in(folder)[:-max(keep, 1)]:
        old.unlink(missing_ok=True)


def resume_from(agent: OfflineAgent, folder: Path) -> bool:
    """Load the newest readable checkpoint of ``folder`` into ``agent`` (RNG included); False if none."""
    for path in reversed(checkpoints_in(folder) if folder.is_dir() else []):
        try:
            ckpt = read_checkpoint(path)
        except CheckpointError:
            continue  # a corrupt newest file (e.g. disk full): fall back to the previous one
        if ckpt.meta.get("algo") != type(agent).__name__:
            raise CheckpointError(f"checkpoint_dir {str(folder)!r} holds {ckpt.meta.get('algo')} checkpoints, "
                                  f"not {type(agent).__name__}")
        ours, theirs = agent.config.to_dict(), ckpt.meta.get("config") or {}
        learned = sorted(k for k in set(ours) | set(theirs)
                         if k not in type(agent).acting_fields and ours.get(k) != theirs.get(k))
        if learned:  # acting settings (how the agent acts, never what it learns) may change between pieces
            diff = "; ".join(f"{k}: checkpoint {theirs.get(k)!r}, this agent {ours.get(k)!r}" for k in learned)
            raise CheckpointError(f"checkpoint_dir {str(folder)!r}: its config differs from this agent's ({diff}); "
                                  "use a new folder for a new configuration")
        restore_agent(agent, ckpt, str(path))
        set_rng_state(ckpt.meta["rng"], ckpt.arrays)
        if agent.verbose:
            print(f"resumed {type(agent).__name__} from {path} at step {agent.num_timesteps}")
        return True
    return False
