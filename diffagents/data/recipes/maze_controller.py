"""D4RL maze2d-style waypoint controller for gymnasium-robotics PointMaze.

* A breadth-first search over ``maze.maze_map`` from the goal cell gives every free cell its distance to the
  goal; the waypoint of a cell is the centre of its free 4-neighbour with the smallest distance, or the goal
  itself inside the goal cell. (From anywhere in a cell, the segment to an adjacent free cell's centre stays
  inside the two cells, so it never cuts a wall corner.)
* PD law with D4RL's gains: ``a = clip(10 (waypoint - xy) - 1 * velocity, -1, 1)``; optional N(0, sigma)
  exploration noise, then clipping again (D4RL ``--noisy`` uses sigma = 0.5).

Tables are cached per goal cell, so a step costs two table look-ups.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

P_GAIN = 10.0
D_GAIN = -1.0


class WaypointController:
    """Noisy PD waypoint controller (see the module docstring).

    Args:
        maze: ``env.unwrapped.maze`` of a PointMaze env.
        noise: Std of the Gaussian action noise.
        rng: Noise generator.
    """

    def __init__(self, maze: Any, noise: float = 0.0, rng: np.random.Generator | None = None) -> None:
        self.maze = maze
        self.grid = np.array([[1 if c == 1 else 0 for c in row] for row in maze.maze_map], dtype=np.int8)
        self.noise = noise
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self._tables: dict[tuple[int, int], np.ndarray] = {}

    def _cell(self, xy: np.ndarray) -> tuple[int, int]:
        rc = self.maze.cell_xy_to_rowcol(np.asarray(xy, dtype=np.float64))
        rows, cols = self.grid.shape
        return int(np.clip(rc[0], 0, rows - 1)), int(np.clip(rc[1], 0, cols - 1))

    def _table(self, goal_cell: tuple[int, int]) -> np.ndarray:
        """``(rows, cols, 2)`` waypoint xy per cell for ``goal_cell`` (BFS, cached)."""
        if goal_cell in self._tables:
            return self._tables[goal_cell]
        rows, cols = self.grid.shape
        dist = np.full((rows, cols), np.iinfo(np.int32).max, dtype=np.int64)
        dist[goal_cell] = 0
        queue = deque([goal_cell])
        moves = ((1, 0), (-1, 0), (0, 1), (0, -1))
        while queue:
            r, c = queue.popleft()
            for dr, dc in moves:
                nr, nc = r + dr, c + dc
                if 0 <= nr < rows and 0 <= nc < cols and not self.grid[nr, nc] and dist[nr, nc] > dist[r, c] + 1:
                    dist[nr, nc] = dist[r, c] + 1
                    queue.append((nr, nc))
        table = np.zeros((rows, cols, 2))
        for r in range(rows):
            for c in range(cols):
                nbrs = [(r + dr, c + dc) for dr, dc in moves if 0 <= r + dr < rows and 0 <= c + dc < cols]
                best = min(nbrs + [(r, c)], key=lambda rc: dist[rc])
                table[r, c] = self.maze.cell_rowcol_to_xy(np.array(best))
        self._tables[goal_cell] = table
        return table

    def __call__(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """Action for a PointMaze Dict observation."""
        xy, vel, goal = obs["observation"][:2], obs["observation"][2:4], obs["desired_goal"]
        goal_cell = self._cell(goal)
        cell = self._cell(xy)
        waypoint = goal if cell == goal_cell else self._table(goal_cell)[cell]
        action = np.clip(P_GAIN * (waypoint - xy) + D_GAIN * vel, -1.0, 1.0)
        if self.noise > 0:
            action = np.clip(action + self.rng.normal(0.0, self.noise, size=2), -1.0, 1.0)
        return action.astype(np.float32)
