"""The one checkpoint reader / writer of every agent (docs/architecture.md, "Checkpoints").

A checkpoint (:class:`~diffagents.persistence.Checkpoint`: JSON metadata + safetensors, written atomically by
:func:`~diffagents.persistence.save_checkpoint`) holds the config, what the agent needs to rebuild its networks
(``agent.checkpoint_spaces()``: Gymnasium spaces and flattener, or the agents of a multi-agent team), every
network, the EMA copy, the optimizers, the normalizers (one encoding: ``normalizers[name]`` scalars in the JSON,
``normalizer/<name>/<stat>`` arrays), the step counters, the agent's ``extra_state()`` / ``extra_arrays()`` and
every RNG state (:mod:`diffagents.rng`), so a run killed and resumed from its newest ``step_*.zip`` ends with the
weights of an uninterrupted run (CPU, same seed).

Loading never imports or calls anything a file names: the algorithm is looked up in the registry, normalizers
by their ``kind`` among the package's normalizer classes, and every weight must be finite. Files written before
the kernel (SynthER's ``algorithm`` key and ``norm_mean`` arrays, MADiff's single ``normalizer``) are read through
:func:`upgrade_legacy`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from diffagents import __version__
from diffagents.persistence import (
    TRAINING_WEIGHTS,
    Checkpoint,
    CheckpointError,
    drop_ema_source,
    fill_from_ema,
    read_checkpoint,
    save_checkpoint,
)
from diffagents.rng import get_rng_state, set_rng_state


def algo_of(meta: dict[str, Any]) -> Any:
    """The algorithm name a checkpoint's metadata records (``algorithm`` in files written before the kernel)."""
    return meta.get("algo", meta.get("algorithm"))


def agent_checkpoint(agent: Any) -> Checkpoint:
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
        norm_meta[name] = {"scalars": scalars}
    weights = {name: m.state_dict() for name, m in agent.nets.items()}
    if agent.ema is not None:
        weights["ema"] = agent.ema.model.state_dict()
    optim = {name: u.state_dict() for name, u in agent.updaters.items()}
    rng_meta, rng_arrays = get_rng_state()
    arrays.update(rng_arrays)
    arrays.update({f"extra/{key}": value for key, value in agent.extra_arrays().items()})
    meta = {
        "algo": agent.agent_name,
        "diffagents_version": __version__,
        "config": agent.config.to_dict(),
        **agent.checkpoint_spaces(),
        "normalizers": norm_meta,
        "num_timesteps": int(agent.num_timesteps),
        "n_updates": int(agent._n_updates),
        "train_wall_s": float(agent.train_wall_s),
        "ema_num_updates": agent.ema.num_updates if agent.ema is not None else 0,
        "has_ema": agent.ema is not None,
        "extra": agent.extra_state(),
        "rng": rng_meta,
    }
    return Checkpoint(meta=meta, weights=weights, arrays=arrays, optimizers=optim)


def save_agent(agent: Any, path: Any, exclude: Any = None, *, weights_dtype: str | None = None) -> Path:
    """``agent.save``: ``exclude=["optimizers"]`` writes an inference-only file; adding ``"training_weights"``
    leaves out the network the EMA copy averages where that copy is what acts (``ema_acts``)."""
    ckpt = agent_checkpoint(agent)
    if exclude and "optimizers" in exclude:
        ckpt.optimizers = {}
    if exclude and TRAINING_WEIGHTS in exclude and agent.ema is not None and agent.ema_acts:
        drop_ema_source(ckpt, dict(agent.nets.items()), agent.ema.model)
    return save_checkpoint(path, ckpt, weights_dtype=weights_dtype)


