"""The one agent registry (docs/architecture.md, "The registry").

An agent class joins the package by decorating it with :func:`register_agent`; that single line makes it

* ``diffagents.<Name>`` (lazy attribute of the top-level package),
* ``diffagents.get_agent_class(name)`` (case-insensitive, ``-`` and ``_`` ignored) and an entry of
  ``diffagents.list_agents()``,
* a ``diffagents train <name>`` target, a zoo algorithm, a ``diffagents bench`` row and a member of the
  parametrized contract tests (``tests/test_agent_contract.py``, ``tests/test_kernel.py``).

Nobody keeps another list of agent names. Agent modules are found by importing every module of the
:mod:`diffagents.agents` package (recursively) the first time the registry is asked, so ``import diffagents``
stays fast and a new paper file needs no edit anywhere else.

The registry records each class's **kind**, which front-end serves it:

``offline``      an SB3 ``BaseAlgorithm`` trained from a Minari dataset (one timestep = one gradient step)
``online``       an SB3 ``OffPolicyAlgorithm`` that collects its own data (one timestep = one env step)
``multiagent``   a PettingZoo Parallel agent trained from a multi-agent Minari dataset
``generator``    a transition generator (``fit`` / ``sample``), evaluated by dynamics fidelity
``distilled``    a student trained from a teacher agent (``distill(teacher)``), not from a dataset alone
``facade``       a name that builds one of several concrete classes (``CPQL`` -> offline or online CPQL)
"""

from __future__ import annotations

import importlib
import pkgutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T", bound=type)

KINDS = ("offline", "online", "multiagent", "generator", "distilled", "facade")
#: Concrete kinds: classes built, trained, saved and loaded directly (every kind but ``facade``).
CONCRETE_KINDS = tuple(k for k in KINDS if k != "facade")


@dataclass(frozen=True)
class AgentInfo:
    """One registered agent class."""

    name: str
    cls: type
    kind: str

    @property
    def concrete(self) -> bool:
        return self.kind != "facade"


_REGISTRY: dict[str, AgentInfo] = {}
_LOCK = threading.Lock()
_discovered = False
AGENT_PACKAGE = "diffagents.agents"


def _key(name: str) -> str:
    return name.lower().replace("-", "").replace("_", "")


def register_agent(cls: T | None = None, *, kind: str = "offline", name: str | None = None) -> Any:
    """Class decorator registering an agent (``@register_agent`` or ``@register_agent(kind="online")``).

    Sets ``cls.agent_kind`` and ``cls.agent_name`` (default: the class name).

    Raises:
        ValueError: ``kind`` is not one of :data:`KINDS`, or another class already has the name.
    """
    if kind not in KINDS:
        raise ValueError(f"register_agent: kind must be one of {KINDS}, got {kind!r}")

    def deco(c: T) -> T:
        if kind != "facade":
            from diffagents.core.contract import check_registrable

            check_registrable(c)
        label = name or c.__name__
        info = AgentInfo(label, c, kind)
        key = _key(label)
        existing = _REGISTRY.get(key)
        if existing is not None and existing.cls.__qualname__ != c.__qualname__:
            raise ValueError(f"register_agent: name {label!r} is taken by {existing.cls.__module__}."
                             f"{existing.cls.__qualname__}")
        c.agent_kind = kind  # type: ignore[attr-defined]
        c.agent_name = label  # type: ignore[attr-defined]
        _REGISTRY[key] = info
        return c

    return deco(cls) if cls is not None else deco


def discover() -> None:
    """Import every module of :data:`AGENT_PACKAGE` once, so their ``@register_agent`` lines run."""
    global _discovered
    if _discovered:
        return
    with _LOCK:
        if _discovered:
            return
        pkg = importlib.import_module(AGENT_PACKAGE)
        for mod in pkgutil.walk_packages(pkg.__path__, prefix=f"{AGENT_PACKAGE}."):
            importlib.import_module(mod.name)
        _discovered = True


def agent_infos(kind: str | Callable[[AgentInfo], bool] | None = None) -> list[AgentInfo]:
    """Registered agents sorted by name; ``kind`` filters by kind name or predicate."""
    discover()
    infos = sorted(_REGISTRY.values(), key=lambda i: i.name.lower())
    if kind is None:
        return infos
    if callable(kind):
        return [i for i in infos if kind(i)]
    return [i for i in infos if i.kind == kind]


def list_agents(kind: str | None = None) -> list[str]:
    """Names of the registered agents (``diffagents.list_agents()``), optionally of one kind."""
    return [i.name for i in agent_infos(kind)]


def get_agent_info(name: str) -> AgentInfo:
    """The :class:`AgentInfo` registered under ``name`` (case-insensitive; ``-`` / ``_`` ignored).

    Raises:
        ValueError: no agent has that name (the message lists the registered ones).
    """
    discover()
    info = _REGISTRY.get(_key(str(name)))
    if info is None:
        raise ValueError(f"algorithm: unknown agent {name!r}; expected one of {list_agents()}")
    return info


def get_agent_class(name: str) -> Any:
    """The agent class registered under ``name`` (``"diffusionql"`` -> :class:`~diffagents.DiffusionQL`)."""
    return get_agent_info(name).cls


def kind_of(name: str) -> str:
    """The kind of the agent registered under ``name``."""
    return get_agent_info(name).kind
