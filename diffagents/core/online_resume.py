"""Crash-safe training of online agents (SB3 ``OffPolicyAlgorithm`` front-end; docs/architecture.md).

An online run is more than its networks: the replay buffer, SB3's last observations and episode counters, the
action space's sampler (random actions before ``learning_starts``) and the state of every env. A training
checkpoint (the one format of :mod:`diffagents.core.checkpoint`) stores all of them as JSON and arrays, never
pickle, at the start of a rollout (after the previous update, so nothing is half done); resuming restores them and
SB3's ``learn`` continues without resetting the envs, so a killed run ends with the weights of an uninterrupted one
(CPU, same seed).

Env states are captured for the envs whose state is data: Gymnasium MuJoCo envs (``mujoco.mj_getState`` of the
full physics state) and classic-control envs (their ``state`` / ``last_u`` / ``steps_beyond_terminated``), each
with its ``np_random``, ``TimeLimit`` step count and SB3 ``Monitor`` episode statistics, inside a ``DummyVecEnv``.
Other envs are refused with an error naming the env, before training starts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

from diffagents.core.checkpoint import agent_checkpoint, resume_from, write_training_checkpoint
from diffagents.persistence import CheckpointError

_CLASSIC_FIELDS = ("state", "last_u", "steps_beyond_terminated")
_BUFFER_FIELDS = ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")


def _chain(env: Any) -> list[Any]:
    out = [env]
    while hasattr(out[-1], "env"):
        out.append(out[-1].env)
    return out


def check_resumable_env(vec_env: Any) -> None:
    """Raise TypeError naming the env when its state cannot be saved as data."""
    from stable_baselines3.common.vec_env import DummyVecEnv

    if not isinstance(vec_env, DummyVecEnv):
        raise TypeError(f"checkpoint_dir: online resume saves the envs' state, which needs a DummyVecEnv, got "
                        f"{type(vec_env).__name__}")
    for i, env in enumerate(vec_env.envs):
        base = env.unwrapped
        classic = type(base).__module__.startswith("gymnasium.envs.classic_control")
        if not (hasattr(base, "data") and hasattr(base, "model")) and not classic:
            raise TypeError(f"checkpoint_dir: env {i} ({type(base).__name__}) has no state that can be saved as "
                            "data (supported: Gymnasium MuJoCo and classic-control envs)")


def _env_state(env: Any, i: int) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    meta: dict[str, Any] = {}
    arrays: dict[str, np.ndarray] = {}
    for layer in _chain(env):
        name = type(layer).__name__
        if name == "Monitor":
            meta["monitor"] = {"rewards": [float(r) for r in layer.rewards], "needs_reset": bool(layer.needs_reset),
                               "total_steps": int(layer.total_steps),
                               "episode_returns": [float(r) for r in layer.episode_returns],
                               "episode_lengths": [int(n) for n in layer.episode_lengths]}
        elif name == "TimeLimit":
            meta["elapsed_steps"] = layer._elapsed_steps
        elif name == "OrderEnforcing":
            meta["has_reset"] = bool(layer._has_reset)
    base = env.unwrapped
    meta["np_random"] = base.np_random.bit_generator.state
    if hasattr(base, "data") and hasattr(base, "model"):
        import mujoco

        spec = mujoco.mjtState.mjSTATE_INTEGRATION
        state = np.empty(mujoco.mj_stateSize(base.model, spec), dtype=np.float64)
        mujoco.mj_getState(base.model, base.data, state, spec)
        arrays[f"env{i}/mujoco"] = state
    else:
        for field in _CLASSIC_FIELDS:
            if hasattr(base, field):
                value = getattr(base, field)
                if isinstance(value, np.ndarray | np.generic | tuple | list):
                    arrays[f"env{i}/{field}"] = np.asarray(value)
                    if isinstance(value, np.generic):
                        meta.setdefault("numpy_scalars", []).append(field)
                else:
                    meta.setdefault("scalars", {})[field] = value
    return meta, arrays


def _set_env_state(env: Any, i: int, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    for layer in _chain(env):
        name = type(layer).__name__
        if name == "Monitor" and "monitor" in meta:
            m = meta["monitor"]
            layer.rewards, layer.needs_reset, layer.total_steps = list(m["rewards"]), m["needs_reset"], m["total_steps"]
            layer.episode_returns, layer.episode_lengths = list(m["episode_returns"]), list(m["episode_lengths"])
            layer.episode_times = [0.0] * len(layer.episode_lengths)
        elif name == "TimeLimit":
            layer._elapsed_steps = meta.get("elapsed_steps")
        elif name == "OrderEnforcing":
            layer._has_reset = bool(meta.get("has_reset", True))
    base = env.unwrapped
    base.np_random.bit_generator.state = meta["np_random"]
    if f"env{i}/mujoco" in arrays:
        import mujoco

        mujoco.mj_setState(base.model, base.data, np.ascontiguousarray(arrays[f"env{i}/mujoco"]),
                           mujoco.mjtState.mjSTATE_INTEGRATION)
        mujoco.mj_forward(base.model, base.data)
    for field in _CLASSIC_FIELDS:
        if f"env{i}/{field}" in arrays:
            value = np.array(arrays[f"env{i}/{field}"])
            setattr(base, field, value[()] if field in meta.get("numpy_scalars", []) else value)
        elif field in meta.get("scalars", {}):
            setattr(base, field, meta["scalars"][field])


def online_extra(agent: Any) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """JSON state and arrays of a running online agent beyond its networks (see the module docstring)."""
    buf = agent.replay_buffer
    n = buf.buffer_size if buf.full else buf.pos
    arrays = {f"buffer/{f}": np.ascontiguousarray(getattr(buf, f)[:n]) for f in _BUFFER_FIELDS if hasattr(buf, f)}
    arrays["sb3/last_obs"] = np.asarray(agent._last_obs)
    arrays["sb3/last_episode_starts"] = np.asarray(agent._last_episode_starts)
    venv = agent.env
    arrays["sb3/buf_obs"] = np.asarray(venv.buf_obs[None]) if None in venv.buf_obs else np.zeros(0)
    envs = []
    for i, env in enumerate(venv.envs):
        meta, arr = _env_state(env, i)
        envs.append(meta)
        arrays.update(arr)
    state = {"buffer": {"pos": int(buf.pos), "full": bool(buf.full)}, "episode_num": int(agent._episode_num),
             "action_space_rng": agent.action_space.np_random.bit_generator.state, "envs": envs}
    return {"online": json.loads(json.dumps(state))}, {f"online/{k}": v for k, v in arrays.items()}


def restore_online(agent: Any, extra: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    """Put back what :func:`online_extra` saved into ``agent`` (its replay buffer and envs already built)."""
    state = extra["online"]
    arrays = {k[len("online/"):]: v for k, v in arrays.items() if k.startswith("online/")}
    buf = agent.replay_buffer
    for f in _BUFFER_FIELDS:
        if f"buffer/{f}" in arrays:
            src = arrays[f"buffer/{f}"]
            getattr(buf, f)[: len(src)] = src
    buf.pos, buf.full = int(state["buffer"]["pos"]), bool(state["buffer"]["full"])
    agent._last_obs = np.array(arrays["sb3/last_obs"])
    agent._last_episode_starts = np.array(arrays["sb3/last_episode_starts"])
    agent._episode_num = int(state["episode_num"])
    agent.action_space.np_random.bit_generator.state = state["action_space_rng"]
    venv = agent.env
    if arrays["sb3/buf_obs"].size and None in venv.buf_obs:
        venv.buf_obs[None][:] = arrays["sb3/buf_obs"]
    for i, (env, meta) in enumerate(zip(venv.envs, state["envs"])):
        _set_env_state(env, i, meta, arrays)


class OnlineCheckpoint(BaseCallback):
    """Writes ``step_<num_timesteps>.zip`` at the start of a rollout once ``every`` env steps have passed since
    the last one, keeping the ``keep`` newest."""

    def __init__(self, folder: Path, every: int, keep: int) -> None:
        super().__init__()
        self.folder, self.every, self.keep = folder, every, keep
        self.last = -1

    def _on_training_start(self) -> None:
        self.last = self.model.num_timesteps // self.every

    def _on_rollout_start(self) -> None:
        mark = self.model.num_timesteps // self.every
        if mark > self.last:
            self.last = mark
            write_online_checkpoint(self.model, self.folder, self.keep)

    def _on_step(self) -> bool:
        return True

    def _on_training_end(self) -> None:
        if self.model.num_timesteps // self.every > self.last or self.model.num_timesteps % self.every:
            write_online_checkpoint(self.model, self.folder, self.keep)


def write_online_checkpoint(agent: Any, folder: Path, keep: int) -> None:
    ckpt = agent_checkpoint(agent)
    extra, arrays = online_extra(agent)
    ckpt.meta["extra"] = {**ckpt.meta.get("extra", {}), **extra}
    ckpt.arrays.update({f"extra/{k}": v for k, v in arrays.items()})
    write_training_checkpoint(agent, folder, keep, ckpt)


def resume_online(agent: Any, folder: Path) -> bool:
    """Restore the newest checkpoint of ``folder`` (networks, optimizers, RNG, buffer, envs); False if none."""
    ckpt = resume_from(agent, folder)
    if ckpt is None:
        return False
    extra = ckpt.meta.get("extra") or {}
    if "online" not in extra:
        raise CheckpointError(f"checkpoint_dir {str(folder)!r}: its newest checkpoint holds no online state")
    restore_online(agent, extra, {k[len("extra/"):]: v for k, v in ckpt.arrays.items() if k.startswith("extra/")})
    return True
