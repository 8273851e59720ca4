"""MADiff: joint denoiser equivariance, inverse dynamics, MADiff-C / MADiff-D acting, persistence, mpe2 runs."""

from __future__ import annotations

import functools
import warnings
from typing import Any

import numpy as np
import pytest
import torch

from diffagents.agents.multiagent.madiff import CPU_HYPERPARAMETERS, MADiff, MADiffConfig
from diffagents.agents.multiagent.madiff_data import _prepend_history
from diffagents.nn import AgentAttention, AgentInverseDynamics, JointTemporalUNet
from diffagents.persistence import CheckpointError

try:
    from diffagents.wrappers.pettingzoo import collect_episodes, evaluate
except ModuleNotFoundError:  # source checkout without the package-dir mapping installed
    from wrappers.pettingzoo import collect_episodes, evaluate

TINY: dict[str, Any] = dict(dim=8, dim_mults=(1, 2), horizon=8, n_diffusion_steps=10, sampler="ddim", sampler_steps=4,
                            inv_hidden=(32,), batch_size=8, inv_batch_size=32, returns_scale=50.0, n_heads=2)


def spread(n: int = 3, continuous: bool = True) -> Any:
    from mpe2 import simple_spread_v3

    return functools.partial(simple_spread_v3.parallel_env, N=n, max_cycles=25, continuous_actions=continuous)


@pytest.fixture(scope="module")
def expert_ds() -> Any:
    from diffagents.data import make_dataset

    return make_dataset("diffagents/mpe-spread/expert-v0", size=250)  # 10 episodes of 25 joint steps


def _trained(ds: Any, **kw: Any) -> MADiff:
    agent = MADiff(spread(), ds, seed=0, **(TINY | kw))
    return agent.learn(20, log_interval=0)


@pytest.fixture(scope="module")
def central(expert_ds: Any) -> MADiff:
    return _trained(expert_ds, history=2, horizon=6)


@pytest.fixture(scope="module")
def decentral(expert_ds: Any) -> MADiff:
    return _trained(expert_ds, decentralized=True, history=1, horizon=7)


def _obs(seed: int = 3) -> dict[str, np.ndarray]:
    env = spread()()
    obs, _ = env.reset(seed=seed)
    return obs


# ---------------------------------------------------------------------------------------------- networks
def test_agent_attention_and_joint_unet_are_permutation_equivariant() -> None:
    torch.manual_seed(0)
    perm = torch.tensor([2, 0, 3, 1])
    attn = AgentAttention(8, 2)
    x = torch.randn(2, 4, 8, 5)  # (B, N, C, H)
    torch.testing.assert_close(attn(x[:, perm]), attn(x)[:, perm])
    net = JointTemporalUNet(6, 4, dim=8, dim_mults=(1, 2), cond_dim=1, cfg_dropout=0.25, agent_embedding=False,
                            n_heads=2).eval()
    x, t, c = torch.randn(2, 4, 8, 6), torch.tensor([1.0, 7.0]), torch.randn(2, 1)  # (B, N, H, D)
    torch.testing.assert_close(net(x[:, perm], t, c), net(x, t, c)[:, perm], atol=1e-5, rtol=1e-5)
    mask = torch.tensor([True, False])
    torch.testing.assert_close(net(x[:, perm], t, c, mask), net(x, t, c, mask)[:, perm], atol=1e-5, rtol=1e-5)
    with_ids = JointTemporalUNet(6, 4, dim=8, dim_mults=(1, 2), agent_embedding=True, n_heads=2).eval()
    with torch.no_grad():
        with_ids.agent_embedding.weight.normal_()  # type: ignore[union-attr]
    assert not torch.allclose(with_ids(x[:, perm], t, c), with_ids(x, t, c)[:, perm], atol=1e-4)


def test_joint_unet_shape_errors() -> None:
    net = JointTemporalUNet(6, 3, dim=8, dim_mults=(1, 2), n_heads=2)
    with pytest.raises(ValueError, match="x: expected shape"):
        net(torch.randn(2, 3, 8, 5), torch.zeros(2), torch.zeros(2, 1))
    with pytest.raises(ValueError, match="horizon"):
        net(torch.randn(2, 3, 7, 6), torch.zeros(2), torch.zeros(2, 1))
    with pytest.raises(ValueError, match="cond"):
        net(torch.randn(2, 3, 8, 6), torch.zeros(2), None)


