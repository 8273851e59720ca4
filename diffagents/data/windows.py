"""Episodes -> fixed-horizon trajectory windows for planners (Diffuser, Decision Diffuser, MADiff).

Conventions (following Diffuser's ``SequenceDataset``, Janner et al. 2022, with an explicit mask):

* A window of horizon ``H`` starts at every step ``s`` of every episode: ``s in [0, T - 1]`` with
  ``use_padding=True``, ``s in [0, T - H]`` without (episodes shorter than ``H`` then give no window).
* Steps past the episode end are padding: ``mask = 0``; actions, rewards, returns-to-go and terminals are 0;
  observations are 0 (``pad_mode="zeros"``, Diffuser's choice) or the episode's final observation
  (``pad_mode="edge"``, an absorbing state). Losses should weight by ``mask``.
* ``returns_to_go[k] = sum_{j >= k} gamma^(j - k) r_j`` over the rest of the *episode* (not just the window).
  With ``termination_penalty`` set, it is added to the reward of each terminated (not truncated) step
  before returns are computed (Diffuser adds -100 on terminal locomotion steps). Decision Diffuser conditions
  on a window's first return-to-go.
* ``terminals`` is True only on real terminated steps.

Windows are stored compactly (one padded copy of each episode plus window start indices) and materialised on
demand, so a 1M-step dataset with ``H = 128`` does not need ``1M x 128`` rows in memory. Use
:meth:`TrajectoryWindows.sampler` to draw batches directly on the training device.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import minari
import numpy as np
from gymnasium import spaces
from scipy.signal import lfilter

from diffagents.data.episodes import EpisodeTable, read_episodes
from diffagents.data.errors import DataError
from diffagents.data.flatten import ObsFlattener

if TYPE_CHECKING:
    from diffagents.data.sampler import WindowSampler

WINDOW_FIELDS = ("observations", "actions", "rewards", "returns_to_go", "mask", "terminals")


def discounted_returns(rewards: np.ndarray, lengths: np.ndarray, discount: float) -> np.ndarray:
    """Per-episode discounted reward-to-go of concatenated episodes.

    Args:
        rewards: ``(sum(T_i),)`` rewards of consecutive episodes.
        lengths: ``(E,)`` episode lengths.
        discount: ``gamma`` in ``[0, 1]``.

    Returns:
        ``(sum(T_i),)`` float32 ``sum_{j>=k} gamma^(j-k) r_j`` within each episode.
    """
    out = np.empty(len(rewards), dtype=np.float64)
    ends = np.cumsum(lengths)
    for start, end in zip(ends - lengths, ends):  # one vectorised IIR filter per episode
        seg = rewards[start:end].astype(np.float64)[::-1]
        out[start:end] = lfilter([1.0], [1.0, -discount], seg)[::-1]
    return out.astype(np.float32)


@dataclass
class TrajectoryWindows:
    """Horizon-``H`` windows over a dataset (see the module docstring for the conventions).

    Materialised views (``(M, H, ...)``; with ``joint=True`` observations/actions are ``(M, N, H, D)``):
    ``observations``, ``actions``, ``rewards``, ``returns_to_go``, ``mask`` (float32, 1 = real step),
    ``terminals`` (bool).

    Attributes:
        flat: Padded per-episode arrays, keyed by :data:`WINDOW_FIELDS` (rows of all episodes in turn).
        index: ``(M,)`` row of each window's first step in ``flat``.
        horizon: ``H``.
        episode_ids: ``(M,)`` Minari episode id of each window.
        start: ``(M,)`` step of the episode where each window starts.
        observation_space: Flat observation Box (per agent when ``joint``).
        action_space: Flat action Box (per agent when ``joint``).
        flattener: Observation flattener used.
        discount: Discount used for ``returns_to_go``.
        joint: Whether observations/actions carry an agent axis (multi-agent datasets).
        agent_ids: Agent order of the agent axis (``joint`` only).
        dropped: ``(episode_id, reason)`` of episodes dropped with ``drop_invalid=True``.
    """

    flat: dict[str, np.ndarray]
    index: np.ndarray
    horizon: int
    episode_ids: np.ndarray
    start: np.ndarray
    observation_space: spaces.Box
    action_space: spaces.Box
    flattener: ObsFlattener
    discount: float
    joint: bool = False
    agent_ids: list[str] = field(default_factory=list)
    dropped: list[tuple[int, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.index.shape[0])

    def _gather(self, name: str) -> np.ndarray:
        rows = self.index[:, None] + np.arange(self.horizon)  # (M, H)
        out = self.flat[name][rows]  # (M, H, ...)
        if self.joint and name in ("observations", "actions"):
            out = np.swapaxes(out, 1, 2)  # (M, H, N, D) -> (M, N, H, D)
        return out

    observations = property(lambda self: self._gather("observations"), doc="(M, H, obs_dim) float32")
    actions = property(lambda self: self._gather("actions"), doc="(M, H, act_dim) float32")
    rewards = property(lambda self: self._gather("rewards"), doc="(M, H) float32, penalty included")
    returns_to_go = property(lambda self: self._gather("returns_to_go"), doc="(M, H) float32")
    mask = property(lambda self: self._gather("mask"), doc="(M, H) float32, 1 = real step")
    terminals = property(lambda self: self._gather("terminals"), doc="(M, H) bool")

    def as_arrays(self) -> dict[str, np.ndarray]:
        """Materialise every field (memory ``M x H x D``; prefer :meth:`sampler` for large datasets)."""
        return {name: self._gather(name) for name in WINDOW_FIELDS} | {
            "episode_ids": self.episode_ids, "start": self.start,
        }

    def sampler(self, device: str = "cpu") -> WindowSampler:
        """A :class:`~diffagents.data.sampler.WindowSampler` holding the padded arrays on ``device``."""
        from diffagents.data.sampler import WindowSampler

        return WindowSampler(self.flat, self.index, self.horizon, device=device, joint=self.joint)


def table_to_windows(
    table: EpisodeTable, horizon: int, *, discount: float = 0.99, termination_penalty: float | None = None,
    use_padding: bool = True, pad_mode: str = "zeros", joint: bool = False, agent_ids: list[str] | None = None,
) -> TrajectoryWindows:
    """Build :class:`TrajectoryWindows` from an :class:`EpisodeTable` (no per-sample Python loops)."""
    if horizon < 1:
        raise DataError(f"horizon: expected an integer >= 1, got {horizon}")
    if not 0.0 <= discount <= 1.0:
        raise DataError(f"discount: expected a value in [0, 1], got {discount}")
    if pad_mode not in ("zeros", "edge"):
        raise DataError(f"pad_mode: expected 'zeros' or 'edge', got {pad_mode!r}")
    lengths = table.lengths
    pad = horizon - 1 if use_padding else 0
    rewards = table.rewards.copy()
    if termination_penalty is not None:
        rewards[table.terminations] += np.float32(termination_penalty)
    rtg = discounted_returns(rewards, lengths, discount)

    rows_per_ep = lengths + pad
    row_offsets = np.concatenate([[0], np.cumsum(rows_per_ep)[:-1]]).astype(np.int64)
    row_ep = np.repeat(np.arange(len(lengths)), rows_per_ep)  # (R,) episode of each padded row
    k = np.arange(len(row_ep), dtype=np.int64) - row_offsets[row_ep]  # (R,) step within episode
    real = k < lengths[row_ep]
    step = table.step_offsets[row_ep] + np.minimum(k, lengths[row_ep] - 1)  # clamped step index
    obs_k = np.minimum(k, lengths[row_ep]) if pad_mode == "edge" else np.minimum(k, lengths[row_ep] - 1)
    obs = table.observations[table.obs_offsets[row_ep] + obs_k]
    if pad_mode == "zeros":
        obs[~real] = 0.0
    flat = {
        "observations": obs,
        "actions": np.where(_bcast(real, table.actions), table.actions[step], 0.0).astype(np.float32),
        "rewards": np.where(real, rewards[step], 0.0).astype(np.float32),
        "returns_to_go": np.where(real, rtg[step], 0.0).astype(np.float32),
        "mask": real.astype(np.float32),
        "terminals": real & table.terminations[step],
    }
    n_windows = lengths if use_padding else np.maximum(lengths - horizon + 1, 0)
    win_ep = np.repeat(np.arange(len(lengths)), n_windows)  # (M,)
    starts = np.arange(len(win_ep), dtype=np.int64) - np.repeat(np.cumsum(n_windows) - n_windows, n_windows)
    if len(win_ep) == 0:
        raise DataError(
            f"horizon: expected at most the longest episode length {int(lengths.max())} when "
            f"use_padding=False, got {horizon} (no window fits)"
        )
    obs_space = table.flattener.flat_space
    act_space = table.action_flattener.flat_space
    if joint:
        n = len(agent_ids or [])
        obs_space = _per_agent_box(obs_space, n)
        act_space = _per_agent_box(act_space, n)
    return TrajectoryWindows(
        flat=flat, index=row_offsets[win_ep] + starts, horizon=horizon, episode_ids=table.episode_ids[win_ep],
        start=starts, observation_space=obs_space, action_space=act_space, flattener=table.flattener,
        discount=discount, joint=joint, agent_ids=list(agent_ids or []), dropped=list(table.dropped),
    )


def _bcast(mask: np.ndarray, like: np.ndarray) -> np.ndarray:
    return mask.reshape(mask.shape + (1,) * (like.ndim - 1))


def _per_agent_box(box: spaces.Box, n_agents: int) -> spaces.Box:
    low, high = box.low.reshape(n_agents, -1)[0], box.high.reshape(n_agents, -1)[0]
    return spaces.Box(low, high, dtype=np.float32)


def to_windows(
    dataset: str | os.PathLike[str] | minari.MinariDataset, horizon: int, *, discount: float = 0.99,
    termination_penalty: float | None = None, use_padding: bool = True, drop_invalid: bool = False,
    flattener: ObsFlattener | None = None, pad_mode: str = "zeros",
) -> TrajectoryWindows:
    """Convert a Minari dataset into horizon-``H`` trajectory windows.

    Args:
        dataset: A ``MinariDataset``, a Minari id or a local dataset folder.
        horizon: Window length ``H``.
        discount: ``gamma`` for ``returns_to_go``.
        termination_penalty: Added to the reward of terminated steps (e.g. -100 as in Diffuser locomotion).
        use_padding: Start windows at every step and pad past episode ends (True), or only where a full
            window fits (False).
        drop_invalid: Drop (and report) invalid episodes instead of raising :class:`DataError`.
        flattener: Observation flattener (default: from the dataset).
        pad_mode: ``"zeros"`` (Diffuser) or ``"edge"`` (repeat the final observation) for padded steps.

    Returns:
        The windows.
    """
    table = read_episodes(dataset, drop_invalid=drop_invalid, flattener=flattener)
    return table_to_windows(
        table, horizon, discount=discount, termination_penalty=termination_penalty,
        use_padding=use_padding, pad_mode=pad_mode,
    )
