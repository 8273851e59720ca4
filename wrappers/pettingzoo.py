"""PettingZoo Parallel API helpers: joint arrays, team rewards, data collection and evaluation.

* :func:`dict_to_joint` / :func:`joint_to_dict`: ``{agent: x}`` <-> ``(N, ...)`` arrays in ``possible_agents``
  order (docs/integration.md Sec. 4), with errors naming the missing agent.
* :class:`TeamRewardWrapper`: every agent receives the team reward (sum or mean of the agents' rewards), the
  reward multi-agent Minari datasets store. Passes ``pettingzoo.test.parallel_api_test``.
* :func:`collect_episodes`: roll a joint policy out into Minari ``EpisodeBuffer`` s with ``Dict({agent: space})``
  layouts and one team reward per step (for ``minari.create_dataset_from_buffers``).
* :func:`evaluate`: per-episode team returns of an agent with a ``predict(obs_dict, state, episode_start,
  deterministic)`` method (e.g. :class:`diffagents.agents.multiagent.madiff.MADiff`) on any Parallel env with Box
  observations, and normalised scores when reference scores are given.

PettingZoo is imported only by this module (``import diffagents.wrappers`` stays light).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from pettingzoo.utils.wrappers import BaseParallelWrapper

from diffagents.agents.multiagent.madiff_data import make_parallel_env  # one implementation, re-exported here

JointPolicy = Callable[[dict[str, np.ndarray]], dict[str, Any]]


def agent_order(env: Any) -> list[str]:
    """``env.possible_agents`` as a list (the joint-array order)."""
    return list(make_parallel_env(env).possible_agents)


def dict_to_joint(values: Mapping[str, Any], agents: Sequence[str], field: str = "observation",
                  dtype: Any = np.float32) -> np.ndarray:
    """Stack ``{agent: x}`` into an ``(N, ...)`` array in ``agents`` order.

    Raises:
        ValueError: naming the field and the missing agents, or the agent whose shape differs.
    """
    missing = [a for a in agents if a not in values]
    if missing:
        raise ValueError(f"{field}: missing agent(s) {missing}; expected keys {list(agents)}")
    arrays = [np.asarray(values[a], dtype=dtype) for a in agents]
    for a, arr in zip(agents, arrays):
        if arr.shape != arrays[0].shape:
            raise ValueError(f"{field}[{a!r}]: expected shape {arrays[0].shape} like {agents[0]!r}, got {arr.shape}")
    return np.stack(arrays)


def joint_to_dict(joint: np.ndarray | Sequence[Any], agents: Sequence[str]) -> dict[str, Any]:
    """Split an ``(N, ...)`` array into ``{agent: joint[i]}``."""
    if len(joint) != len(agents):
        raise ValueError(f"joint: expected {len(agents)} rows (one per agent), got {len(joint)}")
    return {a: joint[i] for i, a in enumerate(agents)}


def team_reward(rewards: Mapping[str, float], mode: str = "sum") -> float:
    """The team reward of one step: ``"sum"`` (the mpe-spread datasets) or ``"mean"`` of the agents' rewards."""
    values = [float(r) for r in rewards.values()]
    if mode == "sum":
        return float(np.sum(values))
    if mode == "mean":
        return float(np.mean(values)) if values else 0.0
    raise ValueError(f"team_reward: expected 'sum' or 'mean', got {mode!r}")


class TeamRewardWrapper(BaseParallelWrapper):  # type: ignore[misc]
    """Give every live agent the team reward (``"sum"`` or ``"mean"`` of the agents' rewards) each step.

    Args:
        env: a Parallel env.
        mode: ``"sum"`` or ``"mean"``.
    """

    def __init__(self, env: Any, mode: str = "sum") -> None:
        super().__init__(env)
        team_reward({}, mode)  # validate the mode
        self.mode = mode

    def step(self, actions: dict[str, Any]) -> tuple[dict[str, Any], ...]:
        obs, rewards, terms, truncs, infos = self.env.step(actions)
        shared = team_reward(rewards, self.mode)
        return obs, {a: shared for a in rewards}, terms, truncs, infos


