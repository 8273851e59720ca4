"""Dynamics fidelity of generated transitions: put the simulator in ``s``, apply ``a``, compare ``(r, s')``.

Lu et al. 2023 (SynthER, Sec. 4) judge generated data by how consistent its dynamics are with the true
environment. For MuJoCo locomotion (Hopper-v5 / HalfCheetah-v5 / Walker2d-v5) the observation is
``qpos[1:] ++ qvel`` (the root x position is excluded), so a state is rebuilt as ``qpos = [0, obs[:nq-1]]``,
``qvel = obs[nq-1:]``. Setting x = 0 is exact for these envs: rewards use x only through
``(x_after - x_before) / dt`` and the dynamics are invariant to translation along x. Hopper / Walker2d clip
velocities to [-10, 10] in the observation, so the rebuild is approximate where a velocity was clipped.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

MUJOCO_LOCOMOTION = ("Hopper", "HalfCheetah", "Walker2d")


def simulator_step(env: str | gym.Env[Any, Any], observations: np.ndarray, actions: np.ndarray
                   ) -> dict[str, np.ndarray]:
    """The simulator's ``(r*, s'*, terminal*)`` for flat observations (root x set to 0) and actions.

    Args:
        env: A MuJoCo locomotion env (or its id) whose observation is ``qpos[1:] ++ qvel``.
        observations: ``(n, obs_dim)`` states.
        actions: ``(n, act_dim)`` actions.

    Raises:
        ValueError: If the env is not a supported MuJoCo locomotion task or the shapes do not match it.
    """
    base: Any = (gym.make(env) if isinstance(env, str) else env).unwrapped
    name = type(base).__name__
    if not any(name.startswith(prefix) for prefix in MUJOCO_LOCOMOTION):
        raise ValueError(f"env: expected one of {MUJOCO_LOCOMOTION} (MuJoCo locomotion), got {name}")
    base.reset(seed=0)
    nq, nv = base.model.nq, base.model.nv
    obs = np.asarray(observations, np.float64)
    act = np.asarray(actions, np.float64)
    if obs.ndim != 2 or obs.shape[1] != nq - 1 + nv:
        raise ValueError(f"observations: expected shape (n, {nq - 1 + nv}) for {name}, got {obs.shape}")
    if act.shape != (len(obs), base.action_space.shape[0]):
        raise ValueError(f"actions: expected shape ({len(obs)}, {base.action_space.shape[0]}), got {act.shape}")
    rew, nxt, term = np.zeros(len(obs)), np.zeros_like(obs), np.zeros(len(obs), bool)
    for i, (o, a) in enumerate(zip(obs, act)):
        base.set_state(np.concatenate([[0.0], o[: nq - 1]]), o[nq - 1:])
        s2, r, te, _, _ = base.step(a)
        rew[i], nxt[i], term[i] = r, s2, te
    return {"rewards": rew, "next_observations": nxt, "terminations": term}


def fidelity_errors(batch: dict[str, np.ndarray], truth: dict[str, np.ndarray], next_var: np.ndarray
                    ) -> dict[str, float]:
    """Per-transition errors of ``batch`` against ``truth``, summarised (mean / median / std).

    ``reward_abs``: |r - r*|; ``next_mse``: mean over dimensions of (s' - s'*)^2; ``next_std_mse``: the same divided
    by the per-dimension data variance ``next_var``; ``terminal_agreement``: fraction of equal terminal flags.
    """
    r_err = np.abs(np.asarray(batch["rewards"], np.float64).reshape(-1) - truth["rewards"])
    sq = (np.asarray(batch["next_observations"], np.float64) - truth["next_observations"]) ** 2
    mse, smse = sq.mean(axis=1), (sq / np.maximum(next_var, 1e-12)).mean(axis=1)
    out = {"terminal_agreement": float(np.mean(np.asarray(batch["terminations"]).astype(bool).reshape(-1)
                                                == truth["terminations"]))}
    for name, err in (("reward_abs", r_err), ("next_mse", mse), ("next_std_mse", smse)):
        out |= {f"{name}_mean": float(err.mean()), f"{name}_median": float(np.median(err)),
                f"{name}_std": float(err.std())}
    return out


def generator_fidelity(gen: Any, env: str | gym.Env[Any, Any], n: int, seed: int) -> dict[str, float]:
    """Fidelity of ``n`` transitions sampled from a fitted :class:`~diffagents.SynthER` (seeded), standardised by
    the generator's own normaliser statistics of ``s'`` (the training data's std)."""
    if gen.normalizer is None:
        raise RuntimeError("SynthER.fit() has not been called: nothing to evaluate")
    batch = gen.sample(n, seed=seed)
    d = gen.obs_dim
    next_std = np.asarray(gen.normalizer.std, np.float64).reshape(-1)[d + gen.act_dim + 1: 2 * d + gen.act_dim + 1]
    truth = simulator_step(env, batch["observations"].reshape(n, -1), batch["actions"].reshape(n, -1))
    return fidelity_errors(batch, truth, next_std ** 2)