def upgrade_legacy(ckpt: Checkpoint) -> Checkpoint:
    """Rewrite, in memory, the layouts written before the one checkpoint format into it (files stay as they are).

    * SynthER (``algorithm: SynthER``): ``norm_mean`` / ``norm_std`` arrays -> the ``transition`` normalizer;
      ``seed`` / ``fit_log`` -> ``extra``.
    * MADiff: ``normalizer`` scalars + ``normalizer/<stat>`` arrays -> the ``obs`` normalizer; ``targets`` ->
      ``extra/targets``.
    * Offline agents: normalizer entries named by ``class`` (the kind scalar is what is read).
    """
    meta, arrays = dict(ckpt.meta), dict(ckpt.arrays)
    algo = algo_of(meta)
    if "algo" not in meta and algo == "SynthER":
        meta["algo"] = "SynthER"
        meta["normalizers"] = {}
        if "norm_mean" in arrays:
            meta["normalizers"]["transition"] = {"scalars": {"kind": "gaussian"}}
            arrays["normalizer/transition/mean"] = arrays.pop("norm_mean")
            arrays["normalizer/transition/std"] = arrays.pop("norm_std")
        meta["extra"] = {"seed": meta.get("seed", 0), "fit_log": meta.get("fit_log", [])}
        meta["has_ema"] = "ema" in ckpt.weights
    elif algo == "MADiff" and "normalizer" in meta:
        scalars = meta.pop("normalizer")
        meta["normalizers"] = {}
        if scalars is not None:
            meta["normalizers"]["obs"] = {"scalars": scalars}
            for key in [k for k in arrays if k.startswith("normalizer/") and k.count("/") == 1]:
                arrays[f"normalizer/obs/{key.split('/', 1)[1]}"] = arrays.pop(key)
        if "targets" in arrays:
            arrays["extra/targets"] = arrays.pop("targets")
    return Checkpoint(meta=meta, weights=ckpt.weights, arrays=arrays, optimizers=ckpt.optimizers)


def _check_weights_finite(weights: dict[str, dict[str, torch.Tensor]]) -> None:
    for name, sd in weights.items():
        for key, tensor in sd.items():
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                raise CheckpointError(f"weights: {name}.{key} holds NaN or Inf values; expected finite weights")


def _normalizers(ckpt: Checkpoint) -> dict[str, Any]:
    from diffagents.data import normalizer_from_state_dict

    out = {}
    for name, info in (ckpt.meta.get("normalizers") or {}).items():
        prefix = f"normalizer/{name}/"
        state = dict(info["scalars"])
        state.update({k[len(prefix):]: v for k, v in ckpt.arrays.items() if k.startswith(prefix)})
        for key, value in state.items():
            if isinstance(value, np.ndarray) and not np.isfinite(value).all():
                raise CheckpointError(f"normalizers: {name}.{key} holds NaN or Inf values")
        out[name] = normalizer_from_state_dict(state)
    return out


def restore_agent(agent: Any, ckpt: Checkpoint, where: str) -> None:
    """Load ``ckpt`` (read from ``where``) into ``agent``, built with the checkpoint's config and spaces.

    Raises:
        CheckpointError: non-finite weights, or weights, optimizers or normalizers that do not match.
    """
    from diffagents.data import DataError

    _check_weights_finite(ckpt.weights)
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
        agent.restore_spaces(ckpt.meta)
        agent.normalizers.update(_normalizers(ckpt))
        agent.load_extra_arrays({k[len("extra/"):]: v for k, v in ckpt.arrays.items() if k.startswith("extra/")})
    except CheckpointError:
        raise
    except (KeyError, RuntimeError, ValueError, TypeError, AttributeError, DataError) as exc:
        raise CheckpointError(f"checkpoint {where!r} does not match this {type(agent).__name__} "
                              f"configuration: {type(exc).__name__}: {exc}") from exc
    agent.num_timesteps = int(ckpt.meta.get("num_timesteps", 0))
    agent._n_updates = int(ckpt.meta.get("n_updates", 0))
    agent.train_wall_s = float(ckpt.meta.get("train_wall_s", 0.0))
    agent.load_extra_state(ckpt.meta.get("extra", {}))


