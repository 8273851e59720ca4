"""Batch builders by batch spec (:mod:`diffagents.core.contract`), in an agent's normalised space, over a Minari
dataset (device-resident samplers the agents train from: planner windows for Diffuser / Decision Diffuser,
observation-history / action-chunk windows for Diffusion Policy and its students) and over a Tianshou replay buffer
(the same specs, gathered per batch for :mod:`diffagents.wrappers.tianshou`)."""

from __future__ import annotations

from typing import Any

import numpy as np


def attach_windows(agent: Any, horizon: int, *, discount: float, termination_penalty: float | None,
                   use_padding: bool) -> Any:
    """Build a device-resident window sampler for ``agent.dataset`` in the agent's normalised space.

    Observations go through the agent's flattener and observation normalizer (fitted here on real steps if not
    loaded from a checkpoint) and actions are scaled to [-1, 1]; padded steps are zero in normalised space
    (Diffuser's convention) and carry ``mask = 0``.

    Returns:
        The :class:`~diffagents.data.TrajectoryWindows` (its ``flat`` arrays normalised) and sets
        ``agent._sampler``.
    """
    from diffagents.data import WindowSampler, to_windows

    windows = to_windows(agent.dataset, horizon, discount=discount, termination_penalty=termination_penalty,
                         use_padding=use_padding, flattener=agent.flattener)
    flat = dict(windows.flat)
    real = flat["mask"] > 0
    if "obs" not in agent.normalizers:
        agent.normalizers["obs"] = agent.fit_obs_normalizer(flat["observations"][real])
    obs = agent.normalize_obs(flat["observations"])
    obs[~real] = 0.0
    act = agent.scale_action(flat["actions"])
    act[~real] = 0.0
    flat["observations"], flat["actions"] = obs.astype(np.float32), act
    agent._sampler = WindowSampler(flat, windows.index, horizon, device=agent.device)
    return windows


