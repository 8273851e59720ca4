"""Planner-specific behaviour: inpainting exactness, value guidance, receding-horizon caches."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from agent_fixtures import make_pendulum_dataset

from diffagents import DecisionDiffuser, Diffuser
from diffagents.data.safe_env import make_env_from_dataset

SMALL = dict(horizon=8, dim=32, dim_mults=(1, 2), n_diffusion_steps=10, batch_size=16, ema_start=1)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return make_pendulum_dataset(tmp_path_factory.mktemp("minari"))


def test_diffuser_plan_starts_exactly_at_the_current_state(dataset: Any) -> None:
    agent = Diffuser(env=gym.make("Pendulum-v1"), dataset=dataset, seed=0, n_samples=3, **SMALL).learn(5)
    obs = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    _, cache = agent.predict(obs, deterministic=True)
    norm_obs = agent.prepare_obs(obs)[0]
    assert torch.equal(cache.plans[:, 0, agent.act_dim:], norm_obs)


def test_decision_diffuser_inpaints_history_exactly(dataset: Any) -> None:
    agent = DecisionDiffuser(env=gym.make("Pendulum-v1"), dataset=dataset, seed=0, history=2, returns_scale=100.0,
                             **SMALL).learn(5)
    obs = np.random.default_rng(1).normal(size=(2, 3)).astype(np.float32)
    _, state = agent.predict(obs, episode_start=np.array([True, True]))
    obs2 = obs + 0.5
    _, state = agent.predict(obs2, state=state, episode_start=np.array([False, False]))
    hist = torch.stack([agent.prepare_obs(o)[0] for o in (obs, obs, obs2)], dim=1)  # (B, K+1, O)
    torch.testing.assert_close(state.plans[:, :3], hist, rtol=0, atol=0)


def test_decision_diffuser_plans_stay_in_the_normalized_range(dataset: Any) -> None:
    # official config: CDF-normalised states in [-1, 1] and a clipped x0 estimate at every reverse step, so an
    # untrained eps-model cannot plan states outside the data range (unclipped plans reached |s| = 645 on Hopper)
    agent = DecisionDiffuser(env=gym.make("Pendulum-v1"), dataset=dataset, seed=0, **SMALL).learn(2)
    obs = np.random.default_rng(2).normal(size=(4, 3)).astype(np.float32)
    _, state = agent.predict(obs, deterministic=True)
    assert state.plans.abs().max() <= 1.0
    loose = DecisionDiffuser(env=gym.make("Pendulum-v1"), dataset=dataset, seed=0, clip_denoised=False,
                             obs_normalization="gaussian", **SMALL).learn(2)
    _, state = loose.predict(obs, deterministic=True)
    assert state.plans.abs().max() > 1.0  # the clip is what bounds them
    with pytest.raises(ValueError, match="obs_normalization"):
        DecisionDiffuser(env=gym.make("Pendulum-v1"), dataset=dataset, obs_normalization="gaussian")


def test_value_guidance_raises_the_value_of_the_chosen_plan(dataset: Any) -> None:
    # the value function must be trained enough to carry signal (300 steps: values ~ -180 with gradient norm ~ 30)
    kw = dict(n_samples=1, n_guide_steps=2, t_stopgrad=0, scale_grad_by_std=False, **SMALL)
    guided = Diffuser(env=gym.make("Pendulum-v1"), dataset=dataset, seed=0, guide_scale=1.0, **kw).learn(300)
    plain = Diffuser(env=gym.make("Pendulum-v1"), dataset=dataset, seed=0, guide_scale=0.0, **kw)
    plain.policy.load_state_dict(guided.policy.state_dict())
    plain.ema.model.load_state_dict(guided.ema.model.state_dict())
    obs = np.random.default_rng(2).normal(size=(32, 3)).astype(np.float32)
    value = guided.nets["value"]
    scores = {}
    for name, agent in (("guided", guided), ("plain", plain)):
        _, cache = agent.predict(obs, deterministic=True)
        with torch.no_grad():
            scores[name] = value(cache.plans, torch.zeros(len(obs))).mean().item()
    assert scores["guided"] > scores["plain"], scores


def test_ranking_picks_the_highest_value_candidate(dataset: Any) -> None:
    agent = Diffuser(env=gym.make("Pendulum-v1"), dataset=dataset, seed=0, n_samples=6, guide_scale=0.0,
                     **SMALL).learn(10)
    obs_t = agent.prepare_obs(np.zeros(3, dtype=np.float32))[0]
    torch.manual_seed(0)
    best = agent._plan(obs_t, deterministic=True)
    # the same candidates, unranked
    agent.config.n_samples = 1
    cands = agent._plan(obs_t.repeat(6, 1), deterministic=True)
    value = agent.nets["value"]
    with torch.no_grad():
        v_best = value(best, torch.zeros(1))
        v_all = value(cands, torch.zeros(6))
    assert v_best.item() >= v_all.max().item() - 1e-5


def test_receding_horizon_replans_every_k_steps(dataset: Any) -> None:
    agent = Diffuser(env=gym.make("Pendulum-v1"), dataset=dataset, seed=0, n_samples=1, replan_every=3, **SMALL)
    state, start = None, np.array([True])
    for _ in range(7):
        _, state = agent.predict(np.zeros(3, dtype=np.float32), state=state, episode_start=start)
        start = np.array([False])
    assert agent.plans_made == 3 and agent.decisions == 7  # steps 0, 3, 6
    _, state = agent.predict(np.zeros(3, dtype=np.float32), state=state, episode_start=np.array([True]))
    assert agent.plans_made == 4


@pytest.mark.parametrize("cls", [Diffuser, DecisionDiffuser])
def test_set_sampler_swaps_the_act_time_sampler(cls: type, dataset: Any) -> None:
    agent = cls(env=gym.make("Pendulum-v1"), dataset=dataset, seed=0, **SMALL).learn(2)
    obs = np.random.default_rng(3).normal(size=(2, 3)).astype(np.float32)
    before, _ = agent.predict(obs, deterministic=True)
    agent.set_sampler("dpm", 3)
    assert len(agent.ema.model.sampler.timesteps) == 3
    after, _ = agent.predict(obs, deterministic=True)
    assert after.shape == before.shape and not np.allclose(after, before)


def test_every_planner_refuses_a_clip_without_a_bounded_normalizer() -> None:
    from diffagents.agents.multiagent.madiff_config import MADiffConfig
    from diffagents.agents.planners.diffuser import DiffuserConfig

    for cfg in (DiffuserConfig, MADiffConfig):
        cfg(clip_denoised=True, obs_normalization="minmax")
        cfg(clip_denoised=False, obs_normalization="gaussian")
        with pytest.raises(ValueError, match="obs_normalization"):
            cfg(clip_denoised=True, obs_normalization="gaussian")


@pytest.fixture(scope="module")
def maze_agent() -> Any:
    from diffagents.data import make_dataset

    ds = make_dataset("diffagents/pointmaze/umaze-v0", size=1200)
    return Diffuser(env=make_env_from_dataset(ds), dataset=ds, seed=0, horizon=8, dim=16,
                    dim_mults=(1, 2), n_diffusion_steps=4, batch_size=8, state_dims=4, goal_obs_dims=(4, 6),
                    execution="track", replan_every=None, value_guidance=False, n_samples=1, clip_denoised=True,
                    obs_normalization="minmax", termination_penalty=None).learn(2)


def _maze_obs(xy: tuple[float, float], vel: tuple[float, float], goal: tuple[float, float] = (0.0, 1.0)
              ) -> dict[str, np.ndarray]:
    return {"observation": np.array([*xy, *vel]), "achieved_goal": np.array(xy), "desired_goal": np.array(goal)}


def _maze_plan(agent: Diffuser, obs: dict[str, np.ndarray], positions: np.ndarray) -> torch.Tensor:
    """A normalised ``(1, H, A + S)`` plan whose states sit at ``positions`` (raw xy) with zero velocity."""
    flat = agent.flattener(obs).astype(np.float32)
    raw = np.repeat(flat[None], len(positions), axis=0)
    raw[:, :2], raw[:, 2:4] = positions, 0.0
    states = agent.normalizers["obs"].normalize(torch.as_tensor(raw))[:, : agent.state_dim]
    return torch.cat([torch.zeros(len(positions), agent.act_dim), states], dim=-1)[None]


def test_maze_track_plans_once_and_holds_the_last_planned_state(maze_agent: Diffuser) -> None:
    # reference code (scripts/plan_maze2d.py): one plan per episode; past its end the target is its last state
    # with zero velocity, so an agent that has arrived stays at the goal instead of replanning a detour
    agent, h = maze_agent, maze_agent.config.horizon
    made = agent.plans_made
    obs = _maze_obs((0.5, 0.2), (0.3, -0.2))
    state, start = None, np.array([True])
    for _ in range(3 * h):
        action, state = agent.predict(obs, state=state, episode_start=start, deterministic=True)
        start = np.array([False])
    assert agent.plans_made - made == 1
    norm_obs = agent.prepare_obs(obs)[0]
    full = norm_obs.clone()
    full[:, : agent.state_dim] = state.plans[:, -1, agent.act_dim:]
    last = agent.normalizers["obs"].unnormalize(full)[0]
    cur = agent.normalizers["obs"].unnormalize(norm_obs)[0]
    expected = (last[:2] - cur[:2]) + (0.0 - cur[2:4])  # kp = kd = 1, target velocity 0 past the plan's end
    np.testing.assert_allclose(action, expected.clamp(-1, 1).numpy(), atol=1e-5)


def test_maze_follow_skips_a_detour_and_chases_the_next_point_beyond_the_radius(maze_agent: Diffuser) -> None:
    agent = maze_agent
    obs = _maze_obs((0.5, 0.5), (0.2, -0.1))
    path = np.array([[0.5, 0.5], [0.5, -0.5], [0.5, -1.0], [0.6, 0.5], [0.6, 0.8], [0.6, 1.2], [0.3, 1.2],
                     [0.0, 1.2]])  # a detour (1, 2) that comes back within 0.5 of the agent (3, 4)
    plans = _maze_plan(agent, obs, path)
    act, progress = agent._follow(agent.prepare_obs(obs)[0], plans, torch.zeros(1, dtype=torch.long))
    assert progress.tolist() == [4]  # (0.6, 0.8) is 0.32 away: the last point within the radius
    kp, kd = agent.config.follow_gains
    expected = np.clip(kp * (path[5] - [0.5, 0.5]) - kd * np.array([0.2, -0.1]), -1, 1)  # first later point > 0.5
    np.testing.assert_allclose(act[0].numpy(), expected, atol=1e-4)
    # progress never moves back, and once no later point is farther than the radius the target is the last one
    far = _maze_obs((0.1, 1.1), (0.0, 0.0))
    act, progress = agent._follow(agent.prepare_obs(far)[0], plans, torch.tensor([4]))
    assert progress.tolist() == [7]
    np.testing.assert_allclose(act[0].numpy(), np.clip(kp * (path[-1] - [0.1, 1.1]), -1, 1), atol=1e-4)
    behind = _maze_obs((0.5, 0.5), (0.0, 0.0))
    _, progress = agent._follow(agent.prepare_obs(behind)[0], plans, torch.tensor([6]))
    assert progress.tolist() == [6]


def test_maze_follow_restarts_the_path_on_a_new_episode(maze_agent: Diffuser) -> None:
    agent = maze_agent
    agent.config.execution = "follow"
    try:
        one = _maze_obs((0.5, 0.2), (0.0, 0.0))
        obs = {k: np.stack([v, v]) for k, v in one.items()}
        _, state = agent.predict(obs, episode_start=np.array([True, True]), deterministic=True)
        state.extra["progress"][:] = 5
        made = agent.plans_made
        _, state = agent.predict(obs, state=state, episode_start=np.array([False, True]), deterministic=True)
        assert agent.plans_made - made == 1  # only env 1 replans, and only its progress starts over
        assert state.extra["progress"][0] >= 5 and state.extra["progress"][1] < 5
    finally:
        agent.config.execution = "track"


def test_maze_follow_replans_only_an_env_that_stalls_short_of_the_plan_end(maze_agent: Diffuser) -> None:
    # follow_stall_steps = k: every k decisions, an env whose progress along its plan has not advanced for k steps
    # and is short of the plan's last (goal) state gets a new plan from where it is; an env at the end keeps its plan
    agent, h, k = maze_agent, maze_agent.config.horizon, 3
    agent.config.execution = "follow"
    try:
        one = _maze_obs((0.5, 0.2), (0.0, 0.0), goal=(0.0, 1.5))  # held in place: its progress cannot advance
        obs = {key: np.stack([v, v]) for key, v in one.items()}
        for stall, expected in ((None, 0), (k, 1)):
            agent.config.follow_stall_steps = stall
            _, state = agent.predict(obs, episode_start=np.array([True, True]), deterministic=True)
            state.extra["progress"][1] = h - 1  # env 1 has arrived at its plan's end
            first = state.plans.clone()
            made, counts = agent.plans_made, []
            for _ in range(k):
                _, state = agent.predict(obs, state=state, episode_start=np.array([False, False]),
                                         deterministic=True)
                counts.append(agent.plans_made - made)
            assert counts == [0] * (k - 1) + [expected]  # checked on the k-th decision only
            if stall is not None:
                assert state.age.tolist() == [1, k + 1]  # env 0 has a fresh plan, env 1 kept its own
                assert state.extra["progress"][1] == h - 1 and torch.equal(state.plans[1], first[1])
        # alone, from the same state, the same (deterministic) noise would give the stalled plan back: it draws other
        agent.config.follow_stall_steps = k
        _, state = agent.predict(one, episode_start=np.array([True]), deterministic=True)
        first = state.plans.clone()
        for _ in range(k):
            _, state = agent.predict(one, state=state, episode_start=np.array([False]), deterministic=True)
        assert state.age.tolist() == [1] and not torch.allclose(state.plans, first)
    finally:
        agent.config.execution, agent.config.follow_stall_steps = "track", None


def test_follow_stall_steps_must_be_positive() -> None:
    from diffagents.agents.planners.diffuser import DiffuserConfig

    with pytest.raises(ValueError, match="follow_stall_steps"):
        DiffuserConfig(follow_stall_steps=0)