@pytest.mark.parametrize("shared", [False, True])
def test_inverse_dynamics_recovers_actions_of_a_linear_system(shared: bool) -> None:
    """s' = A s + B a per agent: after brief training the action error drops far below the untrained error."""
    g = torch.Generator().manual_seed(0)
    n, d, k = 3, 4, 2
    mats = torch.randn(n, d, d, generator=g) * 0.3
    gains = torch.randn(n, d, k, generator=g)

    def batch(size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        s = torch.randn(size, n, d, generator=g)
        a = torch.rand(size, n, k, generator=g) * 2 - 1
        s2 = torch.einsum("nij,bnj->bni", mats, s) + torch.einsum("nij,bnj->bni", gains, a)
        return s, s2, a

    torch.manual_seed(0)
    inv = AgentInverseDynamics(d, k, n, shared=shared, hidden=(64, 64))
    s, s2, a = batch(512)
    with torch.no_grad():
        before = (inv(s, s2) - a).pow(2).mean().item()
    opt = torch.optim.Adam(inv.parameters(), lr=3e-3)
    for _ in range(300):
        loss, _ = inv.loss(*batch(128), discrete=False)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        after = (inv(s, s2) - a).pow(2).mean().item()
    limit = 0.1 if not shared else 0.3  # one shared MLP must fit N different systems
    assert after < limit * before, (before, after)


# ---------------------------------------------------------------------------------------------- acting
def test_decentralized_execution_uses_only_own_observation(decentral: MADiff) -> None:
    """MADiff-D: perturbing teammates' observations (over several steps, with history) never changes agent i's
    actions under deterministic=True, while perturbing its own observation does."""
    env = spread()()
    obs, _ = env.reset(seed=3)
    steps = [obs]
    for _ in range(2):
        obs = env.step({a: np.full(5, 0.5, np.float32) for a in env.agents})[0]
        steps.append(obs)
    rng = np.random.default_rng(0)

    def run(seq: list[dict[str, np.ndarray]]) -> list[dict[str, Any]]:
        state, out = None, []
        for t, o in enumerate(seq):
            act, state = decentral.predict(o, state=state, episode_start=np.array([t == 0]), deterministic=True)
            out.append(act)
        return out

    base = run(steps)
    for agent in decentral.agents:
        noisy = [{a: (o if a == agent else o + rng.normal(0, 1.0, o.shape).astype(np.float32)) for a, o in x.items()}
                 for x in steps]
        for t, act in enumerate(run(noisy)):
            np.testing.assert_array_equal(act[agent], base[t][agent], err_msg=f"{agent} used a teammate's obs")
    own = [x | {"agent_0": x["agent_0"] + 1.0} for x in steps]
    assert not np.allclose(run(own)[-1]["agent_0"], base[-1]["agent_0"])


def test_centralized_control_uses_every_observation(central: MADiff) -> None:
    obs = _obs()
    _, state = central.predict(obs, deterministic=True)
    moved = dict(obs)
    moved["agent_1"] = obs["agent_1"] + 1.0
    _, state2 = central.predict(moved, deterministic=True)
    # MADiff-C: agent 0's planned future depends on agent 1's observation (plans: (E, W, R, N, D)); its action
    # reads one step of it, which a 20-step model may saturate at the [-1, 1] clip
    future = slice(central.config.history + 1, None)
    assert not torch.allclose(state.plans[:, future, :, 0], state2.plans[:, future, :, 0])


def test_predict_shapes_state_and_batches(central: MADiff) -> None:
    obs = _obs()
    act, state = central.predict(obs, episode_start=np.array([True]))
    assert set(act) == set(central.agents) and all(a.shape == (5,) for a in act.values())
    assert all(np.all((a >= 0) & (a <= 1)) for a in act.values())
    act, state = central.predict(obs, state=state)  # history is carried in the state
    assert state.extra["history"].shape == (1, 3, 3, 18)  # (E, K+1, N, D)
    batched = {a: np.stack([o, o]) for a, o in obs.items()}
    act_b, _ = central.predict(batched, episode_start=np.array([True, True]), deterministic=True)
    act_c, _ = central.predict(batched, episode_start=np.array([True, True]), deterministic=True)
    assert act_b["agent_0"].shape == (2, 5)
    np.testing.assert_array_equal(act_b["agent_2"], act_c["agent_2"])


def test_bad_inputs_name_agent_and_field(central: MADiff) -> None:
    obs = _obs()
    with pytest.raises(ValueError, match=r"missing agent\(s\) \['agent_2'\]"):
        central.predict({a: o for a, o in obs.items() if a != "agent_2"})
    with pytest.raises(ValueError, match=r"observation\['agent_1'\]: expected shape \(18,\)"):
        central.predict(obs | {"agent_1": obs["agent_1"][:17]})
    with pytest.raises(ValueError, match=r"observation\['agent_0'\]: contains NaN"):
        central.predict(obs | {"agent_0": np.full(18, np.nan, np.float32)})
    with pytest.raises(ValueError, match="unknown agent"):
        central.predict(obs | {"agent_9": obs["agent_0"]})
    with pytest.raises(ValueError, match="obs, infos"):
        central.predict((obs, {}))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="episode_start"):
        central.predict(obs, episode_start=np.array([True, False]))


