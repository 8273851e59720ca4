"""Transitions, windows, returns-to-go, flattening, normalizers and samplers against hand-computed data."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces

import diffagents.data as data

OBS = spaces.Box(-10.0, 10.0, (2,), np.float32)
ACT = spaces.Box(-1.0, 1.0, (1,), np.float32)


def _episode(obs: list[list[float]], rewards: list[float], terminated: bool) -> dict:
    t = len(rewards)
    return {
        "observations": np.asarray(obs, dtype=np.float32),
        "actions": np.linspace(-0.5, 0.5, t, dtype=np.float32).reshape(t, 1),
        "rewards": np.asarray(rewards, dtype=np.float64),
        "terminations": np.array([False] * (t - 1) + [terminated]),
        "truncations": np.array([False] * (t - 1) + [not terminated]),
    }


@pytest.fixture
def hand_dataset(make_minari):
    ep0 = _episode([[0, 0], [1, 1], [2, 2], [3, 3]], [1.0, 2.0, 3.0], terminated=True)
    ep1 = _episode([[5, 5], [6, 6], [7, 7]], [1.0, 1.0], terminated=False)
    return make_minari([ep0, ep1], OBS, ACT)


def test_transitions_alignment_and_bootstrap_flags(hand_dataset):
    tr = data.to_transitions(hand_dataset)
    assert len(tr) == 5
    np.testing.assert_array_equal(tr.observations[:, 0], [0, 1, 2, 5, 6])
    np.testing.assert_array_equal(tr.next_observations[:, 0], [1, 2, 3, 6, 7])
    np.testing.assert_array_equal(tr.terminations, [False, False, True, False, False])
    np.testing.assert_array_equal(tr.truncations, [False, False, False, False, True])
    np.testing.assert_array_equal(tr.episode_ids, [0, 0, 0, 1, 1])
    assert tr.observations.dtype == np.float32 and tr.rewards.dtype == np.float32
    assert tr.observation_space.shape == (2,) and tr.action_space.shape == (1,)


def test_windows_padding_mask_and_returns_to_go(hand_dataset):
    w = data.to_windows(hand_dataset, 2, discount=0.5, termination_penalty=-10.0)
    # episode 0 rewards with penalty: [1, 2, -7] -> RTG [1 + .5 * -1.5, 2 + .5 * -7, -7] = [0.25, -1.5, -7]
    assert len(w) == 5  # a window at every step (3 + 2)
    np.testing.assert_array_equal(w.start, [0, 1, 2, 0, 1])
    np.testing.assert_allclose(w.returns_to_go[:3], [[0.25, -1.5], [-1.5, -7.0], [-7.0, 0.0]])
    np.testing.assert_allclose(w.rewards[2], [-7.0, 0.0])
    np.testing.assert_array_equal(w.mask[:, 1], [1, 1, 0, 1, 0])
    np.testing.assert_array_equal(w.observations[2, :, 0], [2, 0])  # zero padding past the end
    np.testing.assert_array_equal(w.terminals[2], [True, False])
    np.testing.assert_allclose(w.returns_to_go[3:, 0], [1.5, 1.0])  # truncated: no penalty
    assert w.observations.shape == (5, 2, 2) and w.actions.shape == (5, 2, 1)


def test_windows_without_padding_and_edge_mode(hand_dataset):
    w = data.to_windows(hand_dataset, 3, use_padding=False)
    assert len(w) == 1 and float(w.mask.min()) == 1.0
    e = data.to_windows(hand_dataset, 3, pad_mode="edge")
    np.testing.assert_array_equal(e.observations[2, :, 0], [2, 3, 3])  # final observation repeated
    with pytest.raises(data.DataError, match="horizon"):
        data.to_windows(hand_dataset, 9, use_padding=False)


def test_window_sampler_matches_materialised(hand_dataset):
    w = data.to_windows(hand_dataset, 2, discount=0.5)
    sampler = w.sampler()
    batch = sampler.sample(64, generator=torch.Generator().manual_seed(0))
    assert batch["observations"].shape == (64, 2, 2) and batch["mask"].shape == (64, 2)
    rows = {tuple(r) for r in w.returns_to_go.tolist()}
    assert {tuple(r) for r in batch["returns_to_go"].tolist()} <= rows


def test_tensor_sampler_shapes_device_determinism(hand_dataset):
    tr = data.to_transitions(hand_dataset)
    s = data.TensorSampler(tr.as_arrays(), device="cpu")
    assert len(s) == 5
    a = s.sample(7, generator=torch.Generator().manual_seed(3))
    b = s.sample(7, generator=torch.Generator().manual_seed(3))
    for k in a:
        assert a[k].device.type == "cpu" and a[k].shape[0] == 7
        torch.testing.assert_close(a[k], b[k])
    assert a["observations"].dtype == torch.float32 and a["terminations"].dtype == torch.bool
    with pytest.raises(data.DataError, match="first dimension"):
        data.TensorSampler({"x": np.zeros(3), "y": np.zeros(4)})


@pytest.mark.parametrize("name", ["gaussian", "minmax", "limits", "cdf"])
def test_normalizer_round_trip_numpy_and_torch(name):
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(-3, 0.5, (500, 3)), rng.normal(4, 2.0, (500, 3))]).astype(np.float32)
    norm = data.make_normalizer(name).fit(x)
    y = norm.normalize(x)
    assert y.dtype == np.float32 and y.shape == x.shape
    if name != "gaussian":
        assert y.min() >= -1.0 - 1e-5 and y.max() <= 1.0 + 1e-5
    np.testing.assert_allclose(norm.unnormalize(y), x, atol=2e-3, rtol=1e-3)
    xt = torch.from_numpy(x)
    yt = norm.normalize(xt)
    assert isinstance(yt, torch.Tensor) and yt.dtype == torch.float32
    np.testing.assert_allclose(yt.numpy(), y, atol=1e-4)
    np.testing.assert_allclose(norm.unnormalize(yt).numpy(), x, atol=2e-3, rtol=1e-3)
    restored = data.normalizer_from_state_dict(norm.state_dict())
    np.testing.assert_allclose(restored.normalize(x), y, atol=1e-5)
    assert type(restored).from_state_dict(norm.state_dict()).fitted


def test_normalizer_errors():
    with pytest.raises(data.DataError, match="normalizer name"):
        data.make_normalizer("nope")
    norm = data.GaussianNormalizer().fit(np.zeros((4, 2)))
    with pytest.raises(data.DataError, match="last dimension 2"):
        norm.normalize(np.zeros((3, 5)))


def test_obs_flattener_goal_dict_and_round_trip():
    space = spaces.Dict({
        "observation": spaces.Box(-np.inf, np.inf, (4,)), "achieved_goal": spaces.Box(-np.inf, np.inf, (2,)),
        "desired_goal": spaces.Box(-np.inf, np.inf, (2,)),
    })
    f = data.ObsFlattener.from_space(space)
    assert f.keys == ("observation", "desired_goal") and f.flat_space.shape == (6,)
    one = {"observation": np.arange(4.0), "achieved_goal": np.zeros(2), "desired_goal": np.array([8.0, 9.0])}
    np.testing.assert_array_equal(f(one), [0, 1, 2, 3, 8, 9])
    batch = {k: np.stack([v, v]) for k, v in one.items()}
    assert f(batch).shape == (2, 6) and f(batch).dtype == np.float32
    import json

    assert data.ObsFlattener.from_dict(json.loads(json.dumps(f.to_dict()))) == f
    other = data.ObsFlattener.from_space(spaces.Dict({"b": spaces.Box(0, 1, (1,)), "a": spaces.Box(0, 1, (2,))}))
    assert other.keys == ("a", "b")


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_samplers_and_normalizers_on_device(hand_dataset, device):
    tr = data.to_transitions(hand_dataset)
    s = data.TensorSampler(tr.as_arrays(), device=device)
    batch = s.sample(16, generator=torch.Generator(device=device).manual_seed(0))
    assert all(v.device.type == device for v in batch.values())
    cpu_gen_batch = s.sample(16, generator=torch.Generator().manual_seed(0))  # CPU generator also accepted
    assert cpu_gen_batch["observations"].device.type == device
    w = data.to_windows(hand_dataset, 2).sampler(device).sample(8)
    assert w["observations"].shape == (8, 2, 2) and w["mask"].device.type == device
    norm = data.make_normalizer("cdf").fit(tr.observations)
    x = batch["observations"]
    y = norm.normalize(x)
    assert y.device == x.device and y.dtype == x.dtype
    torch.testing.assert_close(norm.unnormalize(y), x, atol=2e-3, rtol=1e-3)


def test_load_dataset_by_path_and_missing_reference_scores(hand_dataset):
    folder = hand_dataset.storage.data_path.parent
    for ref in (folder, str(folder), hand_dataset.storage.data_path, hand_dataset.spec.dataset_id):
        assert data.load_dataset(ref).total_steps == 5
    assert data.reference_scores(hand_dataset) is None


def test_episode_table_cache(hand_dataset):
    fresh = data.read_episodes(hand_dataset, use_cache=False)
    first = data.read_episodes(hand_dataset)  # writes the cache
    again = data.read_episodes(hand_dataset)  # reads it
    assert any((hand_dataset.storage.data_path.parent / "diffagents_cache").iterdir())
    for name in ("observations", "actions", "rewards", "terminations", "truncations", "lengths", "episode_ids"):
        np.testing.assert_array_equal(getattr(first, name), getattr(fresh, name))
        np.testing.assert_array_equal(getattr(again, name), getattr(fresh, name))
