"""Zoo registry: recipes, weights and model cards (see :mod:`diffagents.zoo`)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from diffagents.zoo.catalog import ZooEntry, _entry, card, entries, list_agents
from diffagents.zoo.single_agent import SingleAgent, return_scores

__all__ = ["SingleAgent", "ZooEntry", "card", "entries", "evaluate", "list_agents", "load", "make_env", "rescore",
           "return_scores", "train"]


def _backend(entry: ZooEntry) -> Any:
    """The one place that dispatches on the algorithm: multi-agent (PettingZoo), generator (SynthER), distilled
    student of a zoo teacher, or single-agent (Gymnasium)."""
    if entry.multi_agent:
        from diffagents.zoo.multi_agent import MultiAgent

        return MultiAgent
    if entry.generator:
        from diffagents.zoo.generator import Generator

        return Generator
    if entry.distilled:
        from diffagents.zoo.distilled import Distilled

        return Distilled
    return SingleAgent


def _env(entry: ZooEntry, dataset: Any = None) -> Any:
    return _backend(entry).env(entry, dataset)


def make_env(zoo_id: str) -> Any:
    """The evaluation env of zoo entry ``zoo_id``: a Gymnasium env (its ``env`` id, or its dataset's eval env), or
    for multi-agent entries (MADiff) a zero-argument factory of the PettingZoo Parallel env."""
    return _env(_entry(zoo_id))


def _require_weights(zoo_id: str) -> ZooEntry:
    entry = _entry(zoo_id)
    if not entry.weights.is_file():
        raise FileNotFoundError(f"zoo id {zoo_id!r} has no weights; run `diffagents zoo train {zoo_id}`")
    return entry


def load(zoo_id: str, env: Any = None, device: str = "auto") -> Any:
    """A ready agent from the zoo (weights shipped in the package; loading never unpickles).

    ``env`` defaults to :func:`make_env`'s (a MADiff is loaded with its env factory, ready for
    :func:`diffagents.wrappers.pettingzoo.evaluate`; a SynthER generator needs no env).
    """
    entry = _require_weights(zoo_id)
    return _backend(entry).load(entry, env, device)


def _reference(entry: ZooEntry) -> tuple[float, float] | None:
    """The dataset's normalization scores (None for generators, which are not scored by returns): the card's
    ``reference_scores`` when it has them, so evaluating an entry needs no copy of its dataset (otherwise the
    dataset's, generated first if it is not on disk)."""
    if entry.generator:
        return None
    stored = card(entry.id).get("reference_scores") if entry.card_path.is_file() else None
    if stored is not None:
        return float(stored[0]), float(stored[1])
    from diffagents.data import make_dataset, reference_scores

    return reference_scores(make_dataset(entry.dataset, size=entry.dataset_size))


def evaluate(zoo_id: str, n_episodes: int = 20, seed: int = 0, device: str = "auto", n_envs: int = 1
             ) -> dict[str, Any]:
    """Evaluate a zoo entry on its env: mean/std of returns and normalized scores (team returns for multi-agent
    entries); for generators, the dynamics fidelity of ``n_episodes`` sampled transitions.

    Args:
        n_envs: single-agent entries only: step this many env copies together, so the agent acts on a batch (env
            ``i`` seeded ``seed + i``). Faster, but not the cards' estimator: a deterministic diffusion agent
            samples from the fixed evaluation noise stream, and env ``i`` of a batch draws its own slice of it, so
            a batched run scores ``n_envs`` different deterministic policies. The batched actions themselves match
            (on 200 dataset states of ``idql-hopper-medium`` the action MSE to the data is 0.0185 batched vs 0.0197
            one by one), but the episode returns shift: 6 episodes from seed 777 gave 43.1 +- 4.4 normalized in one
            env vs 30.3 +- 4.2 in six, 10 episodes from seed 10000 in ten envs 32.5 +- 6.8 vs the card's 40.3 +- 9.0
            (one env, 20 episodes). Cards and the zoo test therefore evaluate in one env.
    """
    entry = _entry(zoo_id)
    if n_envs != 1 and (entry.multi_agent or entry.generator):
        raise ValueError(f"n_envs: batched evaluation is for single-agent entries; {zoo_id!r} is a "
                         f"{entry.algo} entry, expected n_envs=1, got {n_envs}")
    agent = load(zoo_id, device=device)
    backend = _backend(entry)
    if n_envs == 1:
        result: dict[str, Any] = backend.evaluate(agent, _env(entry), n_episodes, seed, _reference(entry))
    else:
        result = backend.evaluate(agent, lambda: _env(entry), n_episodes, seed, _reference(entry), n_envs=n_envs)
    return result


def _plain(value: Any) -> Any:
    """Tuples as lists, recursively (a recipe's YAML values vs a config dataclass's or a card's JSON)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


def write_card(path: Path, info: dict[str, Any]) -> None:
    """Write a model card atomically (a temporary file beside it, then a rename), so a crash never leaves half."""
    import os
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)  # private to this writer
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(json.dumps(info, indent=1) + "\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _card_evaluation(entry: ZooEntry, agent: Any, env: Any, reference: tuple[float, float] | None
                     ) -> dict[str, Any]:
    """The card's evaluation protocol: the recipe's episode count from seed ``10000 + seed``, one env."""
    return _backend(entry).evaluate(agent, env, entry.eval_episodes, 10_000 + entry.seed, reference)


def rescore(zoo_id: str, *, device: str = "auto") -> dict[str, Any]:
    """Re-score a trained entry after an *acting-only* change to its recipe, without training again.

    The config the recipe gives (its hyperparameters, defaults for the rest) is compared with the shipped
    checkpoint's; the fields that differ must all be acting settings of
    the agent class (its ``acting_fields``: how a plan is executed, never what is learned), so the stored weights
    are the ones the recipe trains. They are written into the checkpoint's config (with what acting under them
    fits on the entry's dataset, e.g. a Diffuser's visited-position grid, when the agent says it needs it); the
    card gets the recipe's hyperparameters, a new evaluation (same episodes and seeds as :func:`train`) and a ``rescored`` record of
    what changed since training, when and on which hardware. With no change it re-evaluates the shipped weights
    under the installed code (after a fix to how an agent acts).

    Raises:
        ValueError: for a multi-agent / generator / distilled entry, or when a differing hyperparameter is not
            an acting setting (then only ``diffagents zoo train ID`` gives weights that match the recipe).
    """
    import dataclasses

    from diffagents.sysinfo import hardware

    entry = _require_weights(zoo_id)
    backend = _backend(entry)
    if backend is not SingleAgent:
        raise ValueError(f"zoo rescore: expected a single-agent entry, got {zoo_id!r} ({entry.algo})")
    agent = backend.load(entry, None, device)
    stored = dataclasses.asdict(agent.config)
    wanted = dataclasses.asdict(type(agent.config)(**backend.hyperparameters(entry)))  # defaults where unnamed
    changed = {k: _plain(v) for k, v in wanted.items() if _plain(stored.get(k)) != _plain(v)}
    acting: frozenset[str] = getattr(type(agent), "acting_fields", frozenset())
    learned = sorted(set(changed) - acting)
    if learned:
        raise ValueError(f"zoo rescore {zoo_id}: recipe hyperparameters {learned} differ from the shipped weights' "
                         f"config and are not acting settings (expected only some of {sorted(acting)}); "
                         f"run `diffagents zoo train {zoo_id}`")
    if changed:
        agent.config = dataclasses.replace(agent.config, **changed)  # validates the new values
        if getattr(agent, "acting_needs_data", False):  # e.g. Diffuser's plan_selection="support": fit on the data
            from diffagents.data import make_dataset

            agent.set_dataset(make_dataset(entry.dataset, size=entry.dataset_size))
        backend.save(agent, entry.weights, entry.weights_dtype)
        agent = backend.load(entry, None, device)  # score what is stored
    info = card(zoo_id)
    info["evaluation"] = _card_evaluation(entry, agent, backend.env(entry), _reference(entry))
    info["hyperparameters"] = backend.hyperparameters(entry)
    info["weights_bytes"] = entry.weights.stat().st_size
    since_training = {**info.get("rescored", {}).get("changed", {}), **changed}  # every rescore since `train`
    info["rescored"] = {"changed": since_training, "date": time.strftime("%Y-%m-%d"), "hardware": hardware(),
                        "command": f"diffagents zoo rescore {zoo_id}"}
    write_card(entry.card_path, info)
    return info


def train(zoo_id: str, *, device: str = "auto", progress_bar: bool = False, out_dir: Path | None = None,
          checkpoint_dir: Path | None = None) -> dict[str, Any]:
    """Run a recipe end to end (dataset generation included), save weights and write the model card.

    Args:
        checkpoint_dir: keep full training checkpoints there (every 1000 steps) and resume from the newest one, so a
            recipe longer than one sitting can be trained in pieces and ends with the weights of an uninterrupted
            run (CPU, same seed; see ``OfflineAgent.learn``). The card's wall time then sums the pieces and
            ``resumed_from_step`` names where this call started. SB3-style agents only.
    """
    from diffagents.data import make_dataset, reference_scores
    from diffagents.sysinfo import hardware

    entry = _entry(zoo_id)
    backend = _backend(entry)
    if checkpoint_dir is not None and not getattr(backend, "resumable", False):
        raise ValueError(f"checkpoint_dir: {entry.algo} entries are not resumable ({zoo_id}): a distilled student "
                         "is rebuilt from its zoo teacher on each call")
    ds = make_dataset(entry.dataset, size=entry.dataset_size)
    env = backend.env(entry, ds)
    hyper = backend.hyperparameters(entry)
    agent = backend.build(entry, ds, env, device)
    t0 = time.perf_counter()
    backend.learn(agent, entry.steps, progress_bar, None if checkpoint_dir is None else Path(checkpoint_dir))
    wall = time.perf_counter() - t0
    start_step = 0
    if checkpoint_dir is not None:  # the pieces of a resumed run: the counters come from the checkpoint
        wall, start_step = agent.train_wall_s, agent._num_timesteps_at_start
    weights = (out_dir / f"{zoo_id}.zip") if out_dir else entry.weights
    backend.save(agent, weights, entry.weights_dtype)
    shipped = backend.load(entry, env, device, weights)  # the card scores the stored (e.g. float16) weights
    reference = None if entry.generator else reference_scores(ds)  # the card keeps them (see _reference)
    evaluation = _card_evaluation(entry, shipped, env, reference)
    info = {
        "id": zoo_id, "algo": type(agent).__name__, "dataset": ds.spec.dataset_id, "dataset_size": ds.total_steps,
        "env": backend.env_label(entry, ds), "gradient_steps": entry.steps, "seed": entry.seed,
        "hyperparameters": hyper, "weights_dtype": entry.weights_dtype or "float32", "hardware": hardware(), "device": str(agent.device), "wall_time_s": round(wall, 1),
        "command": f"diffagents zoo train {zoo_id}", "date": time.strftime("%Y-%m-%d"),
        "evaluation": evaluation, "reference_scores": list(reference) if reference else None,
        "weights_bytes": weights.stat().st_size, **backend.card_extra(entry),
    }
    if start_step:
        info["resumed_from_step"] = start_step
    write_card((out_dir / f"{zoo_id}.json") if out_dir else entry.card_path, info)
    return info
