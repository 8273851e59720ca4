"""Evaluation helpers: run an agent on its env and report returns and normalised scores."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class EvalResult:
    """Episode returns of an evaluation run and their normalised scores (0 = random, 100 = expert)."""

    returns: np.ndarray
    lengths: np.ndarray
    normalized: np.ndarray | None

    @property
    def mean(self) -> float:
        return float(np.mean(self.returns))

    @property
    def std(self) -> float:
        return float(np.std(self.returns))

    def summary(self) -> str:
        s = f"return {self.mean:.1f} +- {self.std:.1f} over {len(self.returns)} episodes"
        if self.normalized is not None:
            s += f", normalized score {np.mean(self.normalized):.1f} +- {np.std(self.normalized):.1f}"
        return s


def normalized_scores(returns: np.ndarray, ref: tuple[float, float] | None) -> np.ndarray | None:
    """``100 * (R - ref_min) / (ref_max - ref_min)`` (D4RL / ``minari.get_normalized_score`` x 100)."""
    if ref is None:
        return None
    lo, hi = ref
    return 100.0 * (np.asarray(returns, dtype=np.float64) - lo) / (hi - lo)


def evaluate_agent(agent: Any, env: Any, n_episodes: int = 10, *, seed: int = 0, deterministic: bool = True,
                   ref_scores: tuple[float, float] | None = None, n_envs: int = 1) -> EvalResult:
    """Evaluate with SB3's ``evaluate_policy`` on ``env``, seeded.

    Observations are passed to ``agent.predict`` unchanged (Dict observations are flattened by the agent).

    Args:
        agent: anything with SB3's ``predict(obs, state, episode_start, deterministic)``.
        env: an env id, a zero-argument env factory, a ``gymnasium.Env`` (then ``n_envs`` must be 1) or a VecEnv.
        n_episodes: episodes in total; with ``n_envs > 1`` SB3 splits them evenly over the envs.
        seed: seed of the first env; env ``i`` of a vectorised evaluation gets ``seed + i``.
        deterministic: passed to ``predict``.
        ref_scores: (random, expert) returns for normalized scores, or None.
        n_envs: environments stepped together, so that ``predict`` is called on a batch of observations (the
            planners then sample the plans of all envs in one call). Used for an env id or factory.
    """
    import gymnasium as gym
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.vec_env import VecEnv

    venv: VecEnv
    if n_envs < 1:
        raise ValueError(f"n_envs: expected an int >= 1, got {n_envs!r}")
    if isinstance(env, gym.Env):
        if n_envs != 1:
            raise ValueError(f"n_envs: an env instance can only be evaluated alone (n_envs=1), got n_envs={n_envs}; "
                             "pass an env id or a zero-argument factory to evaluate several copies")
        from stable_baselines3.common.monitor import Monitor
        from stable_baselines3.common.vec_env import DummyVecEnv

        venv = DummyVecEnv([lambda: Monitor(env)])
        venv.seed(seed)
    elif isinstance(env, VecEnv):
        venv = env
        venv.seed(seed)
    elif isinstance(env, str) or callable(env):
        venv = make_vec_env(env, n_envs=n_envs, seed=seed)
    else:
        raise TypeError(f"env: expected an env id, env factory, gymnasium.Env or VecEnv, got {type(env).__name__}")
    rets, lens = evaluate_policy(agent, venv, n_eval_episodes=n_episodes, deterministic=deterministic,
                                 return_episode_rewards=True, warn=False)
    returns = np.asarray(rets, dtype=np.float64)
    return EvalResult(returns=returns, lengths=np.asarray(lens), normalized=normalized_scores(returns, ref_scores))
