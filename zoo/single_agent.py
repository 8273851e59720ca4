"""The default zoo backend: how the zoo builds, trains, saves, loads and evaluates SB3-style agents on
Gymnasium envs; :mod:`~diffagents.zoo.multi_agent`, :mod:`~diffagents.zoo.generator` and
:mod:`~diffagents.zoo.distilled` adapt it to the other kinds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from diffagents.zoo.catalog import ZooEntry


class SingleAgent:
    """How the registry builds, saves and evaluates SB3-style agents on Gymnasium envs (the default backend)."""

    resumable = True  # ``learn`` takes a ``checkpoint_dir`` and resumes from it (``zoo train --checkpoint-dir``)

    @staticmethod
    def agent_class(entry: ZooEntry) -> Any:
        from diffagents.core.registry import get_agent_class

        return get_agent_class(entry.algo)

    @staticmethod
    def hyperparameters(entry: ZooEntry) -> dict[str, Any]:
        return dict(entry.hyperparameters)

    @classmethod
    def build(cls, entry: ZooEntry, dataset: Any, env: Any, device: str) -> Any:
        return cls.agent_class(entry)(env=env, dataset=dataset, seed=entry.seed, device=device,
                                      **cls.hyperparameters(entry))

    @staticmethod
    def learn(agent: Any, steps: int, progress_bar: bool, checkpoint_dir: Path | None = None) -> None:
        agent.learn(steps, progress_bar=progress_bar, checkpoint_dir=checkpoint_dir)

    @staticmethod
    def save(agent: Any, path: Path, weights_dtype: str | None) -> None:
        # inference-only (no optimizers, the EMA copy stands in for the network it averages): keeps the zoo small
        agent.save(path, exclude=["optimizers", "training_weights"], weights_dtype=weights_dtype)

    @classmethod
    def load(cls, entry: ZooEntry, env: Any, device: str, path: Path | None = None) -> Any:
        """The trained agent (from ``path``, default the entry's weights), bound to ``env`` (default: :meth:`env`)."""
        return cls.agent_class(entry).load(path or entry.weights, env=cls.env(entry) if env is None else env,
                                           device=device)

    @staticmethod
    def env(entry: ZooEntry, dataset: Any = None) -> Any:
        """A Gymnasium env: the recipe's ``env`` id, or the dataset's eval env."""
        import gymnasium as gym

        if entry.env:  # by registered id only: "module:Env" ids would import a module the recipe names
            from diffagents.data.safe_env import registered_spec

            registered_spec(entry.env, f"zoo recipe {entry.id} field 'env'")
            return gym.make(entry.env)
        if dataset is None:
            from diffagents.data import make_dataset

            dataset = make_dataset(entry.dataset, size=entry.dataset_size)
        from diffagents.data.safe_env import make_env_from_dataset

        return make_env_from_dataset(dataset)

    @staticmethod
    def card_extra(entry: ZooEntry) -> dict[str, Any]:
        """Backend-specific fields of the model card (none for plain agents)."""
        return {}

    @staticmethod
    def env_label(entry: ZooEntry, dataset: Any) -> Any:
        return entry.env or json.loads(dataset.storage.metadata.get("eval_env_spec", "{}") or "{}").get("id")

    @staticmethod
    def evaluate(agent: Any, env: Any, n_episodes: int, seed: int, reference: tuple[float, float] | None,
                 n_envs: int = 1) -> dict[str, Any]:
        """Deterministic episodes on ``env`` (with ``n_envs > 1``, a zero-argument env factory: that many copies
        stepped together, env ``i`` seeded ``seed + i``)."""
        from diffagents.evaluation import evaluate_agent

        res = evaluate_agent(agent, env, n_episodes=n_episodes, seed=seed, ref_scores=reference, n_envs=n_envs)
        return return_scores(res.returns, res.normalized, seed)


def return_scores(returns: Any, normalized: Any, seed: int) -> dict[str, Any]:
    """The evaluation block of a card: ``episodes``, ``seed``, ``deterministic``, ``return_mean/std`` (and
    ``normalized_mean/std`` when there are reference scores) of deterministic episode returns."""
    import numpy as np

    out: dict[str, Any] = {"episodes": len(returns), "seed": seed, "deterministic": True,
                           "return_mean": float(np.mean(returns)), "return_std": float(np.std(returns))}
    if normalized is not None:
        out.update(normalized_mean=float(np.mean(normalized)), normalized_std=float(np.std(normalized)))
    return out
