"""Data support of planned paths: the positions a dataset visits, for choosing among candidate maze plans.

A Maze2D Diffuser plan is sampled without any map of the maze; a sample can cut through a wall, and a plan
followed into a wall stalls the agent (``benchmarks/RESULTS.md``, "Planners on PointMaze"). The dataset's
trajectories never enter a wall, so the set of positions it visits is a map of where a path can go that the
agent already has. :class:`VisitedPositions` stores that set as an occupancy grid over the position dims
(``track_pos_dims``) of the observation and scores a planned path by the fraction of it that lies in cells the
data never visited; Diffuser's ``plan_selection="support"`` keeps the candidate plan with the smallest fraction
(ours, not in the paper, which samples one plan per episode in Maze2D; related to the infeasible-plan detection
of Lee et al., NeurIPS 2023, "Refining Diffusion Planner for Reliable Behavior Synthesis by Automatic Detection
of Infeasible Plans", which scores plans by a learned restoration gap instead).
"""

from __future__ import annotations

import numpy as np
import torch

MAX_CELLS = 1 << 26  # 64 Mi cells (64 MiB as bytes): beyond that the resolution is too fine for the extent


class VisitedPositions:
    """Occupancy grid of visited positions.

    Args:
        occupied: ``(n_1, ..., n_P)`` bool grid, True where the data visits.
        origin: ``(P,)`` position of the grid's corner cell's lower edge.
        resolution: Cell size in position units (the same along every axis).
    """

    def __init__(self, occupied: torch.Tensor, origin: torch.Tensor, resolution: float) -> None:
        if occupied.dim() != origin.numel():
            raise ValueError(f"occupied: expected a grid with one axis per position dim ({origin.numel()}), "
                             f"got shape {tuple(occupied.shape)}")
        self.occupied = occupied.bool()
        self.origin = origin.float()
        self.resolution = float(resolution)
        shape = torch.tensor(occupied.shape, dtype=torch.long)
        self._shape = shape.to(occupied.device)
        strides = torch.ones_like(shape)
        for i in range(len(shape) - 2, -1, -1):
            strides[i] = strides[i + 1] * shape[i + 1]
        self._strides = strides.to(occupied.device)

    @classmethod
    def fit(cls, positions: np.ndarray, resolution: float, device: torch.device | str = "cpu") -> VisitedPositions:
        """The grid of the cells that ``positions`` (``(N, P)``, env units) fall in.

        Raises:
            ValueError: no finite position, a resolution <= 0, or a grid of more than :data:`MAX_CELLS` cells.
        """
        pos = np.asarray(positions, dtype=np.float64)
        if pos.ndim != 2 or pos.shape[1] < 1:
            raise ValueError(f"positions: expected an (N, P) array, got shape {pos.shape}")
        pos = pos[np.isfinite(pos).all(axis=1)]
        if len(pos) == 0:
            raise ValueError("positions: expected at least one finite position, got none")
        if not resolution > 0:
            raise ValueError(f"support_resolution: expected > 0, got {resolution!r}")
        points = torch.as_tensor(pos, dtype=torch.float32)
        origin = points.min(dim=0).values - resolution  # one empty cell of margin on each side
        idx = torch.floor((points - origin) / resolution).long().numpy()  # the arithmetic of visited()
        shape = idx.max(axis=0) + 2
        if int(np.prod(shape)) > MAX_CELLS:
            raise ValueError(f"support_resolution: {resolution} gives a grid of {tuple(int(s) for s in shape)} cells "
                             f"over the data's position extent, more than {MAX_CELLS}; expected a coarser resolution")
        occupied = np.zeros(tuple(int(s) for s in shape), dtype=bool)
        occupied[tuple(idx.T)] = True
        return cls(torch.as_tensor(occupied, device=device), origin.to(device), resolution)

    def visited(self, points: torch.Tensor) -> torch.Tensor:
        """``points`` (``(..., P)``) -> bool ``(...)``: inside the grid and in a visited cell."""
        idx = torch.floor((points - self.origin.to(points.dtype)) / self.resolution).long()
        inside = ((idx >= 0) & (idx < self._shape)).all(dim=-1)
        flat = (idx.clamp(min=0) * self._strides).sum(dim=-1).clamp(max=self.occupied.numel() - 1)
        return inside & self.occupied.reshape(-1)[flat]

    def unvisited_fraction(self, paths: torch.Tensor, substeps: int = 4) -> torch.Tensor:
        """Fraction of each path (``(B, H, P)``, env units) in unvisited cells: ``(B,)``.

        Each segment between consecutive points is checked at ``substeps`` evenly spaced points (its start
        included), plus the path's last point, so a segment that jumps across a wall is seen.
        """
        frac = torch.arange(substeps, device=paths.device, dtype=paths.dtype) / substeps  # (S,)
        start, step = paths[:, :-1, None], (paths[:, 1:] - paths[:, :-1])[:, :, None]
        points = (start + step * frac[None, None, :, None]).flatten(1, 2)  # (B, (H-1) S, P)
        points = torch.cat([points, paths[:, -1:]], dim=1)
        return (~self.visited(points)).float().mean(dim=1)

    def arrays(self) -> dict[str, np.ndarray]:
        """The grid as arrays for a checkpoint (see :meth:`from_arrays`)."""
        return {"occupied": self.occupied.cpu().numpy().astype(np.uint8), "origin": self.origin.cpu().numpy(),
                "resolution": np.array([self.resolution], dtype=np.float64)}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], device: torch.device | str = "cpu") -> VisitedPositions:
        """Rebuild a grid saved by :meth:`arrays`.

        Raises:
            ValueError: a missing or malformed array (names the key).
        """
        for key in ("occupied", "origin", "resolution"):
            if key not in arrays:
                raise ValueError(f"plan support: missing array {key!r} (have {sorted(arrays)})")
        resolution = np.asarray(arrays["resolution"]).reshape(-1)
        if resolution.size != 1 or not resolution[0] > 0:
            raise ValueError(f"plan support: resolution: expected one value > 0, got {resolution.tolist()}")
        return cls(torch.as_tensor(np.asarray(arrays["occupied"]) > 0, device=device),
                   torch.as_tensor(np.asarray(arrays["origin"], dtype=np.float32), device=device),
                   float(resolution[0]))
