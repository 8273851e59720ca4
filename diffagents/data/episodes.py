"""Load Minari datasets and read their episodes into validated, concatenated numpy arrays.

Everything downstream (transitions, windows, joint multi-agent arrays) starts from :class:`EpisodeTable`.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import minari
import numpy as np
from gymnasium import spaces

from diffagents.data import cache
from diffagents.data.errors import DataError, episode_error
from diffagents.data.flatten import ObsFlattener


def load_dataset(dataset: str | os.PathLike[str] | minari.MinariDataset) -> minari.MinariDataset:
    """Resolve a dataset given as a ``MinariDataset``, a Minari id or a local dataset folder.

    Args:
        dataset: A ``MinariDataset`` (returned as is); a path to a Minari dataset folder (the one holding
            ``data/metadata.json``, or that ``data`` folder itself); or an id for :func:`minari.load_dataset`
            (``MINARI_DATASETS_PATH`` is honoured, nothing is downloaded).

    Returns:
        The dataset.

    Raises:
        DataError: If nothing matches.
    """
    if isinstance(dataset, minari.MinariDataset):
        return dataset
    path = Path(os.fspath(dataset)).expanduser()
    for data_dir in (path / "data", path):
        if (data_dir / "metadata.json").is_file():
            return minari.MinariDataset(data_dir)
    try:
        return minari.load_dataset(str(dataset))
    except (FileNotFoundError, ValueError) as exc:
        raise DataError(
            f"dataset: expected a MinariDataset, a local Minari dataset folder or a local Minari id, got "
            f"{str(dataset)!r} ({exc}). Local recipes are built with diffagents.data.make_dataset(id)."
        ) from exc


def check_spaces(
    dataset: minari.MinariDataset, env: gym.Env | None = None, *,
    observation_space: spaces.Space | None = None, action_space: spaces.Space | None = None,
) -> None:
    """Check that a dataset's spaces equal those of the env (or the given spaces) an agent is built for.

    Raises:
        DataError: Naming the field (``observation_space`` / ``action_space``), expected and actual space.
    """
    obs_space = observation_space if observation_space is not None else getattr(env, "observation_space", None)
    act_space = action_space if action_space is not None else getattr(env, "action_space", None)
    for name, expected in (("observation_space", obs_space), ("action_space", act_space)):
        if expected is not None and getattr(dataset, name) != expected:
            raise episode_error(None, name, repr(expected), repr(getattr(dataset, name)))


@dataclass
class EpisodeTable:
    """All kept episodes of a dataset, concatenated.

    Attributes:
        observations: ``(sum(T_i + 1), obs_dim)`` float32, each episode's ``T_i + 1`` observations in turn.
        actions: ``(sum(T_i), act_dim)`` float32.
        rewards: ``(sum(T_i),)`` float32.
        terminations: ``(sum(T_i),)`` bool.
        truncations: ``(sum(T_i),)`` bool.
        lengths: ``(E,)`` int64 number of steps ``T_i`` of each kept episode.
        episode_ids: ``(E,)`` int64 Minari episode ids.
        flattener: Observation flattener used.
        action_flattener: Action flattener used (concatenates agents for Dict action spaces).
        dropped: ``(episode_id, reason)`` for every episode dropped with ``drop_invalid=True``.
    """

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminations: np.ndarray
    truncations: np.ndarray
    lengths: np.ndarray
    episode_ids: np.ndarray
    flattener: ObsFlattener
    action_flattener: ObsFlattener
    dropped: list[tuple[int, str]] = field(default_factory=list)

    @property
    def step_offsets(self) -> np.ndarray:
        """``(E,)`` index of each episode's first step in the step arrays."""
        return np.concatenate([[0], np.cumsum(self.lengths)[:-1]]).astype(np.int64)

    @property
    def obs_offsets(self) -> np.ndarray:
        """``(E,)`` index of each episode's first observation in :attr:`observations`."""
        return self.step_offsets + np.arange(len(self.lengths), dtype=np.int64)


def _check_episode(ep: Any, obs: np.ndarray, act: np.ndarray, act_space: Any = None) -> None:
    """Validate one episode's lengths, values and action bounds; raise :class:`DataError` naming the field."""
    eid = int(ep.id)
    steps = len(act)
    if steps == 0:
        raise episode_error(eid, "actions", "at least one step", "an episode with no steps")
    fields: dict[str, np.ndarray] = {
        "observations": obs, "actions": act, "rewards": np.asarray(ep.rewards),
        "terminations": np.asarray(ep.terminations), "truncations": np.asarray(ep.truncations),
    }
    for name, arr in fields.items():
        want = steps + 1 if name == "observations" else steps
        if len(arr) != want:
            raise episode_error(eid, name, f"length {want} (actions have {steps} steps)", f"length {len(arr)}")
    for name in ("observations", "actions", "rewards"):
        arr = fields[name]
        bad = ~np.isfinite(arr.reshape(len(arr), -1)).all(axis=1)
        if bad.any():
            idx = int(np.flatnonzero(bad)[0])
            raise episode_error(eid, name, "finite values", f"NaN/Inf at step {idx} ({int(bad.sum())} steps)")
    if act_space is not None and np.issubdtype(act.dtype, np.floating):
        low, high = np.asarray(act_space.low, dtype=np.float64), np.asarray(act_space.high, dtype=np.float64)
        tol = 1e-5 * np.maximum(1.0, np.abs(np.where(np.isfinite(high - low), high - low, 1.0)))
        a = act.reshape(len(act), -1).astype(np.float64)
        outside = ((a < low.reshape(-1) - tol.reshape(-1)) | (a > high.reshape(-1) + tol.reshape(-1))).any(axis=1)
        if outside.any():
            idx = int(np.flatnonzero(outside)[0])
            raise episode_error(eid, "actions", f"values inside the action space [{low.min()}, {high.max()}]",
                                f"{a[idx].tolist()} at step {idx} ({int(outside.sum())} steps outside)")


