"""Recipe registry, episode collection and the cached, seeded writer behind :func:`make_dataset`."""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import minari
import numpy as np
from gymnasium.envs.registration import EnvSpec
from minari.data_collector import EpisodeBuffer
from minari.storage import get_dataset_path

from diffagents.data.errors import DataError
from diffagents.data.locking import build_dataset_once

NAMESPACE = "diffagents"
RECIPE_FORMAT = 1  # bump when a recipe's output changes for the same (size, seed)


@dataclass
class RecipeOutput:
    """What a recipe's build function returns; :func:`make_dataset` writes it as a Minari dataset."""

    buffers: list[EpisodeBuffer]
    algorithm_name: str
    description: str
    ref_min_score: float
    ref_max_score: float
    env: str | EnvSpec | None = None
    eval_env: str | EnvSpec | None = None
    observation_space: gym.Space | None = None
    action_space: gym.Space | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Recipe:
    """A seeded dataset recipe.

    Attributes:
        id: Full dataset id, e.g. ``"diffagents/pendulum/expert-v0"``.
        summary: One-line description for :func:`list_recipes`.
        default_size: Default number of environment steps (joint steps for multi-agent recipes).
        build: ``build(size, seed) -> RecipeOutput``; must be deterministic in ``(size, seed)``.
    """

    id: str
    summary: str
    default_size: int
    build: Callable[[int, int], RecipeOutput]


RECIPES: dict[str, Recipe] = {}


def register(recipe: Recipe) -> Recipe:
    """Add a recipe to the registry (ids must be unique)."""
    if recipe.id in RECIPES:
        raise DataError(f"recipe id: expected a new id, got duplicate {recipe.id!r}")
    RECIPES[recipe.id] = recipe
    return recipe


def full_id(recipe_id: str) -> str:
    """``"pendulum/expert-v0"``, ``"diffagents/pendulum/expert-v0"`` or ``"pendulum-expert-v0"`` -> full id."""
    rid = recipe_id if recipe_id.startswith(NAMESPACE + "/") else f"{NAMESPACE}/{recipe_id}"
    if rid not in RECIPES:  # dashed alias, e.g. "pointmaze-umaze-v0"
        rid = next((r for r in RECIPES if r.removeprefix(NAMESPACE + "/").replace("/", "-") == recipe_id), rid)
    if rid not in RECIPES:
        raise DataError(f"dataset id: expected one of {sorted(RECIPES)}, got {recipe_id!r}")
    return rid


def variant_id(rid: str, size: int, seed: int) -> str:
    """Dataset id of a non-default ``(size, seed)`` copy: ``ns/env/name-n{size}-s{seed}-vN``."""
    if size == RECIPES[rid].default_size and seed == 0:
        return rid
    stem, version = rid.rsplit("-v", 1)
    return f"{stem}-n{size}-s{seed}-v{version}"


def _read_metadata(dataset_id: str) -> dict[str, Any] | None:
    path = get_dataset_path(dataset_id) / "data" / "metadata.json"
    if not path.is_file():
        return None
    with open(path) as f:
        return dict(json.load(f))


def make_dataset(recipe_id: str, *, size: int | None = None, seed: int = 0, force: bool = False) -> minari.MinariDataset:
    """Build (or reuse) a local, seeded benchmark dataset under ``MINARI_DATASETS_PATH``.

    Args:
        recipe_id: A recipe id with or without the ``"diffagents/"`` prefix (see :func:`list_recipes`).
        size: Number of steps (default: the recipe's). Whole episodes are collected; the last one is cut
            (``truncated=True``) so the dataset has exactly ``size`` steps.
        seed: Seed of every random source (env resets, behaviour noise).
        force: Rebuild even if a cached copy exists.

    Returns:
        The Minari dataset. Non-default ``(size, seed)`` copies get the id ``...-n{size}-s{seed}-vN``.

    Several processes (DDP ranks, parallel jobs) may ask for the same dataset at once: one builds it, in a private
    folder renamed into place, and the others wait and read it (:func:`diffagents.data.locking.build_dataset_once`).

    Raises:
        DataError: For an unknown id, a bad size, or a cached copy made with other settings (use force).
    """
    rid = full_id(recipe_id)
    recipe = RECIPES[rid]
    n = recipe.default_size if size is None else int(size)
    if n < 1:
        raise DataError(f"size: expected a positive number of steps, got {size}")
    dataset_id = variant_id(rid, n, seed)
    stamp = {"recipe": rid, "size": n, "seed": seed, "format": RECIPE_FORMAT}

    def ready(folder: Any) -> bool:
        meta = _read_metadata(dataset_id)
        if meta is None:  # an incomplete folder: rebuilt
            return False
        if meta.get("diffagents_recipe") == stamp:
            return True
        if force:
            return False
        raise DataError(
            f"cached dataset {dataset_id!r} field 'diffagents_recipe': expected {stamp}, got "
            f"{meta.get('diffagents_recipe')}; pass force=True to rebuild it"
        )

    def create() -> None:
        t0 = time.perf_counter()
        out = recipe.build(n, seed)
        _create(dataset_id, out, stamp, time.perf_counter() - t0)

    build_dataset_once(dataset_id, ready, create, replace=force)
    return minari.load_dataset(dataset_id)


