"""Agents, spaces and training data of MADiff (Zhu et al., NeurIPS 2024; see :mod:`diffagents.agents.multiagent.madiff`).

* :class:`AgentSpec`: the agents in planner order and their spaces (validated against the env, the dataset and
  checkpoints; errors name the agent and the field), joint observations ``{agent: obs}`` -> ``(E, N, D)`` and
  action scaling between env units and the inverse dynamics' ``[-1, 1]`` (or Discrete logits).
* :func:`read_joint_data`: joint windows ``(M, N, W, D)`` with team returns-to-go (Decision Diffuser's
  condition, Ajay et al. 2023 Eq. 4) and the inverse-dynamics transitions of a multi-agent Minari dataset;
  :func:`_prepend_history` pads episodes for ``K`` history steps (MADiff's ``use_zero_padding=False``).
* :func:`step_targets` / :func:`roll_history`: per-episode-step target returns and the act-time observation
  history carried in the :class:`~diffagents.execution.plan_cache.PlanCache`.
* :func:`make_parallel_env`: a PettingZoo Parallel env from an instance or a factory.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from diffagents.core.agent_io import from_unit, to_unit
from diffagents.execution.plan_cache import PlanCache


@dataclass
class AgentSpec:
    """The agents (in planner order) and their spaces: equally shaped Box observations, and all-Box (same
    shape, bounded) or all-Discrete (same ``n``) actions. Validation errors name the agent and the field."""

    agents: list[str]
    observation_spaces: dict[str, spaces.Box]
    action_spaces: dict[str, spaces.Space[Any]]

    def __post_init__(self) -> None:
        if not self.agents:
            raise ValueError("agents: expected at least one agent, got none")
        first = self.agents[0]
        obs0, act0 = self.observation_spaces.get(first), self.action_spaces.get(first)
        for a in self.agents:
            o, act = self.observation_spaces.get(a), self.action_spaces.get(a)
            if not isinstance(o, spaces.Box) or not isinstance(obs0, spaces.Box) or o.shape != obs0.shape:
                raise ValueError(f"observation_space[{a!r}]: expected a Box shaped like {first!r}'s {obs0}, got {o}")
            if isinstance(act, spaces.Box) and isinstance(act0, spaces.Box) and act.shape == act0.shape:
                if not (np.all(np.isfinite(act.low)) and np.all(np.isfinite(act.high))):
                    raise ValueError(f"action_space[{a!r}]: expected a bounded Box, got {act}")
            elif not (isinstance(act, spaces.Discrete) and isinstance(act0, spaces.Discrete) and act.n == act0.n):
                raise ValueError(f"action_space[{a!r}]: expected a Box or Discrete space like {first!r}'s {act0}, "
                                 f"got {act}")

    @classmethod
    def from_env(cls, env: Any) -> AgentSpec:
        agents = [str(a) for a in env.possible_agents]
        return cls(agents, {a: env.observation_space(a) for a in agents}, {a: env.action_space(a) for a in agents})

    @classmethod
    def from_dataset(cls, ds: Any) -> AgentSpec:
        obs, act = ds.observation_space, ds.action_space
        for name, space in (("observation_space", obs), ("action_space", act)):
            if not isinstance(space, spaces.Dict):
                raise ValueError(f"dataset {name}: expected a Dict keyed by agent, got {space}")
        if list(obs.spaces) != list(act.spaces):
            raise ValueError(f"dataset action_space: expected the agents {list(obs.spaces)}, got {list(act.spaces)}")
        return cls(list(obs.spaces), dict(obs.spaces), dict(act.spaces))  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, Any]:
        from diffagents.spaces import space_to_dict

        return {"agents": self.agents,
                "observation_spaces": {a: space_to_dict(self.observation_spaces[a]) for a in self.agents},
                "action_spaces": {a: space_to_dict(self.action_spaces[a]) for a in self.agents}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AgentSpec:
        from diffagents.spaces import space_from_dict

        agents = [str(a) for a in d["agents"]]
        return cls(agents, {a: space_from_dict(d["observation_spaces"][a]) for a in agents},  # type: ignore[misc]
                   {a: space_from_dict(d["action_spaces"][a]) for a in agents})

    def check_matches(self, other: AgentSpec, name: str) -> None:
        """Raise ``ValueError`` naming the agent and field where ``other`` (the ``name``) differs from ``self``."""
        from diffagents.spaces import spaces_equal

        if set(self.agents) != set(other.agents):
            raise ValueError(f"agents: the env has {sorted(self.agents)} but the {name} has {sorted(other.agents)}")
        for a in self.agents:
            for label, mine, theirs in (("observation_space", self.observation_spaces[a], other.observation_spaces[a]),
                                        ("action_space", self.action_spaces[a], other.action_spaces[a])):
                if not spaces_equal(mine, theirs):
                    raise ValueError(f"{label}[{a!r}]: the env has {mine} but the {name} has {theirs}")

    n_agents = property(lambda self: len(self.agents))
    obs_shape = property(lambda self: tuple(self.observation_spaces[self.agents[0]].shape))
    obs_dim = property(lambda self: int(np.prod(self.obs_shape)))
    discrete = property(lambda self: isinstance(self.action_spaces[self.agents[0]], spaces.Discrete))

    @property
    def act_dim(self) -> int:
        """Action size (Box) or number of actions (Discrete: the inverse dynamics outputs logits)."""
        space = self.action_spaces[self.agents[0]]
        return int(space.n) if isinstance(space, spaces.Discrete) else int(np.prod(space.shape))  # type: ignore[arg-type]

    def _bounds(self) -> tuple[np.ndarray, np.ndarray]:
        boxes = [self.action_spaces[a] for a in self.agents]
        low = np.stack([np.asarray(b.low, np.float64).reshape(-1) for b in boxes])  # type: ignore[attr-defined]
        high = np.stack([np.asarray(b.high, np.float64).reshape(-1) for b in boxes])  # type: ignore[attr-defined]
        return low, high  # (N, A) each

    def scale_action(self, actions: np.ndarray) -> np.ndarray:
        """Box actions ``(..., N, A)`` in env bounds -> ``[-1, 1]`` (clipped)."""
        low, high = self._bounds()
        return to_unit(actions, low, high).astype(np.float32)  # type: ignore[no-any-return]

    def to_env_actions(self, out: np.ndarray) -> np.ndarray:
        """Inverse-dynamics outputs ``(E, N, A)`` -> env actions ``(E, N, *shape)`` (Discrete: ``(E, N)`` ints)."""
        first = self.action_spaces[self.agents[0]]
        if isinstance(first, spaces.Discrete):
            return out.argmax(-1).astype(np.int64) + int(first.start)
        low, high = self._bounds()
        act = from_unit(out, low, high)
        return act.reshape(*out.shape[:2], *first.shape).astype(first.dtype)  # type: ignore[misc]

    def joint_observation(self, observation: Any) -> tuple[np.ndarray, bool]:
        """``{agent: obs}`` -> ``((E, N, D) float32, batched)``; errors name the agent and the field."""
        if isinstance(observation, tuple) and len(observation) == 2 and isinstance(observation[1], Mapping):
            raise ValueError("observation: got an (obs, infos) tuple; pass only the obs dict from env.reset()")
        if not isinstance(observation, Mapping):
            raise TypeError(f"observation: expected a dict {{agent: obs}} over {self.agents}, got "
                            f"{type(observation).__name__}")
        missing = [a for a in self.agents if a not in observation]
        extra = [k for k in observation if k not in self.agents]
        if missing or extra:
            raise ValueError(f"observation: missing agent(s) {missing}, unknown agent(s) {extra}; expected the keys "
                             f"{self.agents}")
        shape, batch = self.obs_shape, None
        rows: list[np.ndarray] = []
        for a in self.agents:
            try:
                arr = np.asarray(observation[a], dtype=np.float32)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"observation[{a!r}]: expected a numeric array of shape {shape}, got {exc}") from None
            if arr.shape == shape:
                arr = arr[None]
                this = None
            elif arr.ndim == len(shape) + 1 and arr.shape[1:] == shape:
                this = arr.shape[0]
            else:
                raise ValueError(f"observation[{a!r}]: expected shape {shape} or (n_envs, *{shape}), got {arr.shape}")
            if rows and this != batch:
                raise ValueError(f"observation[{a!r}]: expected the same batch layout as {self.agents[0]!r} "
                                 f"({batch} envs), got shape {arr.shape}")
            batch = this
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"observation[{a!r}]: contains NaN or Inf values")
            rows.append(arr.reshape(arr.shape[0], -1))
        return np.stack(rows, axis=1), batch is not None  # (E, N, D)


class _DiscreteActions:
    """Reads ``{agent: (T,) int}`` Discrete actions as ``(T, N)`` floats for :func:`read_episodes`."""

    def __init__(self, spec: AgentSpec) -> None:
        self.agents, self.n = spec.agents, spec.act_dim

    def __call__(self, actions: Any) -> np.ndarray:
        from diffagents.data import DataError

        if not isinstance(actions, Mapping) or any(a not in actions for a in self.agents):
            raise DataError(f"actions: expected a dict with the agents {self.agents}")
        return np.stack([np.asarray(actions[a]).reshape(-1) for a in self.agents], axis=-1).astype(np.float32)

    @property
    def flat_space(self) -> spaces.Box:
        return spaces.Box(0.0, float(self.n - 1), (len(self.agents),), np.float32)

    def to_dict(self) -> dict[str, Any]:
        """JSON description (the episode cache of :func:`diffagents.data.read_episodes` keys on it)."""
        return {"discrete_actions": list(self.agents), "n": int(self.n)}


@dataclass
class JointData:
    """Training arrays of a multi-agent dataset (see :func:`read_joint_data`)."""

    windows: Any  # TrajectoryWindows over episodes padded in front with K copies of their first step
    index: np.ndarray  # (M,) windows whose current step (window index K) is a real step
    real_obs: np.ndarray  # (R, N, D) every observation, to fit the normalizer
    obs: np.ndarray  # (T, N, D) transitions for the inverse dynamics
    next_obs: np.ndarray  # (T, N, D)
    actions: np.ndarray  # (T, N, A) float Box actions or (T, N) int64 Discrete indices
    step_returns: list[np.ndarray] = field(default_factory=list)  # returns-to-go of the windows, by episode step


def _prepend_history(table: Any, k: int) -> Any:
    """Pad each episode in front with ``k`` copies of its first observation (and action, reward 0), so windows
    can start ``k`` steps before the episode as act time does (MADiff's ``use_zero_padding=False``)."""
    import dataclasses

    lengths = table.lengths
    new_len, e = lengths + k, np.arange(len(lengths))
    obs_off = np.concatenate([[0], np.cumsum(new_len + 1)[:-1]])
    ep = np.repeat(e, new_len + 1)
    p = np.arange(len(ep)) - obs_off[ep]
    obs = table.observations[table.obs_offsets[ep] + np.maximum(p - k, 0)]
    step_off = np.concatenate([[0], np.cumsum(new_len)[:-1]])
    ep = np.repeat(e, new_len)
    p = np.arange(len(ep)) - step_off[ep]
    real, src = p >= k, table.step_offsets[ep] + np.maximum(p - k, 0)
    return dataclasses.replace(
        table, observations=obs, actions=table.actions[src], rewards=np.where(real, table.rewards[src], 0.0),
        terminations=real & table.terminations[src], truncations=real & table.truncations[src],
        lengths=new_len.astype(np.int64))


def read_joint_data(dataset: Any, spec: AgentSpec, window: int, *, history: int, discount: float,
                    pad_mode: str) -> JointData:
    """Joint windows ``(M, N, W, D)`` (team returns-to-go) and inverse-dynamics transitions of ``dataset``."""
    from diffagents.data import ObsFlattener, read_episodes
    from diffagents.data.transitions import table_to_transitions
    from diffagents.data.windows import table_to_windows

    n, d = spec.n_agents, spec.obs_dim
    obs_flat = ObsFlattener.from_space(dataset.observation_space, keys=spec.agents)
    act_reader = _DiscreteActions(spec) if spec.discrete else ObsFlattener.from_space(dataset.action_space,
                                                                                       keys=spec.agents)
    table = read_episodes(dataset, flattener=obs_flat, action_flattener=act_reader)  # type: ignore[arg-type]
    table.observations = table.observations.reshape(-1, n, d)  # (sum(T+1), N*D) -> (sum(T+1), N, D)
    table.actions = table.actions.reshape(len(table.actions), n, -1)  # (sum(T), N, A); Discrete: A = 1
    tr = table_to_transitions(table)
    actions = tr.actions[..., 0].astype(np.int64) if spec.discrete else tr.actions
    padded = _prepend_history(table, history) if history else table
    windows = table_to_windows(padded, window, discount=discount, use_padding=True, pad_mode=pad_mode, joint=True,
                               agent_ids=spec.agents)
    current = windows.index + history  # row of each window's current step
    keep = windows.flat["mask"][current] > 0
    rtg, step = windows.flat["returns_to_go"][current[keep]], windows.start[keep]  # step = real episode step
    by_step = [rtg[step == s] for s in range(int(step.max()) + 1)]
    return JointData(windows=windows, index=windows.index[keep], real_obs=table.observations, obs=tr.observations,
                     next_obs=tr.next_observations, actions=actions, step_returns=by_step)


def step_targets(step_returns: list[np.ndarray], quantile: float, returns_scale: float) -> np.ndarray:
    """Normalised target return ``(L,)`` per episode step: the ``quantile`` of the dataset's returns-to-go of the
    windows whose current step is that episode step, divided by ``returns_scale``."""
    q = [float(np.quantile(r, quantile)) if len(r) else np.nan for r in step_returns]
    filled = np.asarray(q, dtype=np.float64)
    for i in range(1, len(filled)):  # steps no window starts at keep the previous step's target
        filled[i] = filled[i - 1] if np.isnan(filled[i]) else filled[i]
    return (filled / returns_scale).astype(np.float32)


def roll_history(cache: PlanCache, obs: torch.Tensor, starts: np.ndarray, k: int
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Push this step's observations ``(E, N, D)`` into the cache's history ``(E, K+1, N, D)`` and advance its
    episode-step counter ``(E,)``; envs at an episode start (``starts``) restart both. Returns both."""
    e = obs.shape[0]
    hist = cache.extra.get("history")  # (E, K+1, N, D)
    if hist is None or hist.shape[0] != e:
        hist = obs[:, None].repeat(1, k + 1, 1, 1)
    else:
        hist = torch.cat([hist[:, 1:], obs[:, None]], dim=1)
        fresh = torch.as_tensor(starts, device=obs.device)
        hist[fresh] = obs[fresh, None].expand(-1, k + 1, -1, -1)
    step = cache.extra.get("step")  # (E,) episode step of each env
    if step is None or step.shape[0] != e:
        step = torch.zeros(e, dtype=torch.long, device=obs.device)
    else:
        step = torch.where(torch.as_tensor(starts, device=obs.device), 0, step + 1)
    cache.extra["history"], cache.extra["step"] = hist, step
    return hist, step


def make_parallel_env(env: Any) -> Any:
    """A Parallel env from an instance or a zero-argument factory (``functools.partial(parallel_env, ...)``)."""
    if hasattr(env, "possible_agents"):
        return env
    if callable(env):
        made = env()
        if hasattr(made, "possible_agents"):
            return made
        raise TypeError(f"env: the factory returned {type(made).__name__}, expected a PettingZoo Parallel env")
    raise TypeError(f"env: expected a PettingZoo Parallel env or a callable returning one, got {type(env).__name__}")
