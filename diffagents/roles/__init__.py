"""Axis 4: what a diffusion sample means for RL (action policy, trajectory planner, transition synthesizer)."""

from diffagents.roles.action_policy import DiffusionActionPolicy, select_candidates
from diffagents.roles.planner import TrajectoryPlanner

__all__ = ["DiffusionActionPolicy", "TrajectoryPlanner", "select_candidates"]
