"""The agent kernel (docs/architecture.md): the learner contract (:mod:`~diffagents.core.contract`),
``AgentConfig`` (:mod:`~diffagents.core.config`), the one training loop (:mod:`~diffagents.core.loop`), the one
checkpoint format (:mod:`~diffagents.core.checkpoint`), the registry (:mod:`~diffagents.core.registry`) and the
front-end of agents outside SB3 (:mod:`~diffagents.core.standalone`)."""

from __future__ import annotations

from diffagents.core.config import AgentConfig
from diffagents.core.registry import agent_infos, get_agent_class, list_agents, register_agent

__all__ = ["AgentConfig", "agent_infos", "get_agent_class", "list_agents", "register_agent"]
