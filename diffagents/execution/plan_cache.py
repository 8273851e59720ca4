"""Receding-horizon plan cache carried through SB3's ``state`` (or Tianshou's) between ``predict`` calls.

A planner samples a plan of H steps, executes its first actions and replans every ``replan_every`` steps, or
when an env's episode restarts. The cache holds one plan per env; :meth:`PlanCache.due` says which envs need a
new plan now. Counters give the plan-reuse rate reported in the benchmarks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass
class PlanCache:
    """Per-env plans and step counters.

    Attributes:
        plans: ``(B, H, D)`` current plan of every env (normalised space), or None before the first plan.
        age: ``(B,)`` steps executed since each env's plan was made.
        extra: per-env tensors an agent wants to keep with the plan (e.g. observation history).
        calls: decisions made with this cache since its batch size was set (all envs step together).
    """

    plans: torch.Tensor | None = None
    age: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    extra: dict[str, torch.Tensor] = field(default_factory=dict)
    calls: int = 0

    def due(self, batch: int, episode_start: np.ndarray | None, replan_every: int | None, *,
            replan_at_end: bool = True) -> np.ndarray:
        """Indices of envs that need a new plan: no plan yet, batch size changed, episode start, or plan aged.

        With ``replan_at_end=False`` (plans of states that a controller tracks, held at their last state once
        they run out: Diffuser's Maze2D mode) an exhausted plan is kept instead of replaced.
        """
        if self.plans is None or self.plans.shape[0] != batch or len(self.age) != batch:
            self.plans = None
            self.age = np.zeros(batch, dtype=np.int64)
            self.extra = {}
            self.calls = 0
            return np.arange(batch)
        need = np.zeros(batch, dtype=bool)
        if episode_start is not None:
            need |= np.asarray(episode_start, dtype=bool).reshape(-1)[:batch]
        if replan_every is not None:
            need |= self.age >= replan_every
        if replan_at_end:
            need |= self.age >= self.plans.shape[1]  # never run past the end of a plan
        return np.flatnonzero(need)

    def store(self, idx: np.ndarray, plans: torch.Tensor) -> None:
        """Put new plans for envs ``idx`` (``plans`` is ``(len(idx), H, D)``) and reset their age."""
        if self.plans is None:
            self.plans = plans.clone()
        else:
            self.plans[torch.as_tensor(idx, device=plans.device)] = plans
        self.age[idx] = 0

    def current(self) -> tuple[torch.Tensor, np.ndarray]:
        """``(plans, age)`` to read this step's entries from."""
        assert self.plans is not None
        return self.plans, self.age

    def advance(self) -> None:
        self.age += 1
        self.calls += 1


def shift_plans(plans: torch.Tensor, k: int) -> torch.Tensor:
    """Drop the first ``k`` steps of each plan and repeat the last step (warm-start initialisation)."""
    if k <= 0:
        return plans
    k = min(k, plans.shape[1] - 1)
    tail = plans[:, -1:].expand(-1, k, -1)  # (B, k, D)
    return torch.cat([plans[:, k:], tail], dim=1)
