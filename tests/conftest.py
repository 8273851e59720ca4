"""Shared test fixtures: a private Minari dataset root and a tiny in-memory dataset builder."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

try:  # an uninstalled checkout (PYTHONPATH=.) has no diffagents.wrappers: map it to the top-level wrappers/
    import diffagents.wrappers  # noqa: F401
except ModuleNotFoundError:
    import sys

    import wrappers

    sys.modules["diffagents.wrappers"] = wrappers


@pytest.fixture(scope="session", autouse=True)
def minari_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Point MINARI_DATASETS_PATH at a per-session temporary folder (tests never touch ~/.minari)."""
    old = os.environ.get("MINARI_DATASETS_PATH")
    root = str(tmp_path_factory.mktemp("minari"))
    os.environ["MINARI_DATASETS_PATH"] = root
    yield root
    if old is None:
        os.environ.pop("MINARI_DATASETS_PATH", None)
    else:
        os.environ["MINARI_DATASETS_PATH"] = old


@pytest.fixture
def make_minari(request: pytest.FixtureRequest) -> Callable[..., Any]:
    """``make_minari(episodes, observation_space, action_space)`` -> MinariDataset built from raw episode dicts
    (keys observations, actions, rewards, terminations, truncations) with ``create_dataset_from_buffers``."""
    import warnings

    import minari
    from minari.data_collector import EpisodeBuffer

    counter = iter(range(10**6))

    def build(episodes: list[dict[str, Any]], observation_space: Any, action_space: Any) -> Any:
        name = f"test/{request.node.name.replace('[', '-').replace(']', '').replace('_', '-')}-{next(counter)}-v0"
        buffers = [EpisodeBuffer(id=i, **ep) for i, ep in enumerate(episodes)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return minari.create_dataset_from_buffers(
                name.lower(), buffers, observation_space=observation_space, action_space=action_space,
            )

    return build
