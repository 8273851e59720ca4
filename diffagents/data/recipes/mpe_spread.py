"""``diffagents/mpe-spread/{expert,medium,random}-v0``: mpe2 ``simple_spread_v3`` (N=3, continuous actions).

Env: ``simple_spread_v3.parallel_env(N=3, local_ratio=0.5, max_cycles=25, continuous_actions=True)``; every
episode is 25 joint steps, the last one ``truncated``. Stored as a multi-agent Minari dataset:
observation / action spaces are ``Dict({agent_id: Box})`` (18-d observations, ``Box(0, 1, (5,))`` actions) and
the reward is the **team reward, the sum of the agents' rewards** (so returns are 3x the per-agent returns of
docs/compute-budget.md section 4). There is no Gymnasium eval env; the metadata field ``diffagents_eval_env``
names the PettingZoo constructor and its kwargs.

Expert (decentralised, closed form): each agent reads, from its own observation, the landmarks and the other
agents relative to itself, solves the same agent-to-landmark assignment (Hungarian,
``scipy.optimize.linear_sum_assignment`` on distances) and drives to its landmark with the dead-beat law
``u = clip((rel - 0.175 v) / 0.05, -1, 1)`` (dt 0.1, damping 0.25), written as the 5-d action
``[no_op, -x, +x, -y, +y]`` with ``u_x = a[2] - a[1]``, ``u_y = a[4] - a[3]``.
Medium: per episode, each agent with probability :data:`MEDIUM_WRONG_P` targets a random landmark instead of
its assigned one, plus N(0, :data:`MEDIUM_NOISE`) noise on ``u``. Random: uniform ``Box(0, 1)`` actions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from gymnasium import spaces
from scipy.optimize import linear_sum_assignment

from diffagents.data.recipes.base import EpisodeRecorder, Recipe, RecipeOutput, register

N_AGENTS = 3
MAX_CYCLES = 25
ENV_KWARGS: dict[str, Any] = {"N": N_AGENTS, "local_ratio": 0.5, "max_cycles": MAX_CYCLES, "continuous_actions": True}
MEDIUM_WRONG_P = 0.7
MEDIUM_NOISE = 0.5
REF_EPISODES = 100
REF_SEED = 10_000
# Team-sum returns over 100 episodes (seeds 10000-10099), measured with recompute_reference_scores().
REF_MIN_SCORE = -75.48
REF_MAX_SCORE = -18.00

Policy = Callable[[dict[str, np.ndarray], list[str]], dict[str, np.ndarray]]


def make_env() -> Any:
    """The mpe2 parallel env used by the recipes."""
    from mpe2 import simple_spread_v3

    return simple_spread_v3.parallel_env(**ENV_KWARGS)


def assigned_landmark(obs: np.ndarray, n: int = N_AGENTS) -> int:
    """Index of the landmark that the Hungarian assignment, solved from this agent's view, gives it."""
    landmarks = obs[4 : 4 + 2 * n].reshape(n, 2)  # relative to self
    others = obs[4 + 2 * n : 4 + 2 * n + 2 * (n - 1)].reshape(n - 1, 2)
    agents = np.vstack([np.zeros((1, 2)), others])  # self first
    cost = np.linalg.norm(agents[:, None, :] - landmarks[None, :, :], axis=-1)  # (agents, landmarks)
    rows, cols = linear_sum_assignment(cost)
    return int(cols[rows == 0][0])


def drive_action(obs: np.ndarray, landmark: int, noise: float = 0.0, rng: np.random.Generator | None = None) -> np.ndarray:
    """Dead-beat action towards ``landmark`` as a ``Box(0, 1, (5,))`` action."""
    vel, rel = obs[0:2], obs[4 + 2 * landmark : 6 + 2 * landmark]
    u = np.clip((rel - 0.175 * vel) / 0.05, -1.0, 1.0)
    if noise > 0 and rng is not None:
        u = np.clip(u + rng.normal(0.0, noise, size=2), -1.0, 1.0)
    a = np.zeros(5, dtype=np.float32)
    a[1], a[2] = max(-u[0], 0.0), max(u[0], 0.0)
    a[3], a[4] = max(-u[1], 0.0), max(u[1], 0.0)
    return a


