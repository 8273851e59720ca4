"""Executing a planned state trajectory with a low-level controller (Diffuser's maze mode, Janner et al. 2022,
Sec. 5.1 / App. C): PD tracking of the next planned state, path following of the planned positions, and the
stall check that triggers a replan. Pure tensor functions of env-unit states; the planner converts its
normalised plans and scales the returned env-unit actions.
"""

from __future__ import annotations

import numpy as np
import torch

from diffagents.execution.plan_cache import PlanCache


def pd_track(target_pos: torch.Tensor, target_vel: torch.Tensor, pos: torch.Tensor, vel: torch.Tensor,
             end: torch.Tensor, gains: tuple[float, ...]) -> torch.Tensor:
    """``a = kp (p* - p) + kd (v* - v)`` (Diffuser Maze2D); where ``end`` (``(B, 1)``) the plan is over and the
    target velocity is zero. All ``(B, .)`` env-unit tensors; returns env-unit actions."""
    kp, kd = gains
    target_vel = torch.where(end, torch.zeros_like(target_vel), target_vel)
    return kp * (target_pos - pos) + kd * (target_vel - vel)


def follow_path(points: torch.Tensor, pos: torch.Tensor, vel: torch.Tensor, progress: torch.Tensor, radius: float,
                gains: tuple[float, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Path following of planned positions ``points`` (``(B, H, P)``).

    ``progress`` (``(B,)``) is the plan index each env has reached. It moves to the last index within ``radius``
    of the agent (a detour of the plan that returns near the agent is skipped); the target is the first later
    index farther than ``radius`` (the final, goal state once none is), and ``a = kp (p* - p) - kd v``. Returns
    the env-unit actions and the new progress.
    """
    b, h = points.shape[:2]
    dist = (points - pos[:, None]).norm(dim=-1)  # (B, H)
    index = torch.arange(h, device=points.device).expand(b, h)
    reached = (index >= progress[:, None]) & (dist <= radius)
    progress = torch.where(reached, index, progress[:, None]).amax(dim=1)
    beyond = (index > progress[:, None]) & (dist > radius)
    target = torch.where(beyond, index, torch.full_like(index, h - 1)).amin(dim=1)
    kp, kd = gains
    act = kp * (points[torch.arange(b, device=points.device), target] - pos) - kd * vel
    return act, progress


def stalled_envs(cache: PlanCache, k: int) -> np.ndarray:
    """Envs whose followed plan has not advanced for ``k`` steps short of its end (``follow_stall_steps``).

    Checked every ``k`` decisions, so the device-to-host copy of the ``(B,)`` flags happens once per ``k`` steps.
    """
    progress, moved = cache.extra.get("progress"), cache.extra.get("moved")
    if progress is None or moved is None or cache.plans is None or cache.calls % k:
        return np.zeros(0, dtype=np.int64)
    age = torch.as_tensor(cache.age, device=progress.device)
    stuck = (age - moved >= k) & (progress < cache.plans.shape[1] - 1)
    return np.flatnonzero(stuck.cpu().numpy())