def collect_episodes(env: Any, policy: JointPolicy, n_steps: int, *, seed: int = 0, reward: str = "sum",
                     on_reset: Callable[[], None] | None = None) -> tuple[list[Any], np.ndarray]:
    """Roll ``policy`` out for exactly ``n_steps`` joint steps as Minari ``EpisodeBuffer`` s.

    Episode ``i`` resets with ``seed + i``. Observations / actions are dicts ``{agent: (T+1 | T, ...)}``; the
    reward is the team reward; an episode is terminated if any agent terminated, truncated if any truncated
    (or if it was cut to fit ``n_steps``). The env must keep all agents until the episode ends (no agent death).

    Returns:
        ``(buffers, returns)``: the episodes and the team returns of the complete ones.
    """
    from minari.data_collector import EpisodeBuffer

    env = make_parallel_env(env)
    agents = list(env.possible_agents)
    buffers: list[Any] = []
    returns: list[float] = []
    steps = 0
    while steps < n_steps:
        obs, _ = env.reset(seed=seed + len(buffers))
        if on_reset is not None:
            on_reset()
        ep_obs, ep_act, rew, term, trunc = [obs], [], [], [], []
        while env.agents and steps < n_steps:
            act = policy(obs)
            obs, rewards, terms, truncs, _ = env.step(act)
            if set(obs) != set(agents):
                raise ValueError(f"collect_episodes: agents {sorted(set(agents) - set(obs))} left mid-episode; "
                                 "agent death is not supported")
            ep_obs.append(obs)
            ep_act.append(act)
            rew.append(team_reward(rewards, reward))
            term.append(any(terms.values()))
            trunc.append(any(truncs.values()) and not term[-1])
            steps += 1
        if not (term[-1] or trunc[-1]):
            trunc[-1] = True  # cut to fit n_steps
        else:
            returns.append(float(np.sum(rew)))
        buffers.append(EpisodeBuffer(
            id=len(buffers), seed=seed + len(buffers),
            observations={a: np.stack([o[a] for o in ep_obs]) for a in agents},
            actions={a: np.stack([np.asarray(x[a]) for x in ep_act]) for a in agents},
            rewards=np.asarray(rew, dtype=np.float64), terminations=np.asarray(term), truncations=np.asarray(trunc),
            infos={}))
    return buffers, np.asarray(returns)


def _reference(reference_scores: Any) -> tuple[float, float] | None:
    if reference_scores is None or isinstance(reference_scores, tuple | list):
        return None if reference_scores is None else (float(reference_scores[0]), float(reference_scores[1]))
    from diffagents.data import reference_scores as dataset_reference

    return dataset_reference(reference_scores)


