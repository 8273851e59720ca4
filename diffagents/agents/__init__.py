"""One file per paper: a typed config dataclass plus an SB3 ``BaseAlgorithm`` subclass."""

from __future__ import annotations

import importlib
from typing import Any

_AGENTS = {
    "diffusionql": ("diffagents.agents.diffusion_ql", "DiffusionQL"),
    "idql": ("diffagents.agents.idql", "IDQL"),
    "diffusionpolicy": ("diffagents.agents.diffusion_policy", "DiffusionPolicy"),
    "cpql": ("diffagents.agents.cpql", "CPQL"),
    "diffuser": ("diffagents.agents.diffuser", "Diffuser"),
    "decisiondiffuser": ("diffagents.agents.decision_diffuser", "DecisionDiffuser"),
    "distilledpolicy": ("diffagents.agents.distill", "DistilledPolicy"),
    "offlinecpql": ("diffagents.agents.cpql", "OfflineCPQL"),
    "onlinecpql": ("diffagents.agents.cpql", "OnlineCPQL"),
}


def available_agents() -> list[str]:
    """Agent class names whose module is present in this installation."""
    out = []
    for module, name in _AGENTS.values():
        try:
            importlib.import_module(module)
        except ModuleNotFoundError:
            continue
        out.append(name)
    return out


def get_agent_class(name: str) -> Any:
    """Resolve an agent class by name, case-insensitively (``"diffusionql"`` -> :class:`DiffusionQL`)."""
    key = name.lower().replace("-", "").replace("_", "")
    if key not in _AGENTS:
        raise ValueError(f"algorithm: unknown agent {name!r}; expected one of {sorted(n for _, n in _AGENTS.values())}")
    module, cls = _AGENTS[key]
    try:
        return getattr(importlib.import_module(module), cls)
    except ModuleNotFoundError as exc:
        raise ValueError(f"algorithm: {cls} is not implemented in this version of diffagents") from exc