def load_agent(cls: Any, path: Any, *, env: Any = None, device: torch.device | str = "auto",
               dataset: Any = None) -> Any:
    """``cls.load(path, env=..., device=..., dataset=...)`` for every registered agent; never unpickles.

    ``cls`` is the class ``load`` was called on; a base class (not registered itself) dispatches on the
    checkpoint's ``algo`` through the registry.

    Raises:
        CheckpointError: the file is corrupt, holds non-finite weights, is of another algorithm, or does not
            match ``env``'s spaces.
    """
    from diffagents.core.registry import get_agent_class

    ckpt = upgrade_legacy(read_checkpoint(path))
    algo = algo_of(ckpt.meta)
    target: Any = cls
    if vars(cls).get("agent_name") is None:  # a base class (registration sets its own name): dispatch
        try:
            target = get_agent_class(str(algo))
        except ValueError as exc:
            raise CheckpointError(f"checkpoint {str(path)!r}: {exc}") from exc
        if not issubclass(target, cls):
            raise CheckpointError(f"checkpoint {str(path)!r} holds a {algo} agent, not a {cls.__name__}")
    elif algo != cls.agent_name:
        raise CheckpointError(f"checkpoint {str(path)!r} holds a {algo} agent, not a {cls.agent_name}")
    try:
        config = target.config_class.from_dict(ckpt.meta["config"])
    except (KeyError, ValueError, TypeError) as exc:
        raise CheckpointError(f"checkpoint {str(path)!r}: invalid metadata 'config': {exc}") from exc
    try:
        agent = target.from_checkpoint_meta(ckpt.meta, config, env=env, device=device)
    except CheckpointError:
        raise
    except (KeyError, TypeError) as exc:
        raise CheckpointError(f"checkpoint {str(path)!r}: invalid metadata: {type(exc).__name__}: {exc}") from exc
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


def write_training_checkpoint(agent: Any, folder: Path, keep: int, ckpt: Checkpoint | None = None) -> None:
    """Atomically write ``folder/step_<num_timesteps>.zip`` (``ckpt``, default :func:`agent_checkpoint`) and
    delete all but the ``keep`` newest."""
    save_checkpoint(folder / f"step_{agent.num_timesteps:09d}.zip", ckpt or agent_checkpoint(agent))
    for old in checkpoints_in(folder)[:-max(keep, 1)]:
        old.unlink(missing_ok=True)


def resume_from(agent: Any, folder: Path) -> Checkpoint | None:
    """Load the newest readable checkpoint of ``folder`` into ``agent`` (RNG included) and return it (front-ends
    with more state, e.g. online agents' buffers, read the rest from it); None if there is none."""
    for path in reversed(checkpoints_in(folder) if folder.is_dir() else []):
        try:
            ckpt = upgrade_legacy(read_checkpoint(path))
        except CheckpointError:
            continue  # a corrupt newest file (e.g. disk full): fall back to the previous one
        if algo_of(ckpt.meta) != agent.agent_name:
            raise CheckpointError(f"checkpoint_dir {str(folder)!r} holds {algo_of(ckpt.meta)} checkpoints, "
                                  f"not {agent.agent_name}")
        ours, theirs = agent.config.to_dict(), type(agent.config)._renamed(ckpt.meta.get("config") or {})
        learned = sorted(k for k in set(ours) | set(theirs)
                         if k not in type(agent).acting_fields and ours.get(k) != theirs.get(k))
        if learned:  # acting settings (how the agent acts, never what it learns) may change between pieces
            diff = "; ".join(f"{k}: checkpoint {theirs.get(k)!r}, this agent {ours.get(k)!r}" for k in learned)
            raise CheckpointError(f"checkpoint_dir {str(folder)!r}: its config differs from this agent's ({diff}); "
                                  "use a new folder for a new configuration")
        restore_agent(agent, ckpt, str(path))
        set_rng_state(ckpt.meta["rng"], ckpt.arrays)
        if agent.verbose:
            print(f"resumed {agent.agent_name} from {path} at step {agent.num_timesteps}")
        return ckpt
    return None
