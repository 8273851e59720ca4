"""diffagents.plots: recorded plans are in env units and start at the executed state; figures are written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from agent_fixtures import make_pendulum_dataset

from diffagents import DecisionDiffuser, Diffuser, DiffusionQL
from diffagents.plots import plot_learning_curves, plot_plan, plot_rollout

SMALL = dict(horizon=8, dim=32, dim_mults=(1, 2), n_diffusion_steps=5, batch_size=16, ema_start=1)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return make_pendulum_dataset(tmp_path_factory.mktemp("minari"), dataset_id="test/pendulum/plots-v0", episodes=2)


@pytest.mark.parametrize("cls, kw", [(Diffuser, dict(n_samples=2, replan_every=4)), (DecisionDiffuser, dict(history=1))])
def test_plot_plan_records_plans_in_env_units(dataset: Any, tmp_path: Path, cls: Any, kw: dict[str, Any]) -> None:
    env = gym.make("Pendulum-v1")
    agent = cls(env=env, dataset=dataset, seed=0, **SMALL, **kw).learn(2)
    ro = plot_plan(agent, env, 3, tmp_path / "plan.png", max_steps=9)
    assert (tmp_path / "plan.png").stat().st_size > 1000
    assert ro.states.shape == (10, 3) and ro.actions.shape == (9, 1)
    steps = [t for t, _ in ro.plans]
    assert steps == ([0, 4, 8] if cls is Diffuser else list(range(9)))
    norm = agent.normalizers["obs"]
    for t, plan in ro.plans:
        assert plan.shape == (8, 3)
        k = kw.get("history", 0)  # Decision Diffuser's window starts with its K past states, the current one next
        # the inpainted current state, unnormalised (Decision Diffuser's CDF normaliser clips states outside the
        # data's range, so compare with the state's round trip through the agent's normaliser)
        expected = norm.unnormalize(norm.normalize(ro.states[t][None]))[0]
        np.testing.assert_allclose(plan[k], expected, atol=1e-4)


def test_plot_rollout_and_learning_curves(dataset: Any, tmp_path: Path) -> None:
    env = gym.make("Pendulum-v1")
    agent = DiffusionQL(env=env, dataset=dataset, seed=0, hidden=(16,), critic_hidden=(16,), batch_size=8,
                        n_candidates=2)
    with pytest.raises(ValueError, match="not a planner"):
        plot_plan(agent, env, 0, tmp_path / "no.png", max_steps=3)
    ro = plot_rollout(agent, env, 0, tmp_path / "rollout.png", max_steps=5)
    assert ro.plans == [] and ro.actions.shape == (5, 1) and (tmp_path / "rollout.png").is_file()
    plot_learning_curves({"a": ([1, 2, 3], [[0.0, 1.0, 2.0], [1.0, 2.0, 3.0]]), "b": ([1, 2], [3.0, 1.0])},
                         tmp_path / "curves.png", title="t")
    assert (tmp_path / "curves.png").stat().st_size > 1000
