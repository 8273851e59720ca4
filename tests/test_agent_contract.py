"""SB3 contract tests run over every offline agent (SB3's tests/test_save_load.py pattern)."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from agent_fixtures import make_pendulum_dataset
from stable_baselines3.common.callbacks import CheckpointCallback, EvalCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

from diffagents.core.registry import agent_infos, get_agent_class
from diffagents.persistence import CheckpointError

# every registered offline agent at its tiny config (the registry is the only list of agents)
AGENTS: list[tuple[str, dict[str, Any]]] = [(i.name, i.cls.tiny_config()) for i in agent_infos("offline")]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Any:
    old = os.environ.get("MINARI_DATASETS_PATH")
    ds = make_pendulum_dataset(tmp_path_factory.mktemp("minari"))
    yield ds
    if old is None:
        os.environ.pop("MINARI_DATASETS_PATH", None)
    else:
        os.environ["MINARI_DATASETS_PATH"] = old


def build(name: str, kwargs: dict[str, Any], dataset: Any, **extra: Any) -> Any:
    cls = get_agent_class(name)
    return cls(env=gym.make("Pendulum-v1"), dataset=dataset, seed=0, **{**kwargs, **extra})


@pytest.mark.parametrize("name,kwargs", AGENTS)
def test_predict_shapes_and_vecenv(name: str, kwargs: dict[str, Any], dataset: Any) -> None:
    agent = build(name, kwargs, dataset).learn(5)
    obs = np.zeros(3, dtype=np.float32)
    act, _ = agent.predict(obs)
    assert act.shape == (1,) and agent.action_space.contains(act)
    acts, _ = agent.predict(np.zeros((4, 3), dtype=np.float32))
    assert acts.shape == (4, 1)
    venv = make_vec_env("Pendulum-v1", n_envs=4, seed=0, env_kwargs={"max_episode_steps": 20})
    rets, lens = evaluate_policy(agent, venv, n_eval_episodes=4, return_episode_rewards=True)
    assert len(rets) == 4 and all(n == 20 for n in lens)


@pytest.mark.parametrize("name,kwargs", AGENTS)
def test_callbacks_count_gradient_steps(name: str, kwargs: dict[str, Any], dataset: Any, tmp_path: Path) -> None:
    agent = build(name, kwargs, dataset)
    eval_env = gym.make("Pendulum-v1", max_episode_steps=10)
    eval_cb = EvalCallback(eval_env, n_eval_episodes=1, eval_freq=4, log_path=str(tmp_path), verbose=0)
    ckpt_cb = CheckpointCallback(save_freq=4, save_path=str(tmp_path), name_prefix="m")
    agent.learn(8, callback=[eval_cb, ckpt_cb])
    assert agent.num_timesteps == 8
    assert list(np.load(tmp_path / "evaluations.npz")["timesteps"]) == [4, 8]
    assert (tmp_path / "m_8_steps.zip").is_file()
    reloaded = get_agent_class(name).load(tmp_path / "m_8_steps.zip", env=eval_env)
    assert reloaded.num_timesteps == 8


@pytest.mark.parametrize("name,kwargs", AGENTS)
def test_save_load_same_actions(name: str, kwargs: dict[str, Any], dataset: Any, tmp_path: Path) -> None:
    agent = build(name, kwargs, dataset).learn(6)
    obs = np.random.default_rng(1).normal(size=(5, 3)).astype(np.float32)
    before, _ = agent.predict(obs, deterministic=True)
    again, _ = agent.predict(obs, deterministic=True)
    np.testing.assert_array_equal(before, again)
    agent.save(tmp_path / "agent")
    loaded = get_agent_class(name).load(tmp_path / "agent.zip", env=gym.make("Pendulum-v1"))
    after, _ = loaded.predict(obs, deterministic=True)
    np.testing.assert_array_equal(before, after)
    # training continues from the loaded state once data is attached
    loaded.set_dataset(dataset)
    loaded.learn(2, reset_num_timesteps=False)
    assert loaded.num_timesteps == 8


@pytest.mark.parametrize("name,kwargs", AGENTS)
def test_half_precision_checkpoint(name: str, kwargs: dict[str, Any], dataset: Any, tmp_path: Path) -> None:
    from diffagents.persistence import read_checkpoint

    agent = build(name, kwargs, dataset).learn(4)
    agent.save(tmp_path / "full.zip", exclude=["optimizers"])
    agent.save(tmp_path / "half.zip", exclude=["optimizers"], weights_dtype="float16")
    full, half = read_checkpoint(tmp_path / "full.zip"), read_checkpoint(tmp_path / "half.zip")
    assert half.meta["weights_dtype"] == "float16" and "weights_dtype" not in full.meta
    with zipfile.ZipFile(tmp_path / "full.zip") as zf_full, zipfile.ZipFile(tmp_path / "half.zip") as zf_half:
        n_full = zf_full.getinfo("weights.safetensors").file_size
        n_half = zf_half.getinfo("weights.safetensors").file_size
    assert n_half < 0.6 * n_full
    assert half.arrays.keys() == full.arrays.keys()  # normalizer statistics (and RNG states) stay exact
    for key, value in full.arrays.items():
        assert half.arrays[key].dtype == value.dtype
        np.testing.assert_array_equal(half.arrays[key], value)
    loaded = get_agent_class(name).load(tmp_path / "half.zip", env=gym.make("Pendulum-v1"))
    for module, sd in full.weights.items():  # float32 modules holding exactly the float16-rounded weights
        target = loaded.ema.model if module == "ema" else loaded.nets[module]
        for key, value in target.state_dict().items():
            if value.is_floating_point():
                assert value.dtype == torch.float32
                torch.testing.assert_close(value, sd[key].half().float(), rtol=0, atol=0)
    obs = np.random.default_rng(1).normal(size=(5, 3)).astype(np.float32)
    a_full, _ = agent.predict(obs, deterministic=True)
    a_half, _ = loaded.predict(obs, deterministic=True)
    assert a_half.shape == a_full.shape and agent.action_space.contains(a_half[0])
    with pytest.raises(ValueError, match="weights_dtype.*'int8'"):
        agent.save(tmp_path / "bad.zip", weights_dtype="int8")
    assert not (tmp_path / "bad.zip").exists()


@pytest.mark.parametrize("name,kwargs", AGENTS)
def test_inference_only_checkpoint_lets_the_ema_copy_stand_in(name: str, kwargs: dict[str, Any], dataset: Any,
                                                               tmp_path: Path) -> None:
    from diffagents.persistence import read_checkpoint, save_checkpoint

    agent = build(name, kwargs, dataset).learn(6)  # past ema_start: the EMA copy differs from the trained net
    agent.save(tmp_path / "full.zip", exclude=["optimizers"])
    agent.save(tmp_path / "lean.zip", exclude=["optimizers", "training_weights"])
    full, lean = read_checkpoint(tmp_path / "full.zip"), read_checkpoint(tmp_path / "lean.zip")
    dropped = lean.meta.get("weights_from_ema")
    if not type(agent).ema_acts:  # CPQL: the EMA is the consistency target, the trained actor acts
        assert dropped is None and lean.weights.keys() == full.weights.keys()
        return
    assert dropped in agent.nets and set(lean.weights) == set(full.weights) - {dropped}
    loaded = get_agent_class(name).load(tmp_path / "lean.zip", env=gym.make("Pendulum-v1"))
    obs = np.random.default_rng(1).normal(size=(5, 3)).astype(np.float32)
    np.testing.assert_array_equal(agent.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])
    for key, value in loaded.nets[dropped].state_dict().items():  # filled from the EMA copy, not left at init
        torch.testing.assert_close(value, agent.ema.model.state_dict()[key], rtol=0, atol=0)
    lean.weights[dropped] = {k: v.clone() for k, v in lean.weights["ema"].items()}  # marker names a stored net
    save_checkpoint(tmp_path / "both.zip", lean)
    with pytest.raises(CheckpointError, match="weights_from_ema"):
        get_agent_class(name).load(tmp_path / "both.zip", env=gym.make("Pendulum-v1"))
    del lean.weights[dropped], lean.meta["weights_from_ema"]  # a network missing without the marker
    save_checkpoint(tmp_path / "missing.zip", lean)
    with pytest.raises(CheckpointError, match=dropped):
        get_agent_class(name).load(tmp_path / "missing.zip", env=gym.make("Pendulum-v1"))


def test_half_precision_refuses_weights_it_cannot_hold(tmp_path: Path) -> None:
    from diffagents.persistence import Checkpoint, read_checkpoint, save_checkpoint

    weights = {"value": {"scale": torch.tensor([1.0, 7e4]), "steps": torch.tensor([3])}}
    with pytest.raises(ValueError, match=r"weights_dtype: value\.scale .*torch\.float16.*7e\+04"):
        save_checkpoint(tmp_path / "big.zip", Checkpoint(meta={}, weights=weights), weights_dtype="float16")
    assert not (tmp_path / "big.zip").exists()
    save_checkpoint(tmp_path / "big.zip", Checkpoint(meta={}, weights=weights), weights_dtype="bfloat16")  # in range
    stored = read_checkpoint(tmp_path / "big.zip").weights["value"]
    assert stored["scale"].dtype == torch.bfloat16 and stored["steps"].dtype == torch.int64


@pytest.mark.parametrize("name,kwargs", AGENTS)
def test_bad_inputs_raise_clear_errors(name: str, kwargs: dict[str, Any], dataset: Any, tmp_path: Path) -> None:
    agent = build(name, kwargs, dataset)
    with pytest.raises(ValueError, match="observation"):
        agent.predict(np.zeros(5, dtype=np.float32))
    with pytest.raises(ValueError, match="NaN"):
        agent.predict(np.array([np.nan, 0.0, 0.0], dtype=np.float32))
    with pytest.raises(ValueError, match="info"):
        agent.predict((np.zeros(3, dtype=np.float32), {}))
    with pytest.raises(ValueError, match="observation_space"):
        get_agent_class(name)(env=gym.make("MountainCarContinuous-v0"), dataset=dataset, **kwargs)
    with pytest.raises(ValueError, match="unknown|unexpected|got"):
        get_agent_class(name)(env=gym.make("Pendulum-v1"), dataset=dataset, not_a_field=1)
    agent.save(tmp_path / "a.zip")
    with pytest.raises(CheckpointError, match="observation_space"):
        get_agent_class(name).load(tmp_path / "a.zip", env=gym.make("MountainCarContinuous-v0"))


@pytest.mark.parametrize("name,kwargs", AGENTS)
def test_corrupt_and_truncated_checkpoints(name: str, kwargs: dict[str, Any], dataset: Any, tmp_path: Path
                                           ) -> None:
    agent = build(name, kwargs, dataset)
    path = tmp_path / "a.zip"
    agent.save(path)
    data = path.read_bytes()
    (tmp_path / "trunc.zip").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt|truncated|not a diffagents"):
        get_agent_class(name).load(tmp_path / "trunc.zip")
    flipped = bytearray(data)
    for i in range(len(flipped) // 3, len(flipped) // 3 + 64):
        flipped[i] ^= 0xFF
    (tmp_path / "flip.zip").write_bytes(bytes(flipped))
    with pytest.raises(CheckpointError):
        get_agent_class(name).load(tmp_path / "flip.zip")


class _Payload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return (Path.touch, (Path(self.marker),))


@pytest.mark.parametrize("name,kwargs", AGENTS)
def test_pickle_payload_never_runs(name: str, kwargs: dict[str, Any], dataset: Any, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    agent = build(name, kwargs, dataset)
    good = tmp_path / "good.zip"
    agent.save(good)
    # 1. an SB3-style zip whose "data" member is a pickle
    import pickle

    sb3 = tmp_path / "sb3.zip"
    with zipfile.ZipFile(sb3, "w") as zf:
        zf.writestr("data", pickle.dumps(_Payload(str(marker))))
        zf.writestr("policy.pth", b"")
    with pytest.raises(CheckpointError):
        get_agent_class(name).load(sb3)
    # 2. our own layout with a pickle payload in optimizers.pt (torch.load weights_only refuses it)
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(evil, "w") as dst:
        for item in src.namelist():
            payload = src.read(item)
            if item == "optimizers.pt":
                buf = io.BytesIO()
                torch.save({"x": _Payload(str(marker))}, buf)
                payload = buf.getvalue()
            dst.writestr(item, payload)
    with pytest.raises(CheckpointError):
        get_agent_class(name).load(evil)
    assert not marker.exists()


def test_critic_target_bootstraps_on_termination_only(dataset: Any) -> None:
    agent = build("DiffusionQL", get_agent_class("DiffusionQL").tiny_config(), dataset)
    b = 6
    batch = {
        "obs": torch.zeros(b, 3), "action": torch.zeros(b, 1), "next_obs": torch.zeros(b, 3),
        "reward": torch.arange(b, dtype=torch.float32),
        "terminated": torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0, 0.0]),
    }
    with torch.no_grad():
        for p in agent.nets["critic_target"].parameters():
            p.zero_()
        last = [m for m in agent.nets["critic_target"].modules() if isinstance(m, torch.nn.Linear)]
        for m in last:
            if m.out_features == 1:
                m.bias.fill_(10.0)
    target = agent._target_q(batch)
    expected = batch["reward"] + (1 - batch["terminated"]) * agent.config.gamma * 10.0
    torch.testing.assert_close(target, expected)


def test_q_loss_is_scale_invariant() -> None:
    from diffagents.agents.policies.diffusion_ql import normalized_q_loss

    q1, q2 = torch.randn(64) + 3.0, torch.randn(64) + 3.0
    torch.testing.assert_close(normalized_q_loss(q1, q2), normalized_q_loss(100 * q1, 100 * q2))
    assert normalized_q_loss(q1, q2) < 0


def test_deterministic_selection_is_argmax_q(dataset: Any) -> None:
    agent = build("DiffusionQL", get_agent_class("DiffusionQL").tiny_config(), dataset).learn(3)
    obs = torch.zeros(1, 3)
    actor = agent.ema.model
    with torch.no_grad():
        obs_rep, cand = actor.sample_candidates(obs, agent.config.n_candidates, generator=agent.eval_generator())
        q = agent.nets["critic_target"].q_min(obs_rep, cand)
        chosen, _ = agent.act(obs, None, None, deterministic=True)
    torch.testing.assert_close(chosen[0], cand[q.argmax()])


# valid values for every acting field (``OfflineAgent.acting_fields``): the test takes the first that differs from
# the agent's own
ACTING_ALTERNATIVES: dict[str, list[Any]] = {
    "eval_seed": [7], "cuda_graph": [True], "n_candidates": [3], "selection": ["argmax"],
    "sampler": ["ddim", "dpm", "heun"], "flow_steps": [2],
    "sampler_steps": [2], "action_horizon": [3], "guidance_weight": [2.0], "target_return": [0.5],
    "replan_every": [3], "n_samples": [3], "guide_scale": [0.3], "n_guide_steps": [1], "t_stopgrad": [1],
    "scale_grad_by_std": [False], "warm_start": [0.5], "execution": ["track", "actions"],
    "track_gains": [(5.0, 0.5)], "follow_radius": [0.3], "follow_gains": [(8.0, 1.0)], "follow_stall_steps": [5],
    "plan_selection": ["support"], "support_resolution": [0.1],
}


@pytest.mark.parametrize("name,kwargs", AGENTS)
def test_acting_fields_never_change_what_is_learned(name: str, kwargs: dict[str, Any], dataset: Any) -> None:
    """`zoo rescore` may change an agent's acting fields on shipped weights: training with every one of them
    changed must give the same weights."""
    a = build(name, kwargs, dataset).learn(6)  # built and trained before b: construction seeds the global RNGs
    fields = type(a).acting_fields  # CPQL(...) with a dataset builds its offline class
    missing = sorted(fields - set(ACTING_ALTERNATIVES))
    assert not missing, f"add alternative values for {missing} to ACTING_ALTERNATIVES"
    def valid(field: str, value: Any) -> bool:  # the first alternative this agent's config accepts
        try:
            type(a.config)(**{**a.config.to_dict(), field: value})
        except ValueError:
            return False
        return True

    changed = {f: next((v for v in ACTING_ALTERNATIVES[f] if v != getattr(a.config, f) and valid(f, v)), None)
               for f in fields}
    assert None not in changed.values(), f"ACTING_ALTERNATIVES: no value differs from {name}'s for {changed}"
    b = build(name, kwargs, dataset, **changed).learn(6)
    assert all(getattr(b.config, f) != getattr(a.config, f) for f in changed)
    for part, net in a.nets.items():
        for key, value in net.state_dict().items():
            torch.testing.assert_close(value, b.nets[part].state_dict()[key], rtol=0, atol=0,
                                       msg=f"{name}: {part}.{key} differs")
