"""Offline data: Minari loading, flattening, transitions, trajectory windows, normalizers, samplers and
local seeded dataset recipes.

Importing this package registers the toy Gymnasium envs (``diffagents/ToyMultimodal-v0``); recipes are
imported lazily on first use of :func:`make_dataset` / :func:`list_recipes` / :func:`reference_scores`.
"""

from __future__ import annotations

from typing import Any

from diffagents.data import envs  # noqa: F401  (registers diffagents/ToyMultimodal-v0)
from diffagents.data.episodes import EpisodeTable, check_spaces, load_dataset, read_episodes
from diffagents.data.errors import DataError
from diffagents.data.flatten import ObsFlattener
from diffagents.data.multiagent import agent_dataset, agent_ids_of, to_joint_arrays, to_joint_windows
from diffagents.data.normalizers import (
    CDFNormalizer,
    GaussianNormalizer,
    MinMaxNormalizer,
    Normalizer,
    make_normalizer,
    normalizer_from_state_dict,
)
from diffagents.data.sampler import TensorSampler, WindowSampler
from diffagents.data.transitions import Transitions, to_transitions
from diffagents.data.windows import TrajectoryWindows, discounted_returns, to_windows


def make_dataset(id: str, *, size: int | None = None, seed: int = 0, force: bool = False) -> Any:  # noqa: A002
    """Build or reuse a local seeded dataset; see :func:`diffagents.data.recipes.base.make_dataset`."""
    from diffagents.data.recipes import make_dataset as _make

    return _make(id, size=size, seed=seed, force=force)


def list_recipes() -> dict[str, str]:
    """Full recipe id -> short description."""
    from diffagents.data.recipes import list_recipes as _list

    return _list()


def reference_scores(dataset: Any) -> tuple[float, float] | None:
    """``(ref_min_score, ref_max_score)`` of a dataset (id, path or ``MinariDataset``), or ``None``."""
    from diffagents.data.recipes.base import reference_scores as _ref

    return _ref(load_dataset(dataset))


__all__ = [
    "CDFNormalizer", "DataError", "EpisodeTable", "GaussianNormalizer", "MinMaxNormalizer", "Normalizer",
    "ObsFlattener", "TensorSampler", "TrajectoryWindows", "Transitions", "WindowSampler", "agent_dataset", "agent_ids_of",
    "check_spaces", "discounted_returns", "list_recipes", "load_dataset", "make_dataset", "make_normalizer",
    "normalizer_from_state_dict", "read_episodes", "reference_scores", "to_joint_arrays", "to_joint_windows",
    "to_transitions", "to_windows",
]
