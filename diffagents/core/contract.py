"""The learner contract every agent implements (docs/architecture.md, "The learner contract").

An agent is a typed config (:class:`~diffagents.core.config.AgentConfig`) plus four methods and a few class
attributes; the kernel (training loop, checkpoints, registry, front-ends) does everything else:

* ``build(obs_dim, act_dim) -> dict[str, nn.Module]``: the networks (all saved; an EMA copy, if any, is kept in
  ``self.ema``),
* ``train_step(batch) -> dict[str, Tensor]``: one gradient step on a batch of the declared :data:`batch_spec`,
  statistics as device tensors (the loop reads them back only at logging intervals),
* ``act(obs, state, episode_start, deterministic) -> (actions in [-1, 1], state)``: normalised observations in,
  scaled actions out, plan / chunk caches carried in ``state``,
* ``normalize_obs(obs) -> obs``: the fitted observation normaliser applied to raw flat observations,
* ``tiny_config() -> dict``: hyperparameters that make a behaviour check run in seconds on one CPU thread (used
  by the contract tests and ``diffagents bench --quick``).

Class attributes (capability flags, :class:`AgentTraits`): ``batch_spec`` (one of :data:`BATCH_SPECS`),
``acting_fields`` (config fields that change how the agent acts, never what it learns), ``distillable`` (a teacher
for :func:`diffagents.distill`), ``sampler_swappable`` (``set_sampler`` replaces its act-time diffusion sampler),
``ema_acts`` (the EMA copy is the acting network); an agent that learns from env interaction has the registry kind
``"online"``.

The one training loop (:func:`diffagents.core.loop.run_training`) calls ``sample_batch(generator)``,
``train_step(batch)`` and ``set_training_mode(mode)`` and reads ``updaters``, ``config``, the counters and the
logger; the checkpoint (:mod:`diffagents.core.checkpoint`) reads ``nets``, ``ema``, ``updaters``, ``normalizers``,
``checkpoint_spaces()`` and the extra-state hooks.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from diffagents.core.config import AgentConfig

#: The batch layouts an agent can declare (``batch_spec``); :mod:`diffagents.data.batches` builds each one from a
#: Minari dataset or a Tianshou / SB3 buffer.
TRANSITIONS = "transitions"  # obs, action, reward, next_obs, terminated: (B, D) each
WINDOWS = "windows"  # observations (B, H, D), actions (B, H, A), returns_to_go (B, H), mask (B, H)
CHUNKS = "chunks"  # obs (B, Tp, D), actions (B, Tp, A): observation history + action chunk (Diffusion Policy)
JOINT_WINDOWS = "joint_windows"  # observations (B, N, W, D) + inverse-dynamics pairs (MADiff)
TRANSITION_ROWS = "transition_rows"  # x = [s, a, r, s', terminal] rows (B, 2D + A + 2) (SynthER)
BATCH_SPECS = (TRANSITIONS, WINDOWS, CHUNKS, JOINT_WINDOWS, TRANSITION_ROWS)


class AgentTraits:
    """The class-level half of the contract, shared by every front-end (``OfflineAgent``, SB3 online agents,
    ``StandaloneAgent``): capability flags and the default (empty) checkpoint hooks. Online-capable agents are
    those of kind ``"online"`` (:mod:`diffagents.core.registry`)."""

    config_class: ClassVar[type[AgentConfig]] = AgentConfig
    agent_name: ClassVar[str | None] = None  # set by @register_agent
    agent_kind: ClassVar[str] = "offline"  # set by @register_agent
    batch_spec: ClassVar[str] = TRANSITIONS
    """The batch layout ``train_step`` takes (:data:`BATCH_SPECS`)."""
    distillable: ClassVar[bool] = False
    """A teacher for :func:`diffagents.distill` (a VP diffusion actor over [-1, 1] actions as its EMA model)."""
    sampler_swappable: ClassVar[bool] = False
    """``set_sampler`` replaces the act-time diffusion sampler."""
    ema_acts: ClassVar[bool] = True
    """True when the EMA copy is the acting network, so ``save(exclude=["training_weights"])`` may leave out the
    network it averages; False where the EMA is only a training target (consistency models) or there is none."""
    acting_fields: ClassVar[frozenset[str]] = frozenset({"eval_seed", "cuda_graph"})
    """Config fields that only change how the trained networks act, never what they learn (``diffagents zoo
    rescore`` may change them on shipped weights, and a resumed run may too; tests/test_agent_contract.py trains each
    agent with every one of them changed and checks that the weights stay the same)."""

    @classmethod
    def tiny_config(cls) -> dict[str, Any]:
        """Hyperparameters that make a behaviour check run in seconds on one CPU thread (contract tests, ``bench
        --quick``). Required: :func:`~diffagents.core.registry.register_agent` refuses a concrete agent that does
        not define it."""
        raise NotImplementedError(f"{cls.__name__}.tiny_config")

    @classmethod
    def bench_config(cls) -> dict[str, Any]:
        """Hyperparameters ``diffagents bench`` times the agent at (default: the paper's, i.e. the config's)."""
        return {}

    def extra_state(self) -> dict[str, Any]:
        """JSON-able agent-specific state to save (override)."""
        return {}

    def load_extra_state(self, extra: dict[str, Any]) -> None:
        """Restore what :meth:`extra_state` saved (override)."""

    def extra_arrays(self) -> dict[str, np.ndarray]:
        """Agent-specific arrays to save beside the weights (override; stored exactly, never pickled)."""
        return {}

    def load_extra_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Restore what :meth:`extra_arrays` saved (override; raise ValueError naming a malformed array)."""

    def restore_spaces(self, meta: dict[str, Any]) -> None:
        """Restore from a checkpoint's metadata what ``checkpoint_spaces`` saved beyond the spaces (override)."""


def check_registrable(cls: type) -> None:
    """Raise TypeError unless ``cls`` declares a valid ``batch_spec`` and defines ``tiny_config`` (called by
    :func:`~diffagents.core.registry.register_agent` for concrete agents)."""
    spec = getattr(cls, "batch_spec", None)
    if spec not in BATCH_SPECS:
        raise TypeError(f"{cls.__name__}.batch_spec: expected one of {BATCH_SPECS}, got {spec!r}")
    tiny = getattr(cls, "tiny_config", None)
    if tiny is None or getattr(tiny, "__func__", None) is AgentTraits.tiny_config.__func__:  # type: ignore[attr-defined]
        raise TypeError(f"{cls.__name__}.tiny_config: every registered agent defines its tiny test configuration")