def iter_valid_episodes(
    dataset: minari.MinariDataset, flattener: ObsFlattener, action_flattener: ObsFlattener,
    drop_invalid: bool, dropped: list[tuple[int, str]],
) -> Iterator[tuple[Any, np.ndarray, np.ndarray]]:
    """Yield ``(episode, flat_obs, flat_actions)`` for valid episodes; raise or record invalid ones."""
    for ep in dataset.iterate_episodes():
        try:
            obs = flattener(ep.observations)
            act = action_flattener(ep.actions)
            _check_episode(ep, obs, act, getattr(action_flattener, "flat_space", None))
        except DataError as exc:
            msg = str(exc) if str(exc).startswith("episode") else f"episode {int(ep.id)}, {exc}"
            if not drop_invalid:
                raise DataError(msg) from None
            dropped.append((int(ep.id), msg))
            continue
        yield ep, obs, act


def read_episodes(
    dataset: str | os.PathLike[str] | minari.MinariDataset, *, drop_invalid: bool = False,
    flattener: ObsFlattener | None = None, action_flattener: ObsFlattener | None = None,
    obs_transform: Callable[[Any], np.ndarray] | None = None, use_cache: bool = True,
) -> EpisodeTable:
    """Read, flatten and validate every episode of ``dataset``.

    Args:
        dataset: Anything :func:`load_dataset` accepts.
        drop_invalid: Drop invalid episodes (reported with a warning and in ``dropped``) instead of raising.
        flattener: Observation flattener (default: built from the dataset's observation space).
        action_flattener: Action flattener (default: built from the dataset's action space).
        obs_transform: Optional replacement for ``flattener`` when reading observations; ``flattener`` is
            still recorded (disables the cache).
        use_cache: Reuse / write the flattened table in ``<dataset folder>/diffagents_cache``
            (see :mod:`diffagents.data.cache`); invalid episodes are reported again on every load.

    Returns:
        The concatenated :class:`EpisodeTable`.

    Raises:
        DataError: For an empty dataset, or (unless ``drop_invalid``) the first invalid episode.
    """
    ds = load_dataset(dataset)
    flat = flattener if flattener is not None else ObsFlattener.from_space(ds.observation_space)
    act_flat = (action_flattener if action_flattener is not None
                else ObsFlattener.from_space(ds.action_space, what="action_space"))
    reader = _TransformFlattener(flat, obs_transform) if obs_transform is not None else flat
    if ds.total_episodes == 0:
        raise episode_error(None, "episodes", "at least one episode", "an empty dataset (0 episodes)")
    key = {"obs": flat.to_dict(), "act": act_flat.to_dict(), "drop_invalid": drop_invalid,
           "validation": 2}  # bump when _check_episode changes so cached tables are validated again
    where = cache.cache_dir(ds, key) if use_cache and obs_transform is None else None
    cached = cache.load_cached(where)
    if cached is not None:
        arrays, dropped_c = cached
        _warn_dropped(dropped_c)
        return EpisodeTable(**arrays, flattener=flat, action_flattener=act_flat, dropped=dropped_c)
    dropped: list[tuple[int, str]] = []
    obs, act, rew, term, trunc, lengths, ids = [], [], [], [], [], [], []
    for ep, o, a in iter_valid_episodes(ds, reader, act_flat, drop_invalid, dropped):  # type: ignore[arg-type]
        obs.append(o)
        act.append(a)
        rew.append(np.asarray(ep.rewards, dtype=np.float32).reshape(-1))
        term.append(np.asarray(ep.terminations, dtype=bool).reshape(-1))
        trunc.append(np.asarray(ep.truncations, dtype=bool).reshape(-1))
        lengths.append(len(a))
        ids.append(int(ep.id))
    _warn_dropped(dropped)
    if not lengths:
        raise episode_error(None, "episodes", "at least one valid episode", f"none ({len(dropped)} dropped)")
    table = EpisodeTable(
        observations=np.concatenate(obs), actions=np.concatenate(act), rewards=np.concatenate(rew),
        terminations=np.concatenate(term), truncations=np.concatenate(trunc),
        lengths=np.asarray(lengths, dtype=np.int64), episode_ids=np.asarray(ids, dtype=np.int64),
        flattener=flat, action_flattener=act_flat, dropped=dropped,
    )
    cache.save_cached(where, {name: getattr(table, name) for name in cache.ARRAYS}, dropped)
    return table


def _warn_dropped(dropped: list[tuple[int, str]]) -> None:
    if dropped:
        warnings.warn(
            f"drop_invalid=True dropped {len(dropped)} episode(s): " + "; ".join(m for _, m in dropped[:5])
            + (" ..." if len(dropped) > 5 else ""), UserWarning, stacklevel=3,
        )


class _TransformFlattener:
    """Adapter calling a custom observation transform where a flattener is expected."""

    def __init__(self, flattener: ObsFlattener, transform: Callable[[Any], np.ndarray]) -> None:
        self.flattener = flattener
        self.transform = transform

    def __call__(self, obs: Any) -> np.ndarray:
        return self.transform(obs)
