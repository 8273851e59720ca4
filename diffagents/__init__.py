"""diffagents: diffusion models for reinforcement learning as drop-in SB3 / Tianshou agents.

Agents come from the one registry (:mod:`diffagents.core.registry`): ``from diffagents import DiffusionQL``
resolves any registered class lazily, so ``import diffagents`` stays fast and never imports tianshou, pettingzoo
or minari. ``diffagents.list_agents()`` names them; ``diffagents.get_agent_class(name)`` finds one by name.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_FUNCTIONS = {  # public functions that are not agents
    "distill": "diffagents.agents.policies.distill",
    "get_agent_class": "diffagents.core.registry",
    "list_agents": "diffagents.core.registry",
}

__all__ = ["__version__", *_FUNCTIONS]


def __getattr__(name: str) -> Any:
    if name in _FUNCTIONS:
        return getattr(importlib.import_module(_FUNCTIONS[name]), name)
    if name[:1].isupper():
        from diffagents.core.registry import agent_infos

        for info in agent_infos():
            if info.name == name:
                return info.cls
    raise AttributeError(f"module 'diffagents' has no attribute {name!r}")


def __dir__() -> list[str]:
    from diffagents.core.registry import list_agents

    return sorted([*globals(), *_FUNCTIONS, *list_agents()])
