"""``diffagents/pointmaze/{umaze,medium,large}-v0``: D4RL maze2d protocol on gymnasium-robotics PointMaze-v3.

Data: ``gym.make("PointMaze_<Maze>-v3", continuing_task=True, reset_target=True)`` so the env draws a new goal
each time the current one is reached (within 0.45); the :class:`WaypointController` acts with N(0, 0.5) noise.
Episodes are the env's default time limit (300 / 600 / 800 steps) and hold several goals each; the goal in
force is ``observations['desired_goal']`` (split on its changes for one-goal segments). Observations keep
Minari's Dict space; :class:`~diffagents.data.ObsFlattener` flattens them to ``observation + desired_goal``.

Rewards are the env's sparse reward: 1 on the step that reaches the goal in force (which then moves), so a
data episode's return is the number of goals it reached, not comparable with eval-env returns.

Evaluation env (``eval_env``): the default ``PointMaze_<Maze>-v3`` (sparse reward, continuing task, goal fixed
within an episode). Reference scores (100 episodes each, :func:`recompute_reference_scores`): max = the
noise-free controller, min = uniform random.
"""

from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym
import numpy as np

from diffagents.data.envs import ensure_registered
from diffagents.data.recipes.base import (
    EpisodeRecorder,
    Recipe,
    RecipeOutput,
    evaluate_gym,
    register,
    rollout_gym,
)
from diffagents.data.recipes.maze_controller import WaypointController

NOISE = 0.5
REF_EPISODES = 100
REF_SEED = 10_000
MAZES = {"umaze": "PointMaze_UMaze-v3", "medium": "PointMaze_Medium-v3", "large": "PointMaze_Large-v3"}
DEFAULT_SIZES = {"umaze": 1_000_000, "medium": 2_000_000, "large": 2_000_000}
# (uniform random, noise-free controller) mean returns over 100 eval episodes (seeds 10000-10099), measured
# with recompute_reference_scores(); docs/compute-budget.md section 3 found (9.6, 245.0), (9.3, 498.9) and
# (6.3, 637.7) with other seeds.
REF_SCORES = {"umaze": (12.24, 245.29), "medium": (13.92, 498.40), "large": (8.79, 652.80)}


def recompute_reference_scores(maze: str, episodes: int = REF_EPISODES) -> tuple[float, float]:
    """(uniform random, noise-free controller) mean returns on the eval env of ``maze``."""
    ensure_registered(MAZES[maze])
    env = gym.make(MAZES[maze])
    rng = np.random.default_rng(REF_SEED)
    lo, _ = evaluate_gym(env, lambda _: rng.uniform(-1.0, 1.0, size=2).astype(np.float32), episodes, REF_SEED)
    hi, _ = evaluate_gym(env, WaypointController(env.unwrapped.maze), episodes, REF_SEED)  # type: ignore[attr-defined]
    return lo, hi


def _builder(maze: str) -> Callable[[int, int], RecipeOutput]:
    def build(size: int, seed: int) -> RecipeOutput:
        ensure_registered(MAZES[maze])
        env = gym.make(MAZES[maze], continuing_task=True, reset_target=True)
        controller = WaypointController(env.unwrapped.maze, NOISE, np.random.default_rng(seed))  # type: ignore[attr-defined]
        rec = EpisodeRecorder(size)
        rollout_gym(env, controller, rec, seed)
        lo, hi = REF_SCORES[maze]
        return RecipeOutput(
            buffers=rec.buffers, algorithm_name="bfs-waypoint-pd-noisy", env=env.spec, eval_env=MAZES[maze],
            ref_min_score=lo, ref_max_score=hi, metadata=rec.stats(),
            description=(
                f"D4RL maze2d protocol on {MAZES[maze]} (continuing_task=True, reset_target=True, episodes of "
                f"{env.spec.max_episode_steps} steps with the goal resampled on success): BFS waypoint "  # type: ignore[union-attr]
                f"controller, PD gains (10, -1), N(0, {NOISE}) action noise. Behaviour return (= goals reached per "
                f"episode; the goal moves on success) {rec.summary()}. "
                f"Reference scores on the default {MAZES[maze]} (fixed goal per episode): uniform random (min) "
                f"and the noise-free controller (max), {REF_EPISODES} episodes each."
            ),
        )

    return build


for _maze in MAZES:
    register(Recipe(f"diffagents/pointmaze/{_maze}-v0", f"{MAZES[_maze]}, noisy waypoint controller (maze2d)",
                    DEFAULT_SIZES[_maze], _builder(_maze)))
