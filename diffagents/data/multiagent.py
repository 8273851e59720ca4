"""Multi-agent datasets (``Dict({agent_id: Box})`` spaces, one team reward per step) -> joint arrays.

Agent order is the Dict's key order (gymnasium sorts keys), recorded in ``agent_ids``. Every agent must have
the same observation size ``D`` and action size ``A`` (MPE has no agent death, so agents never disappear).
"""

from __future__ import annotations

import json
import os
import re
import warnings
from typing import Any

import minari
import numpy as np
from gymnasium import spaces

from diffagents.data.episodes import EpisodeTable, load_dataset, read_episodes
from diffagents.data.errors import DataError
from diffagents.data.flatten import ObsFlattener
from diffagents.data.transitions import table_to_transitions
from diffagents.data.windows import TrajectoryWindows, table_to_windows


def agent_ids_of(space: spaces.Space, field: str = "observation_space") -> list[str]:
    """Agent ids of a multi-agent Dict space, in flattening order.

    Raises:
        DataError: If ``space`` is not a Dict of equally shaped Boxes.
    """
    if not isinstance(space, spaces.Dict):
        raise DataError(f"{field}: expected a Dict of per-agent Box spaces, got {type(space).__name__}")
    shapes = {k: getattr(s, "shape", None) for k, s in space.spaces.items()}
    if any(not isinstance(s, spaces.Box) for s in space.spaces.values()) or len(set(shapes.values())) != 1:
        raise DataError(f"{field}: expected per-agent Box spaces of one shape, got {shapes}")
    return list(space.spaces.keys())


def _joint_table(dataset: minari.MinariDataset, drop_invalid: bool) -> tuple[EpisodeTable, list[str], int, int]:
    agents = agent_ids_of(dataset.observation_space)
    act_agents = agent_ids_of(dataset.action_space, "action_space")
    if agents != act_agents:
        raise DataError(f"action_space: expected agents {agents}, got {act_agents}")
    flat = ObsFlattener.from_space(dataset.observation_space, keys=agents)
    act_flat = ObsFlattener.from_space(dataset.action_space, keys=agents, what="action_space")
    table = read_episodes(dataset, drop_invalid=drop_invalid, flattener=flat, action_flattener=act_flat)
    n = len(agents)
    obs_dim, act_dim = flat.dim // n, act_flat.dim // n
    table.observations = table.observations.reshape(-1, n, obs_dim)  # (sum(T+1), N*D) -> (sum(T+1), N, D)
    table.actions = table.actions.reshape(-1, n, act_dim)  # (sum(T), N*A) -> (sum(T), N, A)
    return table, agents, obs_dim, act_dim


def to_joint_arrays(
    dataset: str | os.PathLike[str] | minari.MinariDataset, *, drop_invalid: bool = False,
) -> dict[str, Any]:
    """Joint per-step arrays of a multi-agent dataset.

    Returns:
        Dict with ``observations`` / ``next_observations`` ``(T_total, N, D)`` float32, ``actions``
        ``(T_total, N, A)`` float32, ``rewards`` ``(T_total,)`` (team reward), ``terminations`` /
        ``truncations`` ``(T_total,)`` bool, ``episode_ids`` ``(T_total,)``, ``episode_starts`` and
        ``episode_lengths`` ``(E,)`` (step offsets and lengths of kept episodes), ``agent_ids`` (list of
        str) and ``dropped`` (list of ``(episode_id, reason)``).
    """
    table, agents, _, _ = _joint_table(load_dataset(dataset), drop_invalid)
    tr = table_to_transitions(table)
    return {
        "observations": tr.observations, "next_observations": tr.next_observations, "actions": tr.actions,
        "rewards": tr.rewards, "terminations": tr.terminations, "truncations": tr.truncations,
        "episode_ids": tr.episode_ids, "episode_starts": table.step_offsets, "episode_lengths": table.lengths,
        "agent_ids": agents, "dropped": list(table.dropped),
    }


