"""SynthERReplayBuffer / SynthERDictReplayBuffer: the SB3 buffer contract, the synthetic ratio, scaled actions,
retraining on add, SAC/TD3 runs and pickle-free npz persistence."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from diffagents.wrappers.sb3 import SynthERDictReplayBuffer, SynthERReplayBuffer
from gymnasium import spaces
from stable_baselines3.common.type_aliases import DictReplayBufferSamples, ReplayBufferSamples

torch.set_num_threads(1)
TINY = dict(width=32, n_blocks=1, time_dim=16, batch_size=64, sampler_steps=3)
MARK = 1.0e6

OBS = spaces.Box(-5.0, 5.0, (3,), np.float32)
ACT = spaces.Box(-2.0, 2.0, (1,), np.float32)


def fill(buf: Any, n: int, scaled_action: float = 0.5, dict_obs: bool = False) -> None:
    rng = np.random.default_rng(0)
    for i in range(n):
        flat = rng.normal(size=(1, 3)).astype(np.float32)
        o: Any = flat
        nxt: Any = flat + 0.1
        if dict_obs:
            o, nxt = {"pos": flat[:, :2], "vel": flat[:, 2:]}, {"pos": nxt[:, :2], "vel": nxt[:, 2:]}
        buf.add(o, nxt, np.full((1, 1), scaled_action, np.float32), np.array([float(i)]),
                np.array([i % 10 == 9], np.float32), [{"TimeLimit.truncated": i % 20 == 19}])


def marked_synthetic(n: int, obs_dim: int = 3) -> dict[str, np.ndarray]:
    return {"observations": np.zeros((n, obs_dim), np.float32), "actions": np.full((n, 1), 2.0, np.float32),
            "rewards": np.full(n, MARK, np.float32), "next_observations": np.ones((n, obs_dim), np.float32),
            "terminations": np.arange(n) % 2 == 0}


@pytest.mark.parametrize("ratio, expected", [(0.5, 32), (0.25, 16), (1.0, 64)])
def test_samples_fields_shapes_and_ratio(ratio: float, expected: int) -> None:
    buf = SynthERReplayBuffer(200, OBS, ACT, device="cpu", synthetic_ratio=ratio, retrain_every=10_000,
                              synthetic_size=10, synthesizer_kwargs=TINY)
    fill(buf, 50)
    before = buf.sample(64)
    assert isinstance(before, ReplayBufferSamples) and int((before.rewards == MARK).sum()) == 0
    buf.set_synthetic(marked_synthetic(10))
    batch = buf.sample(64)
    assert isinstance(batch, ReplayBufferSamples) and batch.discounts is None
    assert batch.observations.shape == batch.next_observations.shape == (64, 3)
    assert batch.actions.shape == batch.dones.shape == batch.rewards.shape == (64, 1)
    syn = (batch.rewards == MARK)[:, 0]
    assert int(syn.sum()) == expected
    assert torch.all(batch.actions[syn] == 1.0)  # env-unit 2.0 -> SB3's scaled 1.0
    assert set(batch.dones[syn, 0].tolist()) <= {0.0, 1.0}
    assert torch.all(batch.actions.abs() <= 1.0)


def test_retrains_every_k_env_steps_on_unscaled_real_data() -> None:
    buf = SynthERReplayBuffer(200, OBS, ACT, device="cpu", retrain_every=20, generator_steps=3, synthetic_size=30,
                              synthesizer_kwargs=TINY)
    fill(buf, 19)
    assert buf.retrain_log == [] and buf.synthetic_count == 0
    fill(buf, 1)
    assert len(buf.retrain_log) == 1 and buf.synthetic_count == 30
    assert buf.generator.num_timesteps == 3
    # SB3 stores 0.5 in [-1, 1]; the generator must see the env-unit action 1.0 for Box(-2, 2)
    assert buf.generator.normalizer is not None and buf.generator.normalizer.mean[3] == pytest.approx(1.0)
    assert np.all(np.abs(buf.syn["actions"]) <= 1.0) and buf.syn["observations"].shape == (30, 3)
    fill(buf, 20)
    assert len(buf.retrain_log) == 2 and buf.retrain_log[-1]["real_size"] == 40
    assert {"fit_s", "sample_s", "final_loss"} <= set(buf.retrain_log[-1])


@pytest.mark.parametrize("algo", ["SAC", "TD3"])
def test_off_policy_learn_with_gradient_steps(algo: str) -> None:
    import stable_baselines3 as sb3

    cls = getattr(sb3, algo)
    model = cls("MlpPolicy", "Pendulum-v1", learning_starts=100, batch_size=32, gradient_steps=2, train_freq=1,
                policy_kwargs=dict(net_arch=[32, 32]), device="cpu", seed=0,
                replay_buffer_class=SynthERReplayBuffer,
                replay_buffer_kwargs=dict(synthetic_ratio=0.5, retrain_every=200, generator_steps=10,
                                          synthetic_size=128, synthesizer_kwargs=TINY))
    model.learn(600 if algo == "SAC" else 300)
    buf = model.replay_buffer
    assert isinstance(buf, SynthERReplayBuffer)
    assert len(buf.retrain_log) == (3 if algo == "SAC" else 1) and buf.synthetic_count == 128
    assert model._n_updates == 2 * ((600 if algo == "SAC" else 300) - 100)


class DictPendulum(gym.ObservationWrapper):
    def __init__(self) -> None:
        super().__init__(gym.make("Pendulum-v1"))
        self.observation_space = spaces.Dict({"pos": spaces.Box(-1.0, 1.0, (2,), np.float32),
                                              "vel": spaces.Box(-8.0, 8.0, (1,), np.float32)})

    def observation(self, obs: np.ndarray) -> dict[str, np.ndarray]:
        return {"pos": obs[:2], "vel": obs[2:]}


def test_dict_variant_construction_sampling_and_sac() -> None:
    from stable_baselines3 import SAC

    space = spaces.Dict({"pos": spaces.Box(-5, 5, (2,), np.float32), "vel": spaces.Box(-5, 5, (1,), np.float32)})
    buf = SynthERDictReplayBuffer(100, space, ACT, device="cpu", retrain_every=30, generator_steps=2,
                                  synthetic_size=8, synthesizer_kwargs=TINY)
    fill(buf, 30, dict_obs=True)
    assert buf.synthetic_count == 8 and set(buf.syn["observations"]) == {"pos", "vel"}
    buf.set_synthetic(marked_synthetic(8))
    batch = buf.sample(10)
    assert isinstance(batch, DictReplayBufferSamples)
    assert batch.observations["pos"].shape == (10, 2) and batch.next_observations["vel"].shape == (10, 1)
    assert int((batch.rewards == MARK).sum()) == 5
    model = SAC("MultiInputPolicy", DictPendulum(), learning_starts=50, batch_size=16, gradient_steps=1,
                policy_kwargs=dict(net_arch=[16]), device="cpu", seed=0, replay_buffer_class=SynthERDictReplayBuffer,
                replay_buffer_kwargs=dict(retrain_every=100, generator_steps=2, synthetic_size=16,
                                          synthesizer_kwargs=TINY))
    model.learn(150)
    assert isinstance(model.replay_buffer, SynthERDictReplayBuffer) and model.replay_buffer.synthetic_count == 16


@pytest.mark.parametrize("dict_obs", [False, True])
def test_npz_round_trip(tmp_path: Path, dict_obs: bool) -> None:
    space: Any = spaces.Dict({"pos": spaces.Box(-5, 5, (2,), np.float32),
                              "vel": spaces.Box(-5, 5, (1,), np.float32)}) if dict_obs else OBS
    cls: Any = SynthERDictReplayBuffer if dict_obs else SynthERReplayBuffer
    kwargs = dict(device="cpu", retrain_every=10_000, synthetic_size=6, synthesizer_kwargs=TINY)
    buf = cls(40, space, ACT, **kwargs)
    fill(buf, 55, dict_obs=dict_obs)  # wraps around: full buffer
    buf.set_synthetic(marked_synthetic(6))
    path = tmp_path / "buf.npz"
    buf.save_npz(str(path))
    with np.load(path, allow_pickle=False) as f:
        assert "counters" in f.files
    other = cls(40, space, ACT, **kwargs)
    other.load_npz(str(path))
    assert (other.pos, other.full, other.env_steps_added, other.synthetic_count) == (15, True, 55, 6)
    for name in ("actions", "rewards", "dones", "timeouts"):
        np.testing.assert_array_equal(getattr(other, name), getattr(buf, name))
    obs_a, obs_b = (other.observations, buf.observations)
    if dict_obs:
        for k in obs_a:
            np.testing.assert_array_equal(obs_a[k], obs_b[k])
    else:
        np.testing.assert_array_equal(obs_a, obs_b)
    np.random.seed(0)  # noqa: NPY002  (SB3 buffers sample with the global RNG)
    a = other.sample(12)
    np.random.seed(0)  # noqa: NPY002
    b = buf.sample(12)
    torch.testing.assert_close(a.rewards, b.rewards)
    torch.testing.assert_close(a.actions, b.actions)
    with pytest.raises(ValueError, match="buffer_size"):
        cls(80, space, ACT, **kwargs).load_npz(str(path))


@pytest.mark.parametrize("optimize", [False, True])
def test_generator_reads_plain_sb3_buffer(optimize: bool) -> None:
    from stable_baselines3.common.buffers import ReplayBuffer

    from diffagents import SynthER

    rb = ReplayBuffer(8, OBS, ACT, device="cpu", optimize_memory_usage=optimize, handle_timeout_termination=not optimize)
    for i in range(11):  # wraps: the buffer is full, pos = 3
        o = np.full((1, 3), i, np.float32)
        rb.add(o, o + 1, np.full((1, 1), -0.5, np.float32), np.array([i]), np.array([i == 10], np.float32),
               [{"TimeLimit.truncated": False}])
    arrays = SynthER(OBS, ACT, **TINY)._arrays(rb)
    n = 7 if optimize else 8  # with optimize_memory_usage the slot at pos has no valid next observation
    assert arrays["observations"].shape == (n, 3) and arrays["actions"].shape == (n, 1)
    np.testing.assert_array_equal(arrays["next_observations"], arrays["observations"] + 1)
    np.testing.assert_allclose(arrays["actions"], -1.0)  # scaled -0.5 in Box(-2, 2)
    assert arrays["terminations"].sum() == 1 and arrays["rewards"][arrays["terminations"]][0] == 10