def evaluate(agent: Any, env: Any, n_episodes: int = 50, seed: int = 0, *, deterministic: bool = True,
             reference_scores: Any = None, reward: str = "sum", max_steps: int | None = None,
             n_envs: int = 1) -> dict[str, Any]:
    """Run ``agent`` for ``n_episodes`` on a Parallel env and report per-episode team returns.

    Args:
        agent: anything with ``predict(obs_dict, state=..., episode_start=..., deterministic=...)`` returning
            ``(action_dict, state)``; with ``n_envs > 1`` it must take batched observations (``(n_envs, D)`` per
            agent, one ``episode_start`` flag per env), as :class:`~diffagents.MADiff` does.
        env: a Parallel env (Box observations; Box or Discrete actions) or a factory (required for
            ``n_envs > 1``); episode ``i`` resets with ``seed + i`` whatever ``n_envs`` is.
        n_episodes: episodes to run.
        seed: seed of the first episode.
        deterministic: passed to ``predict``.
        reference_scores: ``(ref_min, ref_max)`` or a Minari dataset carrying them; adds ``normalized``
            (``100 (R - min) / (max - min)``).
        reward: team reward, ``"sum"`` or ``"mean"`` over agents (match the dataset).
        max_steps: optional cap on the steps of one episode.
        n_envs: env copies stepped in lockstep with one batched ``predict`` per joint step (like an SB3 VecEnv:
            a finished env resets to the next pending episode with ``episode_start`` set; an env with no episode
            left repeats its last observation and is not stepped).

    Returns:
        dict with ``returns`` (per-episode team returns, ``(n_episodes,)``), ``lengths``, ``mean``, ``std``,
        ``step_latency_s`` (mean seconds per joint step and env, i.e. per ``predict`` call / ``n_envs``) and, with
        reference scores, ``normalized``.
    """
    from diffagents.evaluation import normalized_scores

    if n_episodes < 1:
        raise ValueError(f"n_episodes: expected >= 1, got {n_episodes}")
    if n_envs < 1 or (n_envs > 1 and hasattr(env, "possible_agents")):
        raise ValueError(f"n_envs: expected 1, or > 1 with an env factory, got {n_envs} with {type(env).__name__}")
    n_envs = min(n_envs, n_episodes)
    envs = [make_parallel_env(env) for _ in range(n_envs)]
    returns, lengths, latency = np.zeros(n_episodes), np.zeros(n_episodes, dtype=np.int64), []
    episode = list(range(n_envs))  # the episode each env runs; >= n_episodes once it has none left
    obs = [e.reset(seed=seed + i)[0] for i, e in enumerate(envs)]
    agents = list(envs[0].possible_agents)
    state, start = None, np.ones(n_envs, dtype=bool)

    def running(j: int) -> bool:
        return episode[j] < n_episodes and bool(envs[j].agents) and (max_steps is None or
                                                                       lengths[episode[j]] < max_steps)

    while any(running(j) for j in range(n_envs)):
        batch = obs[0] if n_envs == 1 else {a: np.stack([np.asarray(o[a]) for o in obs]) for a in agents}
        t0 = time.perf_counter()
        actions, state = agent.predict(batch, state=state, episode_start=start, deterministic=deterministic)
        latency.append((time.perf_counter() - t0) / n_envs)
        start = np.zeros(n_envs, dtype=bool)
        for j, e in enumerate(envs):
            if not running(j):
                continue
            act = actions if n_envs == 1 else {a: np.asarray(actions[a])[j] for a in agents}
            nxt, rewards, _, _, _ = e.step({a: act[a] for a in e.agents})
            if all(a in nxt for a in agents):  # keep the last full observation for a batch slot
                obs[j] = nxt
            returns[episode[j]] += team_reward(rewards, reward)
            lengths[episode[j]] += 1
            if not running(j):  # finished: reset to the next pending episode
                episode[j] += n_envs
                if episode[j] < n_episodes:
                    obs[j], _ = e.reset(seed=seed + episode[j])
                    start[j] = True
    out: dict[str, Any] = {"returns": returns, "lengths": lengths, "mean": float(returns.mean()),
                           "std": float(returns.std()), "step_latency_s": float(np.mean(latency)) if latency else 0.0}
    ref = _reference(reference_scores)
    if ref is not None:
        out["normalized"] = normalized_scores(returns, ref)
    return out


ALLOWED_ENV_PACKAGES = ("mpe2.", "pettingzoo.")


def env_fn_from_dataset(dataset: Any) -> Callable[[], Any]:
    """The Parallel-env factory a multi-agent dataset names in its ``diffagents_eval_env`` metadata.

    The metadata holds ``{"constructor": "mpe2.simple_spread_v3.parallel_env", "kwargs": {...}}``. Only
    ``parallel_env`` constructors of the ``mpe2`` and ``pettingzoo`` packages are imported, so a crafted dataset
    cannot make us import arbitrary code.

    Raises:
        ValueError: the dataset has no such metadata, or it names a constructor outside the allowed packages.
    """
    import functools
    import importlib

    meta = dataset.storage.metadata if hasattr(dataset, "storage") else dict(dataset)
    spec = meta.get("diffagents_eval_env")
    if not isinstance(spec, dict) or not isinstance(spec.get("constructor"), str):
        raise ValueError("diffagents_eval_env: expected {'constructor': 'pkg.module.parallel_env', 'kwargs': {...}} "
                         f"in the dataset metadata, got {spec!r}")
    name = spec["constructor"]
    module_name, _, attr = name.rpartition(".")
    if not name.startswith(ALLOWED_ENV_PACKAGES) or attr != "parallel_env":
        raise ValueError(f"diffagents_eval_env.constructor: expected a parallel_env of {list(ALLOWED_ENV_PACKAGES)}, "
                         f"got {name!r}")
    kwargs = spec.get("kwargs") or {}
    if not isinstance(kwargs, dict):
        raise ValueError(f"diffagents_eval_env.kwargs: expected a dict, got {kwargs!r}")
    return functools.partial(getattr(importlib.import_module(module_name), attr), **kwargs)
