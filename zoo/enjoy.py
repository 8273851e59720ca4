"""Record an episode of a zoo agent to a GIF or MP4 (``diffagents zoo enjoy ID``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def record_episode(zoo_id: str, path: str | Path, *, seed: int = 0, max_steps: int = 1000, fps: int = 30,
                   scale: float = 1.0) -> Path:
    """Run one deterministic episode with ``render_mode="rgb_array"`` and write the frames with imageio.

    Multi-agent (MADiff) entries run on their PettingZoo Parallel env, which must accept ``render_mode`` (mpe2
    does). ``scale`` < 1 downsizes the frames (smaller GIFs).
    """
    import gymnasium as gym
    import imageio.v2 as imageio
    from diffagents.zoo.registry import _env, _require_weights, load

    entry = _require_weights(zoo_id)  # before making any env or dataset
    if entry.generator:
        raise ValueError(f"zoo enjoy: {zoo_id!r} is a transition generator ({entry.algo}), not an agent: it has no "
                         "episode to record; use `diffagents zoo eval` for its dynamics fidelity")
    if entry.multi_agent:  # _env is a PettingZoo Parallel env factory
        env = _env(entry)(render_mode="rgb_array")
    else:
        base = _env(entry)
        env = gym.make(base.spec.id, render_mode="rgb_array", **(base.spec.kwargs or {})) if base.spec else base
    agent = load(zoo_id, env=env)
    obs, _ = env.reset(seed=seed)
    frames = [first_frame(env, zoo_id)]
    state, start = None, np.array([True])
    for _ in range(max_steps):
        action, state = agent.predict(obs, state=state, episode_start=start, deterministic=True)
        start = np.array([False])
        obs, _, term, trunc, _ = env.step(action)
        frames.append(env.render())
        if (not env.agents) if entry.multi_agent else (term or trunc):
            break
    out = Path(path)
    images: list[Any] = [np.asarray(f) for f in frames if f is not None]
    if scale != 1.0:
        from PIL import Image

        size = (max(1, round(images[0].shape[1] * scale)), max(1, round(images[0].shape[0] * scale)))
        images = [np.asarray(Image.fromarray(f).resize(size, Image.Resampling.LANCZOS)) for f in images]
    imageio.mimsave(out, images, duration=1000 / fps)
    return out


def first_frame(env: Any, zoo_id: str) -> Any:
    """``env.render()``, with the setting to change named when MuJoCo has no OpenGL context to draw with."""
    try:
        return env.render()
    except Exception as exc:
        if type(exc).__module__.split(".")[0] != "mujoco":
            raise
        raise RuntimeError(f"zoo enjoy {zoo_id}: MuJoCo could not render ({exc}); it needs an OpenGL backend: set "
                           "MUJOCO_GL=egl (GPU) or MUJOCO_GL=osmesa (CPU, with libOSMesa installed)") from exc
