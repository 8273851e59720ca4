"""The pretrained zoo, shipped inside the package (no network): ``diffagents.zoo``.

Zoo ids are ``<algo>-<env>-<dataset>`` in lower case (``diffusionql-pendulum-expert``). Each entry has a recipe
(``recipes/<id>.yaml``: algorithm, dataset recipe, env, gradient steps, seed, hyperparameters), weights
(``weights/<id>.zip``, the JSON + safetensors checkpoint format of :mod:`diffagents.persistence`, never unpickled)
and a model card (``cards/<id>.json``: dataset, steps, seed, hardware, wall time, the command that reproduces it
and the evaluation, mean +- std over >= 20 episodes with the normalized score). A recipe without trained
weights is listed as untrained (``list_agents(trained_only=False)``) until ``diffagents zoo train ID`` runs it.
After a change to a recipe's acting settings only (e.g. how a planner executes its plans), ``diffagents zoo
rescore ID`` writes them into the shipped checkpoint and re-evaluates its card without training again. A recipe
longer than one sitting trains in pieces: ``diffagents zoo train ID --checkpoint-dir DIR`` keeps full training
checkpoints in ``DIR`` and, run again, resumes from the newest one with the weights an uninterrupted run would reach
(the card then sums the pieces' wall time and names ``resumed_from_step``).

Multi-agent entries (``algo: MADiff``, see :mod:`diffagents.zoo.multi_agent`) run on PettingZoo Parallel envs:
``make_env`` returns the env factory, ``load`` a MADiff bound to it, ``evaluate`` reports team returns.
Generator entries (``algo: SynthER``, see :mod:`diffagents.zoo.generator`) are transition generators: ``load``
returns a fitted :class:`~diffagents.SynthER` (``.sample(n)``, ``.upsample(dataset, n)``) and ``evaluate`` /
the card report the dynamics fidelity of sampled transitions against the simulator instead of returns.
Distilled entries (``algo: DistilledPolicy``, ``teacher: <zoo id>``, see :mod:`diffagents.zoo.distilled`) are
one-step students of a trained zoo teacher; their card names the teacher and repeats its evaluation.

    >>> from diffagents import zoo
    >>> zoo.list_agents()
    >>> agent = zoo.load("diffusionql-pendulum-expert")
    >>> zoo.evaluate("diffusionql-pendulum-expert", n_episodes=20, seed=0)
"""

from __future__ import annotations

from diffagents.zoo.registry import (
    ZooEntry,
    card,
    entries,
    evaluate,
    list_agents,
    load,
    make_env,
    rescore,
    train,
)

__all__ = ["ZooEntry", "card", "entries", "evaluate", "list_agents", "load", "make_env", "rescore", "train"]
