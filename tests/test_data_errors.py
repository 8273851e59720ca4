"""Bad data raises DataError naming the episode and the field; drop_invalid=True drops and reports."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium import spaces

import diffagents.data as data

OBS = spaces.Box(-np.inf, np.inf, (2,), np.float32)
ACT = spaces.Box(-1.0, 1.0, (1,), np.float32)


def _ep(t: int = 3) -> dict:
    return {
        "observations": np.arange(2 * (t + 1), dtype=np.float32).reshape(t + 1, 2),
        "actions": np.zeros((t, 1), dtype=np.float32),
        "rewards": np.ones(t), "terminations": np.zeros(t, dtype=bool),
        "truncations": np.array([False] * (t - 1) + [True]),
    }


def _bad(field: str) -> dict:
    ep = _ep()
    if field == "observations":
        ep["observations"][2, 1] = np.nan
    elif field == "rewards":
        ep["rewards"] = np.array([0.0, np.inf, 0.0])
    elif field == "actions":
        ep["actions"] = np.full((3, 1), np.nan, dtype=np.float32)
    return ep


@pytest.mark.parametrize("field", ["observations", "rewards", "actions"])
def test_non_finite_values_name_episode_and_field(make_minari, field):
    ds = make_minari([_ep(), _bad(field)], OBS, ACT)
    with pytest.raises(data.DataError, match=rf"episode 1, field '{field}'.*finite"):
        data.to_transitions(ds)


def test_drop_invalid_drops_and_reports(make_minari):
    ds = make_minari([_ep(), _bad("observations"), _ep(2)], OBS, ACT)
    with pytest.warns(UserWarning, match="dropped 1 episode"):
        tr = data.to_transitions(ds, drop_invalid=True)
    assert len(tr) == 5 and set(tr.episode_ids.tolist()) == {0, 2}
    assert tr.dropped[0][0] == 1 and "observations" in tr.dropped[0][1]
    with pytest.warns(UserWarning):
        w = data.to_windows(ds, 2, drop_invalid=True)
    assert set(w.episode_ids.tolist()) == {0, 2} and w.dropped


def test_length_mismatch(make_minari):
    ep = _ep()
    ep["rewards"] = np.ones(2)
    ds = make_minari([_ep(), ep], OBS, ACT)
    with pytest.raises(data.DataError, match=r"episode 1, field 'rewards': expected length 3"):
        data.to_transitions(ds)


def _truncate_episode_on_disk(ds, episode: int) -> None:
    """Rewrite one stored episode as zero steps (Minari's writer refuses empty episodes; files can have them)."""
    import h5py

    path = ds.storage.data_path / "main_data.hdf5"
    with h5py.File(path, "a") as f:
        group = f[f"episode_{episode}"]
        for key in ("actions", "rewards", "terminations", "truncations", "observations"):
            arr = group[key][:1] if key == "observations" else group[key][:0]
            del group[key]
            group.create_dataset(key, data=arr)
        group.attrs["total_steps"] = 0


def test_zero_step_episode(make_minari):
    ds = make_minari([_ep(), _ep()], OBS, ACT)
    _truncate_episode_on_disk(ds, 1)
    with pytest.raises(data.DataError, match=r"episode 1, field 'actions'.*no steps"):
        data.to_windows(data.load_dataset(ds.storage.data_path), 4)


def test_empty_dataset(make_minari):
    ds = make_minari([], OBS, ACT)
    with pytest.raises(data.DataError, match=r"dataset, field 'episodes'.*empty"):
        data.to_transitions(ds)


def test_space_mismatch(make_minari):
    ds = make_minari([_ep()], OBS, ACT)
    with pytest.raises(data.DataError, match=r"field 'observation_space': expected .*\(3,\).*got .*\(2,\)"):
        data.check_spaces(ds, observation_space=spaces.Box(-1, 1, (3,), np.float32))
    with pytest.raises(data.DataError, match=r"field 'action_space'"):
        data.check_spaces(ds, action_space=spaces.Box(-2, 2, (1,), np.float32))
    wrong = data.ObsFlattener.from_space(spaces.Box(-1, 1, (5,), np.float32))
    with pytest.raises(data.DataError, match=r"episode 0.*trailing shape \(5,\)"):
        data.to_transitions(ds, flattener=wrong)


def test_missing_dataset_id():
    with pytest.raises(data.DataError, match="dataset: expected"):
        data.load_dataset("nobody/nothing-v0")


def test_discrete_actions_are_named(make_minari):
    ep = _ep()
    ep["actions"] = np.zeros(3, dtype=np.int64)
    ds = make_minari([ep], OBS, spaces.Discrete(3))
    with pytest.raises(data.DataError, match=r"action_space field .*expected a gymnasium Box, got Discrete"):
        data.to_transitions(ds)


def test_out_of_space_actions_name_episode_and_field(make_minari) -> None:  # type: ignore[no-untyped-def]
    import numpy as np
    import pytest
    from gymnasium import spaces

    from diffagents.data import DataError, to_transitions

    obs_space = spaces.Box(-1, 1, (2,), np.float32)
    act_space = spaces.Box(-1, 1, (1,), np.float32)

    def episode(scale: float) -> dict[str, np.ndarray]:
        return {"observations": np.zeros((4, 2), np.float32), "actions": np.full((3, 1), 0.5 * scale, np.float32),
                "rewards": np.zeros(3), "terminations": np.zeros(3, bool), "truncations": np.array([0, 0, 1], bool)}

    ds = make_minari([episode(1.0), episode(3.0)], obs_space, act_space)
    with pytest.raises(DataError, match=r"episode 1.*actions.*action space"):
        to_transitions(ds)
    with pytest.warns(UserWarning):
        tr = to_transitions(ds, drop_invalid=True)
    assert len(tr.actions) == 3