def test_config_validation_names_field() -> None:
    with pytest.raises(ValueError, match="MADiffConfig.horizon"):
        MADiffConfig(horizon=7, dim_mults=(1, 2))
    with pytest.raises(ValueError, match="MADiffConfig.cfg_dropout"):
        MADiffConfig(cfg_dropout=1.0)
    with pytest.raises(ValueError, match="MADiffConfig.prediction_type"):
        MADiffConfig(prediction_type="score")
    with pytest.raises(ValueError, match="unknown hyperparameters"):
        MADiff(spread(), foo=1)
    assert MADiffConfig().dim == 128 and MADiffConfig(**CPU_HYPERPARAMETERS).dim == 64


def test_dataset_env_mismatch_is_refused(expert_ds: Any) -> None:
    with pytest.raises(ValueError, match="agents: the env has"):
        MADiff(spread(4), expert_ds, **TINY)
    with pytest.raises(ValueError, match=r"action_space\['agent_0'\]"):
        MADiff(spread(continuous=False), expert_ds, **TINY)


# ---------------------------------------------------------------------------------------------- persistence
def test_save_load_roundtrip_and_refusals(decentral: MADiff, tmp_path: Any) -> None:
    path = tmp_path / "madiff.zip"
    decentral.save(path)
    loaded = MADiff.load(path, env=spread())
    obs = _obs()
    a1, _ = decentral.predict(obs, deterministic=True)
    a2, _ = loaded.predict(obs, deterministic=True)
    for agent in a1:
        np.testing.assert_array_equal(a1[agent], a2[agent])
    assert loaded.config == decentral.config and loaded.num_timesteps == decentral.num_timesteps
    decentral.save(tmp_path / "lean.zip", exclude=["optimizers", "training_weights"])  # the EMA planner acts
    a3, _ = MADiff.load(tmp_path / "lean.zip", env=spread()).predict(obs, deterministic=True)
    for agent in a1:
        np.testing.assert_array_equal(a1[agent], a3[agent])
    assert (tmp_path / "lean.zip").stat().st_size < path.stat().st_size
    with pytest.raises(CheckpointError, match="agents: the env has"):
        MADiff.load(path, env=spread(4))
    with pytest.raises(CheckpointError, match=r"action_space\['agent_0'\]"):
        MADiff.load(path, env=spread(continuous=False))
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"not a zip")
    with pytest.raises(CheckpointError):
        MADiff.load(bad)


# ---------------------------------------------------------------------------------------------- end to end
def test_learn_then_evaluate_on_simple_spread(expert_ds: Any, tmp_path: Any) -> None:
    agent = MADiff(spread(), expert_ds, seed=1, **TINY)
    from stable_baselines3.common.callbacks import CheckpointCallback, ConvertCallback

    seen: list[int] = []
    ckpt = CheckpointCallback(save_freq=3, save_path=str(tmp_path), name_prefix="m")  # SB3 callbacks, as any agent
    agent.learn(6, log_interval=3, callback=[ConvertCallback(lambda lo, gl: seen.append(lo["agent"].num_timesteps) is None), ckpt])
    assert seen == [1, 2, 3, 4, 5, 6] and agent.num_timesteps == 6
    assert MADiff.load(tmp_path / "m_6_steps.zip").num_timesteps == 6
    out = evaluate(agent, spread(), n_episodes=2, seed=0, reference_scores=expert_ds)
    assert out["returns"].shape == (2,) and np.all(out["lengths"] == 25)
    assert np.all(np.isfinite(out["returns"])) and out["normalized"].shape == (2,)
    batched = evaluate(agent, spread(), n_episodes=3, seed=0, reference_scores=expert_ds, n_envs=2)
    assert np.all(batched["lengths"] == 25) and np.all(np.isfinite(batched["returns"]))


