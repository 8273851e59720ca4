"""Zoo registry: recipes, weights and model cards (see :mod:`diffagents.zoo`)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).parent
RECIPES, WEIGHTS, CARDS = ROOT / "recipes", ROOT / "weights", ROOT / "cards"


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

    @property
    def weights(self) -> Path:
        return WEIGHTS / f"{self.id}.zip"

    @property
    def card_path(self) -> Path:
        return CARDS / f"{self.id}.json"

    @property
    def trained(self) -> bool:
        return self.weights.is_file() and self.card_path.is_file()


def _read_recipe(path: Path) -> ZooEntry:
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"zoo recipe {path.name}: expected a mapping, got {type(data).__name__}")
    required = ("algo", "dataset", "steps", "seed")
    missing = [k for k in required if k not in data]
    if missing:
        raise ValueError(f"zoo recipe {path.name}: missing fields {missing}")
    return ZooEntry(id=path.stem, algo=str(data["algo"]), dataset=str(data["dataset"]), env=data.get("env"),
                    steps=int(data["steps"]), seed=int(data["seed"]),
                    hyperparameters=dict(data.get("hyperparameters") or {}),
                    eval_episodes=int(data.get("eval_episodes", 20)), dataset_size=data.get("dataset_size"))


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
    """Rows ``{id, algo, dataset, score}`` (score = normalized mean of the card's evaluation)."""
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


def _env(entry: ZooEntry, dataset: Any = None) -> Any:
    import gymnasium as gym

    if entry.env:
        return gym.make(entry.env)
    if dataset is None:
        from diffagents.data import make_dataset

        dataset = make_dataset(entry.dataset, size=entry.dataset_size)
    return dataset.recover_environment(eval_env=True)


def make_env(zoo_id: str) -> Any:
    """The evaluation env of zoo entry ``zoo_id`` (its ``env`` id, or its dataset's eval env)."""
    return _env(_entry(zoo_id))


def load(zoo_id: str, env: Any = None, device: str = "auto") -> Any:
    """A ready agent from the zoo (weights shipped in the package; loading never unpickles)."""
    from diffagents.agents import get_agent_class

    entry = _entry(zoo_id)
    if not entry.weights.is_file():
        raise FileNotFoundError(f"zoo id {zoo_id!r} has no weights; run `diffagents zoo train {zoo_id}`")
    cls = get_agent_class(entry.algo)
    return cls.load(entry.weights, env=env if env is not None else _env(entry), device=device)


def _reference(entry: ZooEntry) -> tuple[float, float] | None:
    from diffagents.data import make_dataset, reference_scores

    return reference_scores(make_dataset(entry.dataset, size=entry.dataset_size))


def evaluate(zoo_id: str, n_episodes: int = 20, seed: int = 0, device: str = "auto") -> dict[str, Any]:
    """Evaluate a zoo agent on its env: returns mean/std of returns and normalized scores."""
    from diffagents.evaluation import evaluate_agent

    entry = _entry(zoo_id)
    agent = load(zoo_id, device=device)
    env = _env(entry)
    res = evaluate_agent(agent, env, n_episodes=n_episodes, seed=seed, ref_scores=_reference(entry))
    out: dict[str, Any] = {"episodes": n_episodes, "seed": seed, "return_mean": res.mean, "return_std": res.std}
    if res.normalized is not None:
        out.update(normalized_mean=float(res.normalized.mean()), normalized_std=float(res.normalized.std()))
    return out


def train(zoo_id: str, *, device: str = "auto", progress_bar: bool = False, out_dir: Path | None = None
          ) -> dict[str, Any]:
    """Run a recipe end to end (dataset generation included), save weights and write the model card."""
    from diffagents.agents import get_agent_class
    from diffagents.data import make_dataset
    from diffagents.sysinfo import hardware

    entry = _entry(zoo_id)
    ds = make_dataset(entry.dataset, size=entry.dataset_size)
    env = _env(entry, ds)
    cls = get_agent_class(entry.algo)
    agent = cls(env=env, dataset=ds, seed=entry.seed, device=device, **entry.hyperparameters)
    t0 = time.perf_counter()
    agent.learn(entry.steps, progress_bar=progress_bar)
    wall = time.perf_counter() - t0
    weights = (out_dir / f"{zoo_id}.zip") if out_dir else entry.weights
    agent.save(weights, exclude=["optimizers"])  # inference-only: keeps the zoo small
    from diffagents.evaluation import evaluate_agent

    res = evaluate_agent(agent, env, n_episodes=entry.eval_episodes, seed=10_000 + entry.seed,
                         ref_scores=_reference(entry))
    evaluation: dict[str, Any] = {"episodes": entry.eval_episodes, "seed": 10_000 + entry.seed,
                                  "deterministic": True, "return_mean": res.mean, "return_std": res.std}
    if res.normalized is not None:
        evaluation.update(normalized_mean=float(res.normalized.mean()), normalized_std=float(res.normalized.std()))
    info = {
        "id": zoo_id, "algo": cls.__name__, "dataset": ds.spec.dataset_id, "dataset_size": ds.total_steps,
        "env": entry.env or json.loads(ds.storage.metadata.get("eval_env_spec", "{}") or "{}").get("id"),
        "gradient_steps": entry.steps, "seed": entry.seed, "hyperparameters": entry.hyperparameters,
        "hardware": hardware(), "device": str(agent.device), "wall_time_s": round(wall, 1),
        "command": f"diffagents zoo train {zoo_id}", "date": time.strftime("%Y-%m-%d"),
        "evaluation": evaluation, "weights_bytes": weights.stat().st_size,
    }
    card_path = (out_dir / f"{zoo_id}.json") if out_dir else entry.card_path
    card_path.write_text(json.dumps(info, indent=1) + "\n")
    return info
