"""Generator zoo entries (``algo: SynthER``): the registry backend for SynthER transition generators.

A generator is not an agent: it has no policy to roll out, so its card reports the **dynamics fidelity** of
``eval_episodes`` sampled transitions instead of returns (Lu et al. 2023, Sec. 4: put the simulator in the
generated ``s``, apply the generated ``a`` and compare ``(r, s')``; :mod:`diffagents.agents.synthesis.synther_fidelity`).
The recipe's hyperparameters are :class:`~diffagents.agents.synthesis.synther.SynthERConfig` fields; ``steps`` are
generator gradient steps. ``benchmarks/synther_offline.py`` adds the downstream result (d3rlpy TD3+BC on the
upsampled vs the original data) to the card under ``downstream``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from diffagents.zoo.single_agent import SingleAgent

if TYPE_CHECKING:
    from diffagents.zoo.catalog import ZooEntry

    from diffagents.agents.synthesis.synther import SynthER


class Generator(SingleAgent):
    """How the registry builds, fits, saves, loads and evaluates SynthER entries (the env is the simulator that
    judges fidelity: the recipe's ``env`` id or the dataset's eval env, as for single agents)."""


    @classmethod
    def build(cls, entry: ZooEntry, dataset: Any, env: Any, device: str) -> SynthER:
        return cls.agent_class(entry).from_dataset(dataset, seed=entry.seed, device=device, **cls.hyperparameters(entry))

    @staticmethod
    def learn(agent: SynthER, steps: int, progress_bar: bool, checkpoint_dir: Path | None = None) -> None:
        """``fit`` for ``steps``, resumable from ``checkpoint_dir`` like every kernel agent."""
        agent.fit(steps=steps, progress_bar=progress_bar, checkpoint_dir=checkpoint_dir)

    @staticmethod
    def save(agent: SynthER, path: Path, weights_dtype: str | None) -> None:
        # config + EMA weights (they stand in for the denoiser they average) + normaliser statistics
        agent.save(path, weights_dtype=weights_dtype, exclude=["optimizers", "training_weights"])

    @classmethod
    def load(cls, entry: ZooEntry, env: Any, device: str, path: Path | None = None) -> SynthER:
        """The fitted generator (it needs no env)."""
        return cls.agent_class(entry).load(path or entry.weights, device=device)

    @staticmethod
    def evaluate(agent: SynthER, env: Any, n_samples: int, seed: int, reference: Any = None) -> dict[str, Any]:
        """Dynamics fidelity of ``n_samples`` transitions sampled with ``seed``."""
        from diffagents.agents.synthesis.synther_fidelity import generator_fidelity

        return {"samples": n_samples, "seed": seed, **generator_fidelity(agent, env, n_samples, seed)}
