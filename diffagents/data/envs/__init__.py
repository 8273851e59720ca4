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


def ensure_registered(env_id: str) -> None:
    """Register the Gymnasium-Robotics envs (PointMaze, AntMaze, ...) when ``env_id`` is one of theirs.

    ``gymnasium_robotics`` registers nothing until ``gym.register_envs(gymnasium_robotics)`` runs, so a plain
    ``gym.make("PointMaze_UMaze-v3")`` fails in a fresh process; ids already registered are left alone.
    """
    if env_id in gym.registry:
        return
    try:
        import gymnasium_robotics
    except ImportError:  # not installed: gym.make raises its own "not found" error
        return
    gym.register_envs(gymnasium_robotics)


__all__ = ["TOY_MULTIMODAL_ID", "ensure_registered"]
