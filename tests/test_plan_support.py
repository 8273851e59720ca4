"""Diffuser's ``plan_selection="support"``: the visited-position grid and the candidate it picks."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from diffagents import Diffuser
from diffagents.data.safe_env import make_env_from_dataset
from diffagents.execution.plan_support import VisitedPositions
from diffagents.persistence import CheckpointError


def _ring() -> np.ndarray:
    """Positions on the border of the square [0, 2]^2 (a corridor round a wall block in the middle)."""
    t = np.linspace(0.0, 2.0, 401)
    zeros, twos = np.zeros_like(t), np.full_like(t, 2.0)
    return np.concatenate([np.stack(p, axis=1) for p in ((t, zeros), (t, twos), (zeros, t), (twos, t))])


def test_grid_marks_the_cells_the_data_visits() -> None:
    grid = VisitedPositions.fit(_ring(), resolution=0.1)
    pts = torch.tensor([[0.0, 1.0], [1.0, 2.0], [1.0, 1.0], [5.0, 5.0], [-3.0, 0.0]])
    assert grid.visited(pts).tolist() == [True, True, False, False, False]  # centre block, far, outside the grid


def test_unvisited_fraction_sees_a_segment_that_jumps_across_unvisited_space() -> None:
    grid = VisitedPositions.fit(_ring(), resolution=0.1)
    along = torch.tensor([[[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [2.0, 1.0], [2.0, 2.0]]])  # round the corridor
    across = torch.tensor([[[0.0, 0.0], [0.0, 1.0], [2.0, 1.0], [2.0, 2.0]]])  # endpoints visited, middle not
    frac = grid.unvisited_fraction(torch.cat([along, across[:, [0, 1, 2, 3, 3]]]), substeps=8)
    assert frac[0].item() == 0.0
    assert frac[1].item() > 0.2


@pytest.mark.parametrize("positions, resolution, match", [
    (np.zeros((0, 2)), 0.1, "at least one finite"),
    (np.full((3, 2), np.nan), 0.1, "at least one finite"),
    (np.zeros(5), 0.1, r"\(N, P\)"),
    (np.zeros((3, 2)), 0.0, "support_resolution: expected > 0"),
    (np.array([[0.0, 0.0], [1e4, 1e4]]), 1e-2, "support_resolution: .* more than"),
])
def test_fit_rejects_bad_input_naming_the_field(positions: np.ndarray, resolution: float, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        VisitedPositions.fit(positions, resolution)


def test_grid_round_trips_through_its_arrays_and_rejects_malformed_ones() -> None:
    grid = VisitedPositions.fit(_ring(), resolution=0.1)
    back = VisitedPositions.from_arrays(grid.arrays())
    assert torch.equal(back.occupied, grid.occupied) and torch.equal(back.origin, grid.origin)
    assert back.resolution == grid.resolution
    with pytest.raises(ValueError, match="missing array 'origin'"):
        VisitedPositions.from_arrays({k: v for k, v in grid.arrays().items() if k != "origin"})
    with pytest.raises(ValueError, match="resolution: expected one value > 0"):
        VisitedPositions.from_arrays({**grid.arrays(), "resolution": np.array([0.0])})


@pytest.fixture(scope="module")
def maze() -> Any:
    from diffagents.data import make_dataset

    ds = make_dataset("diffagents/pointmaze/umaze-v0", size=1200)
    agent = Diffuser(env=make_env_from_dataset(ds), dataset=ds, seed=0, horizon=8, dim=16,
                     dim_mults=(1, 2), n_diffusion_steps=4, batch_size=8, state_dims=4, goal_obs_dims=(4, 6),
                     execution="follow", replan_every=None, value_guidance=False, n_samples=6, clip_denoised=True,
                     obs_normalization="minmax", termination_penalty=None, plan_selection="support",
                     support_resolution=0.1).learn(2)
    return agent, ds


def _obs() -> dict[str, np.ndarray]:
    return {"observation": np.array([0.5, 0.2, 0.0, 0.0]), "achieved_goal": np.array([0.5, 0.2]),
            "desired_goal": np.array([0.0, 1.0])}


def test_support_selection_keeps_the_candidate_with_the_least_unvisited_path(maze: Any) -> None:
    agent, _ = maze
    obs_t = agent.prepare_obs(_obs())[0]
    best = agent._plan(obs_t, deterministic=True)
    agent.config.n_samples = 1  # the same candidates, unranked (same generator, same draws)
    try:
        cands = agent._plan(obs_t.repeat(6, 1), deterministic=True)
    finally:
        agent.config.n_samples = 6
    pos = slice(*agent.config.track_pos_dims)
    frac = agent.plan_support.unvisited_fraction(agent._raw(obs_t.repeat(6, 1), cands[..., agent.act_dim:])[..., pos])
    chosen = int(frac.argmin())
    assert torch.equal(best[0], cands[chosen])
    assert frac.max() > frac.min() or chosen == 0  # ties go to the first candidate


def test_grid_is_saved_with_the_agent_and_acting_without_it_is_a_clear_error(maze: Any, tmp_path: Path) -> None:
    agent, ds = maze
    agent.save(tmp_path / "a.zip")
    loaded = Diffuser.load(tmp_path / "a.zip", env=make_env_from_dataset(ds))
    assert torch.equal(loaded.plan_support.occupied, agent.plan_support.occupied)
    a1, _ = agent.predict(_obs(), deterministic=True)
    a2, _ = loaded.predict(_obs(), deterministic=True)
    np.testing.assert_array_equal(a1, a2)
    loaded.config = dataclasses.replace(loaded.config, support_resolution=0.2)  # the grid is at 0.1
    assert loaded.acting_needs_data
    with pytest.raises(ValueError, match="plan_selection: 'support' needs .* support_resolution 0.2.* set_dataset"):
        loaded.predict(_obs(), deterministic=True)
    loaded.set_dataset(ds)
    assert not loaded.acting_needs_data and loaded.plan_support.resolution == 0.2
    loaded.predict(_obs(), deterministic=True)


def test_a_checkpoint_with_a_malformed_grid_is_refused(maze: Any, tmp_path: Path) -> None:
    from diffagents.core.checkpoint import agent_checkpoint
    from diffagents.persistence import save_checkpoint

    agent, ds = maze
    ckpt = agent_checkpoint(agent)
    ckpt.arrays["extra/plan_support/resolution"] = np.array([-1.0])
    save_checkpoint(tmp_path / "bad.zip", ckpt)
    with pytest.raises(CheckpointError, match="resolution: expected one value > 0"):
        Diffuser.load(tmp_path / "bad.zip", env=make_env_from_dataset(ds))


def test_plan_selection_is_validated() -> None:
    from diffagents.agents.planners.diffuser import DiffuserConfig

    with pytest.raises(ValueError, match="plan_selection"):
        DiffuserConfig(plan_selection="shortest")
    with pytest.raises(ValueError, match="support_resolution"):
        DiffuserConfig(support_resolution=0.0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_support_selection_runs_on_cuda_eager_and_graphed(maze: Any, tmp_path: Path) -> None:
    agent, ds = maze
    agent.save(tmp_path / "a.zip")
    actions = []
    for graphed in (False, True):
        loaded = Diffuser.load(tmp_path / "a.zip", env=make_env_from_dataset(ds), device="cuda")
        loaded.config = dataclasses.replace(loaded.config, cuda_graph=graphed)
        assert loaded.plan_support is not None and loaded.plan_support.occupied.is_cuda
        for _ in range(2):
            act, _ = loaded.predict(_obs(), deterministic=True)
        actions.append(act)
    np.testing.assert_allclose(actions[1], actions[0], rtol=1e-4, atol=1e-4)
