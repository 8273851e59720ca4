"""Axis 4: what a diffusion sample means for RL (action policy, action chunks, consistency policy, trajectory
planner, transition synthesizer, joint multi-agent planner)."""

from diffagents.roles.action_policy import DiffusionActionPolicy, scored_candidates, select_candidates
from diffagents.roles.chunk_policy import ActionChunkPolicy
from diffagents.roles.consistency_policy import ConsistencyActionPolicy, DistilledConsistencyPolicy
from diffagents.roles.planner import TrajectoryPlanner
from diffagents.roles.synthesizer import TransitionSynthesizer

__all__ = ["ActionChunkPolicy", "ConsistencyActionPolicy", "DiffusionActionPolicy", "DistilledConsistencyPolicy",
           "TrajectoryPlanner", "TransitionSynthesizer", "scored_candidates",
           "select_candidates"]
