"""Small Gymnasium environments shipped with ``diffagents.data`` (registered on import)."""

from __future__ import annotations

import gymnasium as gym

TOY_MULTIMODAL_ID = "diffagents/ToyMultimodal-v0"

if TOY_MULTIMODAL_ID not in gym.registry:
    gym.register(
        id=TOY_MULTIMODAL_ID,
        entry_point="diffagents.data.envs.toy_multimodal:ToyMultimodalEnv",
        max_episode_steps=50,
    )

__all__ = ["TOY_MULTIMODAL_ID"]
