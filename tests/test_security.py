"""Crafted files with pickle payloads in the other formats we read never execute code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest


class _Payload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return (Path.touch, (Path(self.marker),))


def test_replay_buffer_npz_with_pickled_object_is_refused(tmp_path: Path) -> None:
    from diffagents.wrappers.sb3 import SynthERReplayBuffer

    env = gym.make("Pendulum-v1")
    buf = SynthERReplayBuffer(100, env.observation_space, env.action_space, device="cpu")
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.npz"
    np.savez(evil, counters=np.array([_Payload(str(marker))], dtype=object))
    with pytest.raises(ValueError):
        buf.load_npz(str(evil))
    assert not marker.exists()


def test_dataset_cache_with_pickled_object_is_refused(tmp_path: Path) -> None:
    from diffagents.data import cache

    marker = tmp_path / "pwned"
    folder = tmp_path / "cache"
    folder.mkdir()
    for name in cache.ARRAYS:
        np.save(folder / f"{name}.npy", np.array([_Payload(str(marker))], dtype=object), allow_pickle=True)
    (folder / "done.json").write_text('{"dropped": []}')  # a complete-looking cache entry
    assert cache.load_cached(folder) is None  # refused (treated as unreadable, the data is re-read)
    assert not marker.exists()
