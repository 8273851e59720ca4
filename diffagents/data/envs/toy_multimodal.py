"""A 2-D navigation task whose optimal behaviour is bimodal: go around a disc obstacle on the left or right.

The agent starts near ``(0, -1)`` and must reach the goal disc around ``(0, 1)`` (radius 0.15); a disc
obstacle of radius :data:`OBSTACLE_RADIUS` sits at the origin, exactly between them. By symmetry the left and
right routes are equally good, so a policy that averages them (a unimodal Gaussian fitted to both) drives
straight into the obstacle. Used to show that diffusion policies keep modes (Wang et al. 2023, Diffusion-QL,
Sec. 4 / Fig. 1 make the same point on a 2-D bandit).

Dynamics: ``pos <- clip(pos + STEP * clip(a, -1, 1), -1.5, 1.5)``; a move whose end point falls inside the
obstacle is blocked (the agent stays). Reward: -0.05 per step, +1 on reaching the goal (``terminated``).
Episodes are limited to 50 steps by the registered ``TimeLimit``.

Mode-coverage metric: :func:`route_of` labels an episode's ``(T, 2)`` positions -1 (left), +1 (right) or 0
(neither); :func:`mode_of` labels single actions at the start state by the sign of their x component.
A policy covers both modes when, over e.g. 100 evaluation episodes, each route gets at least 20% of the
successful episodes (the behaviour data has about 50/50).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

START = np.array([0.0, -1.0])
GOAL = np.array([0.0, 1.0])
GOAL_RADIUS = 0.15
OBSTACLE_RADIUS = 0.4
STEP = 0.15
BOUND = 1.5


class ToyMultimodalEnv(gym.Env[np.ndarray, np.ndarray]):
    """Bimodal 2-D navigation (see the module docstring). Observation: ``(x, y)``; action: ``(dx, dy)``."""

    metadata = {"render_modes": []}

    def __init__(self, start_noise: float = 0.05) -> None:
        self.observation_space = spaces.Box(-BOUND, BOUND, (2,), np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.start_noise = start_noise
        self.pos = START.copy()

    def _obs(self) -> np.ndarray:
        return self.pos.astype(np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.pos = START + self.np_random.uniform(-self.start_noise, self.start_noise, size=2)
        return self._obs(), {"success": False}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        a = np.clip(np.asarray(action, dtype=np.float64).reshape(2), -1.0, 1.0)
        new = np.clip(self.pos + STEP * a, -BOUND, BOUND)
        blocked = bool(np.linalg.norm(new) < OBSTACLE_RADIUS)
        if not blocked:
            self.pos = new
        success = bool(np.linalg.norm(self.pos - GOAL) <= GOAL_RADIUS)
        reward = -0.05 + (1.0 if success else 0.0)
        return self._obs(), reward, success, False, {"success": success, "blocked": blocked}


def expert_action(obs: np.ndarray, side: float) -> np.ndarray:
    """Noise-free (Markov) behaviour policy taking the ``side`` route (-1 left, +1 right).

    Below ``y = 0.2`` it steers towards the line ``x = 0.6 * side`` while moving up; above, it heads for the
    goal. The straight goal segment from ``(0.6 * side, 0.2)`` passes 0.6 from the obstacle's centre.
    """
    pos = np.asarray(obs, dtype=np.float64)
    if pos[1] < 0.2:
        delta = np.array([0.6 * side - pos[0], STEP])
    else:
        delta = GOAL - pos
    return np.clip(delta / STEP, -1.0, 1.0).astype(np.float32)


def mode_of(action: np.ndarray, threshold: float = 0.2) -> np.ndarray:
    """Mode of actions taken near the start state: -1 (left), +1 (right), 0 (no clear mode).

    Args:
        action: ``(..., 2)`` actions.
        threshold: Minimum ``|a_x|`` for a clear mode.
    """
    ax = np.asarray(action)[..., 0]
    return np.where(ax > threshold, 1, np.where(ax < -threshold, -1, 0))


def route_of(positions: np.ndarray) -> int:
    """Route of an episode from its ``(T, 2)`` positions: sign of x where it passes y = 0 (0 if never)."""
    pos = np.asarray(positions)
    crossing = np.flatnonzero((pos[:-1, 1] < 0.0) & (pos[1:, 1] >= 0.0))
    if len(crossing) == 0:
        return 0
    x = pos[crossing[0] + 1, 0]
    return int(np.sign(x))