def _create(dataset_id: str, out: RecipeOutput, stamp: dict[str, Any], gen_s: float) -> None:
    """Write a recipe's output as Minari dataset ``dataset_id`` (under the root :func:`build_dataset_once` sets)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        ds = minari.create_dataset_from_buffers(
            dataset_id, out.buffers, env=out.env, eval_env=out.eval_env,
            algorithm_name=out.algorithm_name, author="diffagents", author_email="diffagents@localhost",
            code_permalink=f"diffagents.data.recipes ({stamp['recipe']})",
            observation_space=out.observation_space, action_space=out.action_space,
            ref_min_score=out.ref_min_score, ref_max_score=out.ref_max_score,
            description=out.description + f" Built with size={stamp['size']}, seed={stamp['seed']}.",
        )
    extra = {"diffagents_recipe": stamp, "diffagents_generation_s": round(gen_s, 2), **out.metadata}
    if "ref_max_score" not in ds.storage.metadata:  # no gym eval env (multi-agent): store them directly
        extra |= {"ref_min_score": out.ref_min_score, "ref_max_score": out.ref_max_score}
    ds.storage.update_metadata(extra)


def list_recipes() -> dict[str, str]:
    """Full recipe id -> one-line description (with the default size)."""
    return {rid: f"{r.summary} (default {r.default_size:,} steps)" for rid, r in sorted(RECIPES.items())}


def reference_scores(dataset: minari.MinariDataset) -> tuple[float, float] | None:
    """``(ref_min_score, ref_max_score)`` of a dataset, or ``None`` when it has none."""
    meta: Mapping[str, Any] = dataset.storage.metadata
    lo, hi = meta.get("ref_min_score"), meta.get("ref_max_score")
    return (float(lo), float(hi)) if lo is not None and hi is not None else None


@dataclass
class EpisodeRecorder:
    """Collect exactly ``size`` steps as :class:`EpisodeBuffer` s (the last episode is cut and truncated)."""

    size: int
    buffers: list[EpisodeBuffer] = field(default_factory=list)
    returns: list[float] = field(default_factory=list)  # undiscounted returns of *complete* episodes
    steps: int = 0

    @property
    def full(self) -> bool:
        return self.steps >= self.size

    def add(self, observations: Any, actions: Any, rewards: np.ndarray, terminations: np.ndarray,
            truncations: np.ndarray) -> None:
        """Add one episode (observations / actions: arrays or dicts of arrays, ``T + 1`` / ``T`` long)."""
        t = min(len(rewards), self.size - self.steps)
        if t <= 0:
            return
        # cut: shortened here, or stopped by the caller before the env ended the episode
        cut = t < len(rewards) or not (bool(terminations[t - 1]) or bool(truncations[t - 1]))
        if not cut:
            self.returns.append(float(np.sum(rewards)))
        trunc = np.asarray(truncations[:t], dtype=bool).copy()
        if cut:
            trunc[-1] = True
        self.buffers.append(EpisodeBuffer(
            id=len(self.buffers), observations=_head(observations, t + 1), actions=_head(actions, t),
            rewards=np.asarray(rewards[:t], dtype=np.float64), terminations=np.asarray(terminations[:t], dtype=bool),
            truncations=trunc,
        ))
        self.steps += t

    def summary(self) -> str:
        """``mean ± std over n episodes`` of complete-episode returns."""
        r = np.asarray(self.returns or [np.nan])
        return f"{r.mean():.2f} ± {r.std():.2f} over {len(self.returns)} complete episodes"

    def stats(self) -> dict[str, float]:
        r = np.asarray(self.returns or [np.nan])
        return {"behaviour_return_mean": float(r.mean()), "behaviour_return_std": float(r.std()),
                "behaviour_episodes": len(self.returns)}


def _head(x: Any, n: int) -> Any:
    """First ``n`` rows of an array or of each array in a dict."""
    return {k: np.asarray(v[:n]) for k, v in x.items()} if isinstance(x, dict) else np.asarray(x[:n])


def rollout_gym(
    env: gym.Env, policy: Callable[[Any], np.ndarray], recorder: EpisodeRecorder, seed: int,
    on_reset: Callable[[Any], None] | None = None,
) -> None:
    """Run ``policy`` in ``env`` until ``recorder`` is full (first reset seeded, later ones continue the RNG)."""
    first = True
    while not recorder.full:
        obs, _ = env.reset(seed=seed if first else None)
        first = False
        if on_reset is not None:
            on_reset(obs)
        obs_l, act_l, rew_l, term_l, trunc_l = [obs], [], [], [], []
        while True:
            action = policy(obs)
            obs, rew, term, trunc, _ = env.step(action)
            obs_l.append(obs)
            act_l.append(action)
            rew_l.append(rew)
            term_l.append(term)
            trunc_l.append(trunc)
            if term or trunc or recorder.steps + len(act_l) >= recorder.size:
                break
        observations: Any = (
            {k: np.stack([o[k] for o in obs_l]) for k in obs_l[0]} if isinstance(obs_l[0], dict) else np.stack(obs_l)
        )
        recorder.add(observations, np.stack(act_l), np.asarray(rew_l), np.asarray(term_l), np.asarray(trunc_l))


def evaluate_gym(env: gym.Env, policy: Callable[[Any], np.ndarray], episodes: int, seed: int) -> tuple[float, float]:
    """Mean and std of undiscounted returns over ``episodes`` full episodes (resets seeded ``seed + i``)."""
    returns = []
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        total, done = 0.0, False
        while not done:
            obs, rew, term, trunc, _ = env.step(policy(obs))
            total += float(rew)
            done = term or trunc
        returns.append(total)
    return float(np.mean(returns)), float(np.std(returns))
