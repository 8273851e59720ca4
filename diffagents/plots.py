"""Figures: a planner's planned vs executed trajectory, an agent's rollout, learning curves (matplotlib, Agg).

* :func:`rollout` runs one deterministic episode and records the flat states, the actions and, for planners
  (agents whose ``predict`` state is a :class:`~diffagents.execution.plan_cache.PlanCache`: Diffuser,
  DecisionDiffuser), every plan at the step it was made, mapped back to env units.
* :func:`plot_plan` draws the planned windows against the executed states in the first two state dimensions
  (x-y for PointMaze, over the maze walls and the goal).
* :func:`plot_rollout` draws states and actions over time (any agent).
* :func:`plot_learning_curves` draws mean +- std curves over seeds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Rollout:
    """One episode: ``states`` ``(T+1, S)`` flat observations, ``actions`` ``(T, A)``, the episode return and
    ``plans``: ``(step, (H, S) planned states in env units)`` for every plan made."""

    states: np.ndarray
    actions: np.ndarray
    ret: float
    plans: list[tuple[int, np.ndarray]] = field(default_factory=list)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plan_states(agent: Any, plan: Any) -> np.ndarray:
    """``(H, D)`` normalised plan -> ``(H, S)`` planned states in env units (the planner's ``state_slice``)."""
    planner = agent.ema.model if getattr(agent, "ema", None) is not None else agent.nets["planner"]
    states = plan[:, planner.state_slice].float().cpu().numpy()  # (H, S)
    norm = agent.normalizers.get("obs")
    if norm is None:
        return states
    full = np.zeros((states.shape[0], agent.obs_dim), np.float32)  # (H, O): pad, unnormalise, cut
    full[:, : states.shape[1]] = states
    return np.asarray(norm.unnormalize(full))[:, : states.shape[1]]


def rollout(agent: Any, env: Any, seed: int = 0, max_steps: int | None = None) -> Rollout:
    """Run one deterministic episode of ``agent`` on ``env`` (reset with ``seed``) and record it."""
    from diffagents.execution.plan_cache import PlanCache

    obs, _ = env.reset(seed=seed)
    states, actions, plans, ret = [agent.flattener(obs)], [], [], 0.0
    state, start, t = None, np.array([True]), 0
    while max_steps is None or t < max_steps:
        action, state = agent.predict(obs, state=state, episode_start=start, deterministic=True)
        if isinstance(state, PlanCache) and state.plans is not None and state.age[0] == 1:  # planned this step
            plans.append((t, _plan_states(agent, state.plans[0])))
        obs, reward, term, trunc, _ = env.step(action)
        states.append(agent.flattener(obs))
        actions.append(np.asarray(action, np.float32).reshape(-1))
        ret, start, t = ret + float(reward), np.array([False]), t + 1
        if term or trunc:
            break
    return Rollout(np.asarray(states, np.float32), np.asarray(actions, np.float32), ret, plans)


def _draw_maze(ax: Any, env: Any) -> bool:
    """Walls of a gymnasium-robotics maze env (``env.unwrapped.maze``); False if ``env`` has none."""
    from matplotlib.patches import Rectangle

    maze = getattr(env.unwrapped, "maze", None)
    if maze is None or not hasattr(maze, "maze_map"):
        return False
    size = float(maze.maze_size_scaling)
    for r, row in enumerate(maze.maze_map):
        for c, cell in enumerate(row):
            if cell == 1:
                x, y = maze.cell_rowcol_to_xy(np.array([r, c]))
                ax.add_patch(Rectangle((x - size / 2, y - size / 2), size, size, color="0.35", zorder=0))
    ax.set_xlim(-maze.x_map_center, maze.x_map_center)
    ax.set_ylim(-maze.y_map_center, maze.y_map_center)
    ax.set_aspect("equal")
    return True


def plot_plan(agent: Any, env: Any, seed: int, path: str | Path, *, max_steps: int | None = None,
              max_plans: int = 6, title: str | None = None) -> Rollout:
    """Plot a planner's planned windows (at most ``max_plans``, evenly spread) vs the executed states.

    Args:
        agent: a planner (Diffuser, DecisionDiffuser) whose ``predict`` state is a ``PlanCache``.
        env: its env; a PointMaze (``env.unwrapped.maze``) gets its walls and goal drawn.
        seed: reset seed of the episode.
        path: output image (PNG, ...).
        max_steps: optional episode cap.
        max_plans: plans drawn.
        title: figure title (default: the agent's class and the episode return).

    Returns:
        The recorded :class:`Rollout`.

    Raises:
        ValueError: if the agent made no plans (not a planner; use :func:`plot_rollout`).
    """
    plt = _pyplot()
    ro = rollout(agent, env, seed, max_steps)
    if not ro.plans:
        raise ValueError(f"agent: {type(agent).__name__} made no plans (not a planner); use plot_rollout")
    fig, ax = plt.subplots(figsize=(5, 5))
    maze = _draw_maze(ax, env)
    picks = np.unique(np.linspace(0, len(ro.plans) - 1, min(max_plans, len(ro.plans))).round().astype(int))
    cmap = plt.get_cmap("viridis")
    for i, k in enumerate(picks):
        step, plan = ro.plans[k]
        ax.plot(plan[:, 0], plan[:, 1], "--", color=cmap(i / max(len(picks) - 1, 1)), lw=1.5,
                label=f"plan at step {step}" if len(picks) <= 4 or i in (0, len(picks) - 1) else None)
    ax.plot(ro.states[:, 0], ro.states[:, 1], "-", color="tab:red", lw=2, label="executed")
    ax.plot(*ro.states[0, :2], "o", color="tab:red", ms=8, label="start")
    if maze and ro.states.shape[1] >= 6:  # flat PointMaze observation: (x, y, vx, vy, goal_x, goal_y)
        ax.plot(*ro.states[0, 4:6], "*", color="gold", mec="k", ms=16, label="goal")
    ax.set_xlabel("x" if maze else "state[0]")
    ax.set_ylabel("y" if maze else "state[1]")
    ax.set_title(title or f"{type(agent).__name__}: planned vs executed (return {ro.ret:.1f})", fontsize=10)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return ro


def plot_rollout(agent: Any, env: Any, seed: int, path: str | Path, *, max_steps: int | None = None,
                 title: str | None = None) -> Rollout:
    """Plot the executed states and the predicted actions of one deterministic episode over time (any agent)."""
    plt = _pyplot()
    ro = rollout(agent, env, seed, max_steps)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6, 5), sharex=True)
    for d in range(min(ro.states.shape[1], 6)):
        top.plot(ro.states[:, d], lw=1.2, label=f"state[{d}]")
    for d in range(ro.actions.shape[1]):
        bottom.plot(ro.actions[:, d], lw=1.2, label=f"action[{d}]")
    top.set_ylabel("state")
    bottom.set_ylabel("predicted action")
    bottom.set_xlabel("step")
    top.legend(fontsize=7, ncol=3)
    bottom.legend(fontsize=7)
    top.set_title(title or f"{type(agent).__name__}: one episode (return {ro.ret:.1f})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return ro


def plot_learning_curves(curves: Mapping[str, tuple[Sequence[float], Any]], path: str | Path, *,
                         xlabel: str = "steps", ylabel: str = "evaluation return", title: str = "") -> None:
    """Mean +- std (over seeds) learning curves, one line per label.

    Args:
        curves: ``label -> (x, values)``, ``values`` of shape ``(n_points,)`` or ``(n_seeds, n_points)``
            (NaN where a seed has no value at a point: that point averages the others).
        path: output image.
        xlabel / ylabel / title: axis labels and title.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, (x, values) in curves.items():
        vals = np.atleast_2d(np.asarray(values, dtype=np.float64))  # (seeds, points)
        mean, std = np.nanmean(vals, axis=0), np.nanstd(vals, axis=0)  # a seed may lack a point
        (line,) = ax.plot(x, mean, label=label)
        if len(vals) > 1:  # the band in the line's colour (fill_between would take the next one of the cycle)
            ax.fill_between(x, mean - std, mean + std, alpha=0.2, color=line.get_color())
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
