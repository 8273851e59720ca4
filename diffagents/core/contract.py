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

Class attributes (capability flags): ``batch_spec`` (one of :data:`BATCH_SPECS`), ``acting_fields`` (config
fields that change how the agent acts, never what it learns), ``online_capable`` (learns from env interaction),
``distillable`` (a teacher for :func:`diffagents.distill`), ``sampler_swappable`` (``set_sampler`` replaces its
act-time diffusion sampler), ``ema_acts`` (the EMA copy is the acting network).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch

#: The batch layouts an agent can declare (``batch_spec``); :mod:`diffagents.data.batches` builds each one from a
#: Minari dataset or a Tianshou / SB3 buffer.
TRANSITIONS = "transitions"  # obs, action, reward, next_obs, terminated: (B, D) each
WINDOWS = "windows"  # observations (B, H, D), actions (B, H, A), returns_to_go (B, H), mask (B, H)
CHUNKS = "chunks"  # obs (B, Tp, D), actions (B, Tp, A): observation history + action chunk (Diffusion Policy)
JOINT_WINDOWS = "joint_windows"  # observations (B, N, W, D) + inverse-dynamics pairs (MADiff)
TRANSITION_ROWS = "transition_rows"  # x = [s, a, r, s', terminal] rows (B, 2D + A + 2) (SynthER)
BATCH_SPECS = (TRANSITIONS, WINDOWS, CHUNKS, JOINT_WINDOWS, TRANSITION_ROWS)


@runtime_checkable
class Learner(Protocol):
    """What the one training loop (:func:`diffagents.core.loop.run_training`) needs from an agent."""

    num_timesteps: int
    device: torch.device

    def sample_batch(self, generator: torch.Generator | None) -> dict[str, torch.Tensor]:
        """One minibatch of the agent's ``batch_spec``, on its device."""
        ...

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One gradient step; statistics as device tensors."""
        ...

    def set_training_mode(self, mode: bool) -> None:
        """``train()`` / ``eval()`` on every network."""
        ...


def check_batch_spec(cls: type, spec: Any) -> None:
    """Raise TypeError unless ``spec`` is one of :data:`BATCH_SPECS` (called at registration time)."""
    if spec not in BATCH_SPECS:
        raise TypeError(f"{cls.__name__}.batch_spec: expected one of {BATCH_SPECS}, got {spec!r}")
