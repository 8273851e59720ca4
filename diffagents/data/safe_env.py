"""Environments named by data, made without running anything the data names (README, "Security").

A Minari dataset stores its environments as Gymnasium ``EnvSpec`` JSON (``env_spec``, ``eval_env_spec``), whose
``entry_point`` Minari's ``recover_environment`` imports and calls, with the stored kwargs. A dataset from anywhere
could therefore run code the moment it is used. :func:`make_env_from_dataset` instead resolves the env only
through Gymnasium's registry by id (plus the package's own registrations and gymnasium-robotics'), after checking
that the stored ``entry_point``, ``kwargs`` and ``additional_wrappers`` are exactly the registered ones; anything
else is refused with a :class:`~diffagents.data.errors.DataError` naming the dataset, the field and the value,
before any import or call. Only ``max_episode_steps`` (an int) may differ from the registration.
"""

from __future__ import annotations

import json
from typing import Any

import gymnasium as gym

from diffagents.data.errors import DataError


def _dataset_name(dataset: Any) -> str:
    spec = getattr(dataset, "spec", None)
    return str(getattr(spec, "dataset_id", None) or getattr(dataset, "id", None) or dataset)


def stored_env_spec(dataset: Any, eval_env: bool = True) -> dict[str, Any] | None:
    """The stored env spec of ``dataset`` as plain JSON data (``eval_env_spec``, else ``env_spec``), or None."""
    meta = dataset.storage.metadata
    raw = (meta.get("eval_env_spec") if eval_env else None) or meta.get("env_spec")
    if not raw:
        return None
    try:
        spec = json.loads(raw) if isinstance(raw, str) else raw
    except json.JSONDecodeError as exc:
        raise DataError(f"dataset {_dataset_name(dataset)!r} field 'eval_env_spec': not JSON ({exc})") from exc
    if not isinstance(spec, dict) or not isinstance(spec.get("id"), str):
        raise DataError(f"dataset {_dataset_name(dataset)!r} field 'eval_env_spec.id': expected an env id string, "
                        f"got {spec!r}")
    return spec


def registered_spec(env_id: str, where: str) -> Any:
    """The Gymnasium registration of ``env_id`` (the package's own ids and gymnasium-robotics' registered first).

    Raises:
        DataError: ``env_id`` is not registered (naming ``where``, the field).
    """
    from diffagents.data.envs import ensure_registered

    ensure_registered(env_id)
    if env_id not in gym.registry:
        raise DataError(f"{where}: {env_id!r} is not a registered Gymnasium env id; environments named by data are "
                        "made only through Gymnasium's registry (register it with gymnasium.register first)")
    return gym.registry[env_id]


def check_spec(spec: dict[str, Any], where: str, *, strict_kwargs: bool = True) -> Any:
    """Check a stored spec against the registration of its id; returns the registered spec.

    ``strict_kwargs=False`` lets the kwargs differ (a collection env such as PointMaze's ``continuing_task``); the
    caller then makes the env by id only, with the registered kwargs.

    Raises:
        DataError: the id is unknown, or ``entry_point`` / ``kwargs`` / ``additional_wrappers`` differ from the
            registration, or ``max_episode_steps`` is not an int or None.
    """
    reg = registered_spec(spec["id"], f"{where}.id")
    stored_ep = spec.get("entry_point")
    reg_ep = reg.entry_point if isinstance(reg.entry_point, str) else getattr(reg.entry_point, "__qualname__", None)
    if stored_ep is not None and stored_ep != reg_ep:
        raise DataError(f"{where}.entry_point: expected the registered {reg_ep!r} for {spec['id']!r}, got "
                        f"{stored_ep!r}; nothing was imported")
    kwargs = spec.get("kwargs") or {}
    same = json.loads(json.dumps(kwargs, default=str)) == json.loads(json.dumps(reg.kwargs or {}, default=str))
    if strict_kwargs and not same:
        raise DataError(f"{where}.kwargs: expected the registered {reg.kwargs!r} for {spec['id']!r}, got {kwargs!r}")
    wrappers = spec.get("additional_wrappers") or []
    reg_wrappers = [w.name if hasattr(w, "name") else w for w in (reg.additional_wrappers or ())]
    if [w.get("name") if isinstance(w, dict) else w for w in wrappers] != reg_wrappers:
        raise DataError(f"{where}.additional_wrappers: expected the registered {reg_wrappers!r}, got {wrappers!r}")
    steps = spec.get("max_episode_steps")
    if steps is not None and (not isinstance(steps, int) or isinstance(steps, bool) or steps < 1):
        raise DataError(f"{where}.max_episode_steps: expected a positive int or None, got {steps!r}")
    return reg


def make_env_from_dataset(dataset: Any, *, eval_env: bool = True, **make_kwargs: Any) -> gym.Env:
    """The dataset's (evaluation) env, made by registered id after :func:`check_spec`.

    Args:
        dataset: a Minari dataset.
        eval_env: use ``eval_env_spec`` (falling back to ``env_spec``).
        **make_kwargs: passed to ``gym.make`` (e.g. ``render_mode``).

    Raises:
        DataError: the dataset stores no env, or a spec that differs from its registration.
    """
    name = _dataset_name(dataset)
    spec = stored_env_spec(dataset, eval_env)
    if spec is None:
        raise DataError(f"dataset {name!r} field 'eval_env_spec': the dataset names no Gymnasium env; pass env=")
    check_spec(spec, f"dataset {name!r} field 'eval_env_spec'")
    steps = spec.get("max_episode_steps")
    return gym.make(spec["id"], **({"max_episode_steps": steps} if steps is not None else {}), **make_kwargs)
