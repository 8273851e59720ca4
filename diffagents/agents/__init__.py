"""One file per paper: a typed config dataclass plus an agent class registered with the kernel
(:func:`diffagents.core.registry.register_agent`); the registry finds them by importing this package's modules."""

from __future__ import annotations

from diffagents.core.registry import get_agent_class, list_agents

__all__ = ["get_agent_class", "list_agents"]