def test_discrete_actions_on_simple_spread_discrete(tmp_path: Any) -> None:
    import minari
    from gymnasium import spaces

    env = spread(continuous=False)()
    rng = np.random.default_rng(0)
    buffers, _ = collect_episodes(env, lambda o: {a: int(rng.integers(5)) for a in o}, 150, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = minari.create_dataset_from_buffers(
            "test/madiff-discrete-v0", buffers,
            observation_space=spaces.Dict({a: env.observation_space(a) for a in env.possible_agents}),
            action_space=spaces.Dict({a: env.action_space(a) for a in env.possible_agents}))
    agent = MADiff(spread(continuous=False), ds, seed=0, decentralized=True, **TINY).learn(10, log_interval=5)
    act, _ = agent.predict(_obs(), deterministic=True)
    assert all(isinstance(a, np.integer) and 0 <= a < 5 for a in act.values())
    out = evaluate(agent, spread(continuous=False), n_episodes=1)
    assert out["returns"].shape == (1,)
    path = tmp_path / "disc.zip"
    agent.save(path)
    again = MADiff.load(path, env=spread(continuous=False))
    assert again.predict(_obs(), deterministic=True)[0] == act


def test_history_padding_repeats_first_step(expert_ds: Any) -> None:
    from diffagents.data import read_episodes

    table = read_episodes(expert_ds)
    padded = _prepend_history(table, 2)
    assert np.array_equal(padded.lengths, table.lengths + 2)
    first, off = table.observations[0], padded.obs_offsets
    assert np.array_equal(padded.observations[off[1]], table.observations[table.obs_offsets[1]])
    assert np.array_equal(padded.observations[1], first) and np.array_equal(padded.observations[2], first)
    assert np.all(padded.rewards[:2] == 0) and padded.rewards[2] == table.rewards[0]


def test_agent_dataset_is_one_agents_view_and_trains_a_single_agent_learner(expert_ds: Any) -> None:
    import minari

    from diffagents import DiffusionQL
    from diffagents.data import DataError, agent_dataset

    view = agent_dataset(expert_ds, "agent_2")
    assert view.spec.dataset_id == "diffagents/mpe-spread/expert-n250-s0-agent_2-v0"
    assert view.observation_space == expert_ds.observation_space["agent_2"]
    assert view.action_space == expert_ds.action_space["agent_2"]
    assert view.total_steps == expert_ds.total_steps and view.total_episodes == expert_ds.total_episodes
    for joint, own in zip(expert_ds.iterate_episodes(), view.iterate_episodes()):
        np.testing.assert_array_equal(own.observations, joint.observations["agent_2"])
        np.testing.assert_array_equal(own.actions, joint.actions["agent_2"])
        np.testing.assert_array_equal(own.rewards, joint.rewards)  # the team reward
        np.testing.assert_array_equal(own.truncations, joint.truncations)
    assert agent_dataset(expert_ds, "agent_2").spec.dataset_id == view.spec.dataset_id  # cached copy reused
    with pytest.raises(DataError, match=r"agent: expected one of \['agent_0', 'agent_1', 'agent_2'\], got 'agent_7'"):
        agent_dataset(expert_ds, "agent_7")
    with pytest.raises(DataError, match="diffagents_agent_view"):  # an id taken by other data is not reused
        agent_dataset(expert_ds, "agent_0", dataset_id=view.spec.dataset_id)
    with pytest.raises(DataError, match="observation_space: expected a Dict"):
        agent_dataset(minari.load_dataset(view.spec.dataset_id), "agent_2")
    dql = DiffusionQL(dataset=view, seed=0, batch_size=16).learn(2, log_interval=0)
    action, _ = dql.predict(_obs()["agent_2"], deterministic=True)
    assert action.shape == (5,) and np.all((action >= 0) & (action <= 1))
