"""Real transitions for SynthER (Lu et al. 2023, Sec. 3): the ``[s, a, r, s', terminal]`` arrays the generator
is fitted on, from a Minari dataset / id, :class:`~diffagents.data.Transitions`, an SB3 ``ReplayBuffer`` or a
dict of arrays, and the episode-start states of :meth:`~diffagents.agents.synthesis.synther.SynthER.as_env`.


The generator is typed ``Any`` here: :mod:`~diffagents.agents.synthesis.synther` imports this module, never the
reverse."""

from __future__ import annotations

from typing import Any

import numpy as np

from diffagents.core.agent_io import from_unit
from diffagents.data import ObsFlattener, load_dataset, to_transitions
from diffagents.spaces import spaces_equal

#: Keys of the env-unit transition dicts the generator fits on and samples.
FIELDS = ("observations", "actions", "rewards", "next_observations", "terminations")


def transition_arrays(gen: Any, data: Any) -> dict[str, np.ndarray]:
    """Env-unit arrays from a Minari dataset / id, ``Transitions``, SB3 ``ReplayBuffer`` or dict of arrays."""
    data = gen.dataset if data is None else data
    if data is None:
        raise ValueError("data: expected a Minari dataset, Transitions, an SB3 ReplayBuffer or a dict, got None")
    if isinstance(data, dict):
        missing = [k for k in FIELDS if k not in data]
        if missing:
            raise ValueError(f"data: dict is missing fields {missing}; expected {list(FIELDS)}")
        arrays = {k: np.asarray(data[k]) for k in FIELDS}
    elif hasattr(data, "pos") and hasattr(data, "buffer_size") and hasattr(data, "observations"):
        arrays = sb3_buffer_arrays(data, gen.flattener)
    elif hasattr(data, "as_arrays") and hasattr(data, "flattener"):
        if data.observations.shape[-1] != gen.obs_dim:
            raise ValueError(f"data: Transitions have obs dim {data.observations.shape[-1]}, expected "
                             f"{gen.obs_dim}; build them with to_transitions(ds, flattener=gen.flattener)")
        arrays = {k: getattr(data, k) for k in FIELDS}
    else:
        ds = load_dataset(data)
        for label, a, b in (("observation_space", ds.observation_space, gen.observation_space),
                            ("action_space", ds.action_space, gen.action_space)):
            if not spaces_equal(a, b):
                raise ValueError(f"{label}: the generator was built for {b} but the dataset has {a}")
        tr = to_transitions(ds, flattener=gen.flattener)
        arrays = {k: getattr(tr, k) for k in FIELDS}
    return arrays


def start_states(gen: Any, data: Any = None) -> np.ndarray:
    """Flat episode-start observations of ``data`` (all observations for buffers / dicts without episodes)."""
    data = gen.dataset if data is None else data
    if data is None:
        raise ValueError("dataset: as_env needs a dataset (or the generator's default dataset) for start states")
    if isinstance(data, dict) or hasattr(data, "pos"):
        return transition_arrays(gen, data)["observations"].reshape(-1, gen.obs_dim).astype(np.float32)
    if hasattr(data, "episode_ids"):
        _, first = np.unique(data.episode_ids, return_index=True)
        return np.asarray(data.observations[first], np.float32)
    from diffagents.data import read_episodes

    table = read_episodes(load_dataset(data), flattener=gen.flattener)
    return table.observations[table.obs_offsets].astype(np.float32)


def sb3_buffer_arrays(rb: Any, flattener: ObsFlattener) -> dict[str, np.ndarray]:
    """The filled part of an SB3 (Dict)ReplayBuffer as env-unit arrays (actions unscaled from [-1, 1]).

    Terminal flags are ``dones * (1 - timeouts)`` (SB3's bootstrap mask); with ``optimize_memory_usage`` the
    next observation is the following slot and the slot at ``pos`` of a full buffer is skipped, as SB3 does.
    """
    size = rb.buffer_size if rb.full else rb.pos
    idx = np.arange(size)
    if getattr(rb, "optimize_memory_usage", False) and rb.full:
        idx = idx[idx != rb.pos]
    if len(idx) == 0:
        raise ValueError("data: the replay buffer is empty")

    def rows(a: np.ndarray, at: np.ndarray = idx) -> np.ndarray:
        return a[at].reshape(len(at) * rb.n_envs, *a.shape[2:])  # (n, n_envs, ...) -> (n * n_envs, ...)

    def flat(obs: Any, at: np.ndarray = idx) -> np.ndarray:
        if isinstance(obs, dict):
            return flattener({k: rows(v, at) for k, v in obs.items()})
        return rows(obs, at).reshape(len(at) * rb.n_envs, -1).astype(np.float32)

    if getattr(rb, "optimize_memory_usage", False):
        nxt = flat(rb.observations, (idx + 1) % rb.buffer_size)
    else:
        nxt = flat(rb.next_observations)
    low, high = rb.action_space.low.reshape(-1), rb.action_space.high.reshape(-1)
    scaled = rows(rb.actions).reshape(-1, low.shape[0])
    return {"observations": flat(rb.observations), "actions": from_unit(scaled, low, high),
            "rewards": rows(rb.rewards), "next_observations": nxt,
            "terminations": rows(rb.dones * (1.0 - rb.timeouts)) > 0.5}

