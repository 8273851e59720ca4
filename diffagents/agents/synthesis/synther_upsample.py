"""Offline upsampling with SynthER (Lu et al. 2023, Sec. 4): a new Minari dataset holding every real episode
plus generated transitions, each stored as a one-step episode.

:func:`write_upsampled` implements :meth:`diffagents.agents.synthesis.synther.SynthER.upsample`.


The generator is typed ``Any`` here: :mod:`~diffagents.agents.synthesis.synther` imports this module, never the
reverse."""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np

from diffagents.spaces import spaces_equal


def config_summary(gen: Any) -> str:
    """A one-line JSON summary of the generator (recorded in upsampled datasets)."""
    return json.dumps({"config": gen.config.to_dict(), "num_timesteps": gen.num_timesteps, "seed": gen.seed},
                      sort_keys=True)


def default_upsampled_id(dataset_id: str, n: int) -> str:
    """``ns/env/name-vN`` -> ``ns/env/name-synther{n}-vN``."""
    stem, sep, version = dataset_id.rpartition("-v")
    return f"{stem}-synther{n}-v{version}" if sep and version.isdigit() else f"{dataset_id}-synther{n}-v0"


def write_upsampled(gen: Any, ds: Any, n: int, new_id: str | None, *, seed: int | None,
                    batch_size: int | None) -> Any:
    """Implementation of :meth:`SynthER.upsample` (real episodes copied, synthetic ones as 1-step episodes)."""
    import warnings

    import minari
    from minari.data_collector import EpisodeBuffer

    from diffagents.data import DataError
    from diffagents.data.locking import build_dataset_once
    from diffagents.data.recipes.base import reference_scores
    from diffagents.data.safe_env import check_spec, stored_env_spec

    for label, a, b in (("observation_space", ds.observation_space, gen.observation_space),
                        ("action_space", ds.action_space, gen.action_space)):
        if not spaces_equal(a, b):
            raise ValueError(f"{label}: the generator was built for {b} but the dataset has {a}")
    t0 = time.perf_counter()
    syn = gen.sample(n, seed=seed, batch_size=batch_size)
    buffers: list[Any] = []
    for ep in ds.iterate_episodes():
        buffers.append(EpisodeBuffer(id=len(buffers), observations=ep.observations, actions=ep.actions,
                                     rewards=np.asarray(ep.rewards), terminations=np.asarray(ep.terminations),
                                     truncations=np.asarray(ep.truncations)))
    n_real_eps = len(buffers)
    obs_pairs = gen.unflatten_obs(np.stack([syn["observations"], syn["next_observations"]], axis=1))  # (n, 2, ...)
    act = syn["actions"].reshape(n, 1, *gen.action_space.shape).astype(gen.action_space.dtype)
    for i in range(n):
        obs_i = {k: v[i] for k, v in obs_pairs.items()} if isinstance(obs_pairs, dict) else obs_pairs[i]
        term = bool(syn["terminations"][i])
        buffers.append(EpisodeBuffer(id=len(buffers), observations=obs_i, actions=act[i],
                                     rewards=np.asarray([syn["rewards"][i]], np.float64),
                                     terminations=np.asarray([term]), truncations=np.asarray([not term])))
    new_id = new_id or default_upsampled_id(ds.spec.dataset_id, n)
    refs = reference_scores(ds)
    # the source's envs by registered id only (checked against the registration): nothing the data names runs
    env_id = eval_id = None
    if (stored := stored_env_spec(ds, eval_env=False)) is not None:
        env_id = check_spec(stored, f"dataset {ds.spec.dataset_id!r} field 'env_spec'", strict_kwargs=False).id
    if ds.storage.metadata.get("eval_env_spec") and (stored := stored_env_spec(ds, eval_env=True)) is not None:
        eval_id = check_spec(stored, f"dataset {ds.spec.dataset_id!r} field 'eval_env_spec'").id
    summary = config_summary(gen)

    def ready(folder: Any) -> bool:
        raise DataError(f"new_id: dataset {new_id!r} already exists; pass another new_id or delete it")

    def create() -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            out = minari.create_dataset_from_buffers(
                new_id, buffers, env=env_id, eval_env=eval_id, algorithm_name="SynthER", author="diffagents",
                author_email="diffagents@localhost",
                code_permalink="diffagents.agents.synthesis.synther.SynthER.upsample",
                observation_space=ds.observation_space, action_space=ds.action_space,
                ref_min_score=refs[0] if refs else None, ref_max_score=refs[1] if refs else None,
                description=(f"{ds.spec.dataset_id} ({ds.total_steps} real steps, episodes 0..{n_real_eps - 1}) "
                             f"upsampled with {n} SynthER transitions (one-step episodes {n_real_eps}.."
                             f"{n_real_eps + n - 1}; truncated unless terminal). Generator: {summary}"))
        out.storage.update_metadata({"diffagents_synther": {
            "source": ds.spec.dataset_id, "real_steps": int(ds.total_steps), "real_episodes": n_real_eps,
            "synthetic_steps": n, "generator": json.loads(summary),
            "seconds": round(time.perf_counter() - t0, 1)}})  # sampling + writing

    build_dataset_once(new_id, ready, create)
    return minari.load_dataset(new_id)
