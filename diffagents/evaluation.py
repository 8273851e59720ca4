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
                   ref_scores: tuple[float, float] | None = None) -> EvalResult:
    """Evaluate with SB3's ``evaluate_policy`` on ``env`` (an env id, env or VecEnv), seeded.

    Observations are passed to ``agent.predict`` unchanged (Dict observations are flattened by the agent).
    """
    import gymnasium as gym
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.vec_env import VecEnv

    if isinstance(env, str):
        venv = make_vec_env(env, n_envs=1, seed=seed)
    elif isinstance(env, gym.Env):
        from stable_baselines3.common.monitor import Monitor
        from stable_baselines3.common.vec_env import DummyVecEnv

        venv = DummyVecEnv([lambda: Monitor(env)])
        venv.seed(seed)
    elif isinstance(env, VecEnv):
        venv = env
        venv.seed(seed)
    else:
        raise TypeError(f"env: expected an env id, gymnasium.Env or VecEnv, got {type(env).__name__}")
    rets, lens = evaluate_policy(agent, venv, n_eval_episodes=n_episodes, deterministic=deterministic,
                                 return_episode_rewards=True, warn=False)
    returns = np.asarray(rets, dtype=np.float64)
    return EvalResult(returns=returns, lengths=np.asarray(lens), normalized=normalized_scores(returns, ref_scores))
