"""Multi-agent zoo entries (``algo: MADiff``): the registry backend for PettingZoo Parallel envs.

Same methods as :class:`diffagents.zoo.registry.SingleAgent`; the registry picks one in ``_backend``. The env is a
zero-argument factory of the Parallel env that the dataset's ``diffagents_eval_env`` metadata names (only
``mpe2`` / ``pettingzoo`` constructors, see :func:`diffagents.wrappers.pettingzoo.env_fn_from_dataset`); the model
card stores that spec as its ``env``, so loading a trained entry needs no dataset. Recipe hyperparameters are
applied on top of the agent class's ``cpu_preset`` (MADiff: :data:`diffagents.agents.multiagent.madiff_config.CPU_HYPERPARAMETERS`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from diffagents.zoo.single_agent import SingleAgent

if TYPE_CHECKING:
    from diffagents.zoo.catalog import ZooEntry


class MultiAgent(SingleAgent):
    """How the registry builds, saves and evaluates MADiff entries (build / learn / save / load as for
    single agents, with the env factory as ``env``)."""


    @staticmethod
    def hyperparameters(entry: ZooEntry) -> dict[str, Any]:
        from diffagents.core.registry import get_agent_class

        return {**getattr(get_agent_class(entry.algo), "cpu_preset", {}), **entry.hyperparameters}

    @staticmethod
    def learn(agent: Any, steps: int, progress_bar: bool, checkpoint_dir: Path | None = None) -> None:
        """``learn``, resumable from ``checkpoint_dir`` like every kernel agent."""
        agent.learn(steps, progress_bar=progress_bar, checkpoint_dir=checkpoint_dir)

    @staticmethod
    def env(entry: ZooEntry, dataset: Any = None) -> Callable[[], Any]:
        """The Parallel-env factory: from ``dataset``, else the card of a trained entry, else the dataset
        (generated when missing)."""
        from diffagents.wrappers.pettingzoo import env_fn_from_dataset

        if dataset is None and entry.card_path.is_file():
            spec = json.loads(entry.card_path.read_text()).get("env")
            if isinstance(spec, dict):
                return env_fn_from_dataset({"diffagents_eval_env": spec})
        if dataset is None:
            from diffagents.data import make_dataset

            dataset = make_dataset(entry.dataset, size=entry.dataset_size)
        return env_fn_from_dataset(dataset)

    @staticmethod
    def env_label(entry: ZooEntry, dataset: Any) -> Any:
        """The card's ``env``: ``{"constructor": "mpe2.simple_spread_v3.parallel_env", "kwargs": {...}}``."""
        return dataset.storage.metadata["diffagents_eval_env"]

    @staticmethod
    def evaluate(agent: Any, env: Any, n_episodes: int, seed: int, reference: tuple[float, float] | None
                 ) -> dict[str, Any]:
        """Team returns over ``n_episodes`` (episode ``i`` seeded ``seed + i``), deterministic actions."""
        from diffagents.wrappers.pettingzoo import evaluate
        from diffagents.zoo.single_agent import return_scores

        res = evaluate(agent, env, n_episodes=n_episodes, seed=seed, reference_scores=reference)
        return return_scores(res["returns"], res.get("normalized"), seed)
