"""``diffagents/toy/multimodal-v0``: bimodal 2-D navigation (:mod:`diffagents.data.envs.toy_multimodal`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

from diffagents.data.envs import TOY_MULTIMODAL_ID
from diffagents.data.envs.toy_multimodal import expert_action
from diffagents.data.recipes.base import (
    EpisodeRecorder,
    Recipe,
    RecipeOutput,
    evaluate_gym,
    register,
    rollout_gym,
)

ACTION_NOISE = 0.1
REF_EPISODES = 100
REF_SEED = 10_000  # reference scores do not depend on the dataset seed


def _two_route_policy(rng: np.random.Generator, noise: float) -> tuple[Callable[[Any], np.ndarray], Callable[[Any], None]]:
    """Policy that draws a route (left/right, p = 1/2) at each reset and follows it with Gaussian noise."""
    side = [1.0]

    def on_reset(_: Any) -> None:
        side[0] = float(rng.choice([-1.0, 1.0]))

    def policy(obs: Any) -> np.ndarray:
        a = expert_action(obs, side[0])
        if noise > 0:
            a = a + rng.normal(0.0, noise, size=2)
        return np.clip(a, -1.0, 1.0).astype(np.float32)

    return policy, on_reset


def reference_scores_toy(episodes: int = REF_EPISODES) -> tuple[float, float]:
    """(uniform random, noise-free two-route expert) mean returns on the eval env."""
    env = gym.make(TOY_MULTIMODAL_ID)
    rng = np.random.default_rng(REF_SEED)
    env.action_space.seed(REF_SEED)
    lo, _ = evaluate_gym(env, lambda _: env.action_space.sample(), episodes, REF_SEED)
    policy, on_reset = _two_route_policy(rng, 0.0)

    def expert(obs: Any) -> np.ndarray:
        if np.linalg.norm(np.asarray(obs) - np.array([0.0, -1.0])) < 0.08:
            on_reset(obs)  # new route at each episode start
        return policy(obs)

    hi, _ = evaluate_gym(env, expert, episodes, REF_SEED)
    return lo, hi


def build_toy(size: int, seed: int) -> RecipeOutput:
    env = gym.make(TOY_MULTIMODAL_ID)
    rng = np.random.default_rng(seed)
    policy, on_reset = _two_route_policy(rng, ACTION_NOISE)
    rec = EpisodeRecorder(size)
    rollout_gym(env, policy, rec, seed, on_reset=on_reset)
    lo, hi = reference_scores_toy()
    return RecipeOutput(
        buffers=rec.buffers, algorithm_name="scripted-two-route", env=TOY_MULTIMODAL_ID, eval_env=TOY_MULTIMODAL_ID,
        ref_min_score=lo, ref_max_score=hi, metadata=rec.stats(),
        description=(
            "Bimodal 2-D navigation around a disc obstacle. Behaviour: each episode picks the left or right "
            f"route with probability 1/2 and follows waypoints with N(0, {ACTION_NOISE}) action noise. "
            f"Behaviour return {rec.summary()}. Reference scores: uniform random (min) and the noise-free "
            f"two-route policy (max), {REF_EPISODES} episodes each. Mode metric: "
            "diffagents.data.envs.toy_multimodal.route_of / mode_of."
        ),
    )


register(Recipe("diffagents/toy/multimodal-v0", "bimodal 2-D navigation (two equally good routes)", 50_000, build_toy))
