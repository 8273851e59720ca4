"""Zoo recipes and model cards: :class:`ZooEntry`, :func:`entries`, :func:`card`, :func:`list_agents`.

An entry's kind (multi-agent, generator, distilled, or a plain Gymnasium agent) comes from the agent registry
(:mod:`diffagents.core.registry`), never from a list of algorithm names.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).parent
RECIPES, WEIGHTS, CARDS = ROOT / "recipes", ROOT / "weights", ROOT / "cards"


def _kind(algo: str) -> str:
    """The registry kind of ``algo`` (:mod:`diffagents.core.registry`); the zoo's backend follows from it."""
    from diffagents.core.registry import kind_of

    return kind_of(algo)


@dataclass(frozen=True)
class ZooEntry:
    """One zoo recipe (``recipes/<id>.yaml``)."""

    id: str
    algo: str
    dataset: str
    env: str | None
    steps: int
    seed: int
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    eval_episodes: int = 20
    dataset_size: int | None = None
    teacher: str | None = None
    weights_dtype: str | None = "float16"  # storage dtype of the shipped weights (half size; loaded as float32)

    @property
    def weights(self) -> Path:
        return WEIGHTS / f"{self.id}.zip"

    @property
    def card_path(self) -> Path:
        return CARDS / f"{self.id}.json"

    @property
    def trained(self) -> bool:
        return self.weights.is_file() and self.card_path.is_file()

    @property
    def multi_agent(self) -> bool:
        """A PettingZoo Parallel agent (MADiff) rather than an SB3-style Gymnasium one."""
        return _kind(self.algo) == "multiagent"

    @property
    def generator(self) -> bool:
        """A data generator (SynthER) rather than an agent: evaluated by dynamics fidelity, not returns."""
        return _kind(self.algo) == "generator"

    @property
    def distilled(self) -> bool:
        """A one-step student distilled from the zoo entry ``teacher``."""
        return _kind(self.algo) == "distilled"


def _read_recipe(path: Path) -> ZooEntry:
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"zoo recipe {path.name}: expected a mapping, got {type(data).__name__}")
    required = ("algo", "dataset", "steps", "seed")
    missing = [k for k in required if k not in data]
    if missing:
        raise ValueError(f"zoo recipe {path.name}: missing fields {missing}")
    from diffagents.persistence import storage_dtype

    try:
        distilled = _kind(str(data["algo"])) == "distilled"
    except ValueError as exc:
        raise ValueError(f"zoo recipe {path.name}: field 'algo': {exc}") from exc
    if distilled != ("teacher" in data):
        raise ValueError(f"zoo recipe {path.name}: field 'teacher' is expected exactly for distilled algorithms, "
                         f"got algo {data['algo']!r} with teacher {data.get('teacher')!r}")
    return ZooEntry(id=path.stem, algo=str(data["algo"]), dataset=str(data["dataset"]), env=data.get("env"),
                    steps=int(data["steps"]), seed=int(data["seed"]),
                    hyperparameters=dict(data.get("hyperparameters") or {}),
                    eval_episodes=int(data.get("eval_episodes", 20)), dataset_size=data.get("dataset_size"),
                    teacher=str(data["teacher"]) if distilled else None,
                    weights_dtype=_recipe_dtype(path, data, storage_dtype))


def _recipe_dtype(path: Path, data: dict[str, Any], check: Any) -> str | None:
    name = data.get("weights_dtype", "float16")
    try:
        check(name)
    except ValueError as exc:
        raise ValueError(f"zoo recipe {path.name}: {exc}") from None
    return None if name is None else str(name)


def entries() -> dict[str, ZooEntry]:
    """Every recipe, trained or not, by id."""
    return {p.stem: _read_recipe(p) for p in sorted(RECIPES.glob("*.yaml"))}


def _entry(zoo_id: str) -> ZooEntry:
    all_entries = entries()
    if zoo_id not in all_entries:
        raise KeyError(f"zoo id {zoo_id!r} not found; available: {sorted(all_entries)}")
    return all_entries[zoo_id]


def card(zoo_id: str) -> dict[str, Any]:
    """The model card of a trained entry as a dict."""
    entry = _entry(zoo_id)
    if not entry.card_path.is_file():
        raise FileNotFoundError(f"zoo id {zoo_id!r} has no trained weights yet; run `diffagents zoo train {zoo_id}`")
    result: dict[str, Any] = json.loads(entry.card_path.read_text())
    return result


def list_agents(trained_only: bool = True) -> list[dict[str, Any]]:
    """Rows ``{id, algo, dataset, score, trained}`` (score = normalized mean of the card's evaluation; None for
    generators, whose cards report dynamics fidelity instead)."""
    rows = []
    for zoo_id, entry in entries().items():
        if trained_only and not entry.trained:
            continue
        score = None
        if entry.trained:
            ev = card(zoo_id)["evaluation"]
            score = ev.get("normalized_mean")
        rows.append({"id": zoo_id, "algo": entry.algo, "dataset": entry.dataset, "score": score,
                     "trained": entry.trained})
    return rows
