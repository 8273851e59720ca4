"""Episodes -> one-step transitions ``(obs, action, reward, next_obs, terminated, truncated)``.

Bootstrapping convention: a TD target must bootstrap from ``next_observations`` unless ``terminations`` is
True. ``truncations`` (time limits, forced episode splits) are *not* terminal; they are kept only so that
callers can tell episode ends apart.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import minari
import numpy as np
from gymnasium import spaces

from diffagents.data.episodes import EpisodeTable, read_episodes
from diffagents.data.flatten import ObsFlattener


@dataclass
class Transitions:
    """Flat one-step transitions of a dataset.

    Attributes:
        observations: ``(N, obs_dim)`` float32 flat observations.
        actions: ``(N, act_dim)`` float32 actions (env units, not rescaled).
        rewards: ``(N,)`` float32.
        next_observations: ``(N, obs_dim)`` float32.
        terminations: ``(N,)`` bool, True where the step ended the MDP (no bootstrap).
        truncations: ``(N,)`` bool, True where the episode was cut (bootstrap anyway).
        episode_ids: ``(N,)`` int64 Minari episode id of each step.
        observation_space: The flat ``Box`` of the observations.
        action_space: The (flat) action ``Box``.
        flattener: How the dataset's observations were flattened; save it with the model.
        dropped: ``(episode_id, reason)`` of episodes dropped with ``drop_invalid=True``.
    """

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_observations: np.ndarray
    terminations: np.ndarray
    truncations: np.ndarray
    episode_ids: np.ndarray
    observation_space: spaces.Box
    action_space: spaces.Box
    flattener: ObsFlattener
    dropped: list[tuple[int, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.rewards.shape[0])

    @property
    def dones(self) -> np.ndarray:
        """``(N,)`` float32 ``terminations`` (the mask that stops bootstrapping)."""
        return self.terminations.astype(np.float32)

    def as_arrays(self) -> dict[str, np.ndarray]:
        """The per-step arrays, keyed by field name (ready for :class:`TensorSampler`)."""
        return {
            "observations": self.observations, "actions": self.actions, "rewards": self.rewards,
            "next_observations": self.next_observations, "terminations": self.terminations,
            "truncations": self.truncations, "episode_ids": self.episode_ids,
        }


def table_to_transitions(table: EpisodeTable) -> Transitions:
    """Slice an :class:`EpisodeTable` into transitions without per-sample loops."""
    step_episode = np.repeat(np.arange(len(table.lengths)), table.lengths)  # (N,) episode index per step
    obs_index = np.arange(len(step_episode), dtype=np.int64) + step_episode  # skip one final obs per episode
    return Transitions(
        observations=table.observations[obs_index],
        actions=table.actions,
        rewards=table.rewards,
        next_observations=table.observations[obs_index + 1],
        terminations=table.terminations,
        truncations=table.truncations,
        episode_ids=table.episode_ids[step_episode],
        observation_space=table.flattener.flat_space,
        action_space=table.action_flattener.flat_space,
        flattener=table.flattener,
        dropped=list(table.dropped),
    )


def to_transitions(
    dataset: str | os.PathLike[str] | minari.MinariDataset, *, drop_invalid: bool = False,
    flattener: ObsFlattener | None = None,
) -> Transitions:
    """Convert a Minari dataset into flat transitions.

    Args:
        dataset: A ``MinariDataset``, a Minari id or a local dataset folder.
        drop_invalid: Drop invalid episodes (and report them) instead of raising :class:`DataError`.
        flattener: Observation flattener to use (default: from the dataset's observation space). Pass the
            one saved with a model to guarantee the same layout.

    Returns:
        The transitions.
    """
    return table_to_transitions(read_episodes(dataset, drop_invalid=drop_invalid, flattener=flattener))