def chunk_window_rows(lengths: np.ndarray, obs_horizon: int, pred_horizon: int
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Edge-padded rows for chunk windows: ``(episode of each row, step of each row, window start rows)``.

    Each episode of ``T`` steps becomes ``T + Tp - 1`` rows: ``To - 1`` copies of step 0, steps ``0..T-1`` and
    ``Tp - To`` copies of step ``T - 1``. The window of current step ``s`` starts at row ``offset + s``.
    """
    rows_per_ep = lengths + pred_horizon - 1
    offsets = np.concatenate([[0], np.cumsum(rows_per_ep)[:-1]]).astype(np.int64)
    row_ep = np.repeat(np.arange(len(lengths)), rows_per_ep)  # (R,)
    k = np.arange(len(row_ep), dtype=np.int64) - offsets[row_ep]  # (R,) row within its episode
    step = np.clip(k - (obs_horizon - 1), 0, lengths[row_ep] - 1)  # (R,)
    starts = np.concatenate([off + np.arange(n) for off, n in zip(offsets, lengths)]).astype(np.int64)  # (M,)
    return row_ep, step, starts


def attach_chunk_windows(agent: Any, obs_horizon: int, pred_horizon: int) -> None:
    """Set ``agent._sampler`` to a window sampler of ``(obs (B, Tp, O), actions (B, Tp, A))`` in normalised space
    (fitting the observation normalizer on the real observations if not loaded)."""
    from diffagents.data import WindowSampler, read_episodes

    table = read_episodes(agent.dataset, flattener=agent.flattener)
    row_ep, step, starts = chunk_window_rows(table.lengths, obs_horizon, pred_horizon)
    if "obs" not in agent.normalizers:
        agent.normalizers["obs"] = agent.fit_obs_normalizer(table.observations)
    obs = agent.normalize_obs(table.observations[table.obs_offsets[row_ep] + step])
    act = agent.scale_action(table.actions[table.step_offsets[row_ep] + step])
    agent._sampler = WindowSampler({"obs": obs, "actions": act}, starts, pred_horizon, device=agent.device)


# ---------------------------------------------------------------------------------------------- replay buffers
# The same batch specs gathered from a Tianshou ``ReplayBuffer`` (duck-typed: ``obs``, ``act``, ``rew``, ``done``,
# ``terminated``, ``next``, ``prev``; tianshou is not imported here), for :mod:`diffagents.wrappers.tianshou`.


def buffer_returns_to_go(buffer: Any, discount: float, termination_penalty: float | None = None) -> np.ndarray:
    """Discounted returns-to-go ``(N,)`` of every step of ``buffer`` (episodes end where ``done``; the last,
    unfinished one at the buffer's end), with ``termination_penalty`` added to terminal rewards (Diffuser)."""
    from diffagents.data.windows import discounted_returns

    n = len(buffer)
    rew = np.asarray(buffer.rew[:n], dtype=np.float32).copy()
    if termination_penalty is not None:
        rew[np.asarray(buffer.terminated[:n], dtype=bool)] += termination_penalty
    ends = np.flatnonzero(np.asarray(buffer.done[:n], dtype=bool))
    if len(ends) == 0 or ends[-1] != n - 1:
        ends = np.r_[ends, n - 1]
    lengths = np.diff(np.r_[-1, ends])
    return discounted_returns(rew, lengths, discount)  # type: ignore[no-any-return]


def buffer_windows(buffer: Any, indices: np.ndarray, horizon: int, normalize_obs: Any) -> dict[str, np.ndarray]:
    """The ``windows`` spec from ``buffer``: ``horizon`` steps from each index, following ``buffer.next``;
    steps past an episode's end are masked and zero (Diffuser's convention, as :func:`attach_windows`).
    Needs ``returns_to_go`` in the buffer (:func:`buffer_returns_to_go`)."""
    idx = [np.asarray(indices)]
    valid = [np.ones(len(indices), dtype=bool)]
    for _ in range(horizon - 1):
        prev = idx[-1]
        idx.append(buffer.next(prev))
        valid.append(valid[-1] & ~np.asarray(buffer.done[prev], dtype=bool))
    rows = np.stack(idx, axis=1)  # (B, H)
    mask = np.stack(valid, axis=1)  # (B, H)
    obs = normalize_obs(np.asarray(buffer.obs[rows], dtype=np.float32))
    obs[~mask] = 0.0
    act = np.asarray(buffer.act[rows], dtype=np.float32)
    act[~mask] = 0.0
    rtg = np.asarray(buffer.returns_to_go[rows], dtype=np.float32) * mask
    return {"observations": obs, "actions": act, "returns_to_go": rtg, "mask": mask.astype(np.float32)}


def buffer_chunks(buffer: Any, indices: np.ndarray, obs_horizon: int, pred_horizon: int, normalize_obs: Any
                  ) -> dict[str, np.ndarray]:
    """The ``chunks`` spec from ``buffer``: rows ``s - (To - 1) .. s + Tp - To`` around each index;
    ``buffer.prev`` / ``buffer.next`` stop at episode boundaries, which is exactly the edge padding of
    :func:`attach_chunk_windows`."""
    before = [np.asarray(indices)]
    for _ in range(obs_horizon - 1):
        before.insert(0, buffer.prev(before[0]))
    after = [before[-1]]
    for _ in range(pred_horizon - obs_horizon):
        after.append(buffer.next(after[-1]))
    rows = np.stack(before + after[1:], axis=1)  # (B, Tp)
    return {"obs": normalize_obs(np.asarray(buffer.obs[rows], dtype=np.float32)),
            "actions": np.asarray(buffer.act[rows], dtype=np.float32)}


def buffer_transitions(batch: Any, normalize_obs: Any) -> dict[str, np.ndarray]:
    """The ``transitions`` spec from a sampled buffer batch (``obs``, ``act``, ``rew``, ``obs_next``,
    ``terminated``)."""
    return {"obs": normalize_obs(np.asarray(batch.obs, dtype=np.float32)),
            "action": np.asarray(batch.act, dtype=np.float32), "reward": np.asarray(batch.rew, dtype=np.float32),
            "next_obs": normalize_obs(np.asarray(batch.obs_next, dtype=np.float32)),
            "terminated": np.asarray(batch.terminated, dtype=np.float32)}
