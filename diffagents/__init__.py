"""diffagents: diffusion models for reinforcement learning as drop-in SB3 / Tianshou agents.

Agents are imported lazily (``from diffagents import DiffusionQL``) so that ``import diffagents`` stays fast
and never imports tianshou, pettingzoo or minari.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "DiffusionQL": "diffagents.agents.diffusion_ql",
    "IDQL": "diffagents.agents.idql",
    "DiffusionPolicy": "diffagents.agents.diffusion_policy",
    "CPQL": "diffagents.agents.cpql",
    "Diffuser": "diffagents.agents.diffuser",
    "DecisionDiffuser": "diffagents.agents.decision_diffuser",
    "SynthER": "diffagents.agents.synther",
    "MADiff": "diffagents.agents.madiff",
    "distill": "diffagents.agents.distill",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'diffagents' has no attribute {name!r}")