def make_policy(kind: str, rng: np.random.Generator) -> tuple[Policy, Callable[[], None]]:
    """``(policy, on_reset)`` for ``kind`` in ``expert | medium | random``."""
    wrong: dict[int, int] = {}

    def on_reset() -> None:
        wrong.clear()
        if kind == "medium":
            for i in range(N_AGENTS):
                if rng.random() < MEDIUM_WRONG_P:
                    wrong[i] = int(rng.integers(N_AGENTS))

    def policy(obs: dict[str, np.ndarray], agents: list[str]) -> dict[str, np.ndarray]:
        if kind == "random":
            return {a: rng.uniform(0.0, 1.0, size=5).astype(np.float32) for a in agents}
        noise = MEDIUM_NOISE if kind == "medium" else 0.0
        return {a: drive_action(obs[a], wrong.get(i, assigned_landmark(obs[a])), noise, rng)
                for i, a in enumerate(agents)}

    return policy, on_reset


def rollout(kind: str, size: int, seed: int) -> tuple[EpisodeRecorder, list[str], Any]:
    """Roll ``kind`` out for ``size`` joint steps; returns the recorder, agent ids and the env."""
    env = make_env()
    rng = np.random.default_rng(seed)
    policy, on_reset = make_policy(kind, rng)
    agents = list(env.possible_agents)
    rec = EpisodeRecorder(size)
    episode = 0
    while not rec.full:
        obs, _ = env.reset(seed=seed * 100_003 + episode)
        episode += 1
        on_reset()
        obs_l, act_l, rew_l, term_l, trunc_l = [obs], [], [], [], []
        while env.agents:
            act = policy(obs, agents)
            obs, rew, term, trunc, _ = env.step(act)
            obs_l.append(obs)
            act_l.append(act)
            rew_l.append(sum(float(rew[a]) for a in agents))  # team reward = sum over agents
            term_l.append(any(term.values()))
            trunc_l.append(any(trunc.values()) and not any(term.values()))
        observations = {a: np.stack([o[a] for o in obs_l]) for a in agents}
        actions = {a: np.stack([x[a] for x in act_l]) for a in agents}
        rec.add(observations, actions, np.asarray(rew_l), np.asarray(term_l), np.asarray(trunc_l))  # type: ignore[arg-type]
    return rec, agents, env


def recompute_reference_scores(episodes: int = REF_EPISODES) -> tuple[float, float]:
    """(uniform random, expert) mean team returns over ``episodes`` episodes."""
    steps = episodes * MAX_CYCLES
    lo, _, _ = rollout("random", steps, REF_SEED)
    hi, _, _ = rollout("expert", steps, REF_SEED)
    return float(np.mean(lo.returns)), float(np.mean(hi.returns))


def _builder(kind: str) -> Callable[[int, int], RecipeOutput]:
    def build(size: int, seed: int) -> RecipeOutput:
        rec, agents, env = rollout(kind, size, seed)
        obs_space = spaces.Dict({a: env.observation_space(a) for a in agents})
        act_space = spaces.Dict({a: env.action_space(a) for a in agents})
        how = {"expert": "Decentralised Hungarian-assignment expert with dead-beat control.",
               "medium": f"Expert with wrong landmarks (p={MEDIUM_WRONG_P} per agent and episode) and "
                         f"N(0, {MEDIUM_NOISE}) control noise.",
               "random": "Uniform random Box(0, 1) actions."}[kind]
        return RecipeOutput(
            buffers=rec.buffers, algorithm_name=f"scripted-{kind}", observation_space=obs_space,
            action_space=act_space, ref_min_score=REF_MIN_SCORE, ref_max_score=REF_MAX_SCORE,
            metadata={**rec.stats(), "diffagents_eval_env": {"constructor": "mpe2.simple_spread_v3.parallel_env",
                                                              "kwargs": ENV_KWARGS}, "agent_ids": agents},
            description=(
                f"mpe2 simple_spread_v3 {ENV_KWARGS}, multi-agent (Dict spaces keyed by agent), team reward = sum "
                f"of agent rewards. {how} Team return {rec.summary()}. Reference scores: uniform random (min) "
                f"and the expert (max), {REF_EPISODES} episodes each."
            ),
        )

    return build


for _kind in ("expert", "medium", "random"):
    register(Recipe(f"diffagents/mpe-spread/{_kind}-v0", f"mpe2 simple_spread_v3 N=3 continuous, {_kind}",
                    100_000, _builder(_kind)))