def to_joint_windows(
    dataset: str | os.PathLike[str] | minari.MinariDataset, horizon: int, *, discount: float = 0.99,
    use_padding: bool = True, drop_invalid: bool = False, pad_mode: str = "zeros",
) -> TrajectoryWindows:
    """Horizon-``H`` windows of a multi-agent dataset; observations/actions are ``(M, N, H, D)``.

    Rewards, returns-to-go, mask and terminals are the team's, ``(M, H)``. See :func:`to_windows`.
    """
    table, agents, _, _ = _joint_table(load_dataset(dataset), drop_invalid)
    return table_to_windows(
        table, horizon, discount=discount, use_padding=use_padding, pad_mode=pad_mode, joint=True,
        agent_ids=agents,
    )


def agent_dataset(
    dataset: str | os.PathLike[str] | minari.MinariDataset, agent: str, *, dataset_id: str | None = None,
) -> minari.MinariDataset:
    """One agent's view of a multi-agent dataset, as a single-agent Minari dataset (independent learners).

    Each episode keeps the agent's own observations and actions, the team reward and the episode's
    terminations / truncations, so any single-agent offline learner (ours or d3rlpy) can train an
    independent per-agent policy on it: the "independent BC / DiffusionQL" baselines of MADiff (Zhu et al.
    2023, Sec. 5). Built once and cached under ``dataset_id``; a cached copy is reused only if it was made
    from the same source dataset and agent.

    Args:
        dataset: A multi-agent Minari dataset (``Dict({agent_id: Box})`` spaces), its id or a local path.
        agent: The agent id to keep, e.g. ``"agent_0"``.
        dataset_id: Id of the new dataset; default ``<source namespace/name>-<agent>-v<version>``.

    Raises:
        DataError: If the dataset is not multi-agent, ``agent`` is not one of its agents, or a cached dataset
            with that id was made from other data.
    """
    from minari.data_collector import EpisodeBuffer

    from diffagents.data.locking import build_dataset_once

    ds = load_dataset(dataset)
    agents = agent_ids_of(ds.observation_space)
    agent_ids_of(ds.action_space, "action_space")
    if agent not in agents:
        raise DataError(f"agent: expected one of {agents}, got {agent!r}")
    source = ds.spec.dataset_id
    if dataset_id is None:
        match = re.fullmatch(r"(.+)-v(\d+)", source)
        dataset_id = f"{match.group(1)}-{agent}-v{match.group(2)}" if match else f"{source}-{agent}-v0"
    stamp = {"source": source, "agent": agent, "source_steps": int(ds.total_steps)}

    def ready(folder: Any) -> bool:
        meta = folder / "data" / "metadata.json"
        got = json.loads(meta.read_text()).get("diffagents_agent_view") if meta.is_file() else None
        if got is None:
            return False  # an incomplete folder: rebuilt
        if got != stamp:
            raise DataError(f"cached dataset {dataset_id!r} field 'diffagents_agent_view': expected {stamp}, got {got}")
        return True

    def create() -> None:
        buffers = [EpisodeBuffer(id=i, observations=ep.observations[agent], actions=ep.actions[agent],
                                 rewards=np.asarray(ep.rewards), terminations=np.asarray(ep.terminations),
                                 truncations=np.asarray(ep.truncations))
                   for i, ep in enumerate(ds.iterate_episodes())]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            out = minari.create_dataset_from_buffers(
                dataset_id, buffers,
                algorithm_name=f"{ds.storage.metadata.get('algorithm_name', 'unknown')} ({agent} view)",
                author="diffagents", author_email="diffagents@localhost",
                code_permalink="diffagents.data.multiagent.agent_dataset",
                observation_space=ds.observation_space[agent], action_space=ds.action_space[agent],
                description=f"Agent {agent!r} of {source}: its own observations and actions, the team reward.")
        out.storage.update_metadata({"diffagents_agent_view": stamp})

    build_dataset_once(dataset_id, ready, create)
    return minari.load_dataset(dataset_id)
