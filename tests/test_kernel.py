"""The agent kernel over the whole registry: registration, tiny configs, hostile checkpoint files, crash-resume.

Every test is parametrized over :func:`diffagents.core.registry.agent_infos`, so a newly registered agent joins
them without an edit here; agents are built by kind (offline, online, distilled, multi-agent, generator).
"""

from __future__ import annotations

import json
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from agent_fixtures import make_pendulum_dataset
from stable_baselines3.common.callbacks import BaseCallback

import diffagents
from diffagents.core.contract import BATCH_SPECS
from diffagents.core.registry import CONCRETE_KINDS, agent_infos, get_agent_class
from diffagents.persistence import CheckpointError, read_checkpoint

CONCRETE = [i.name for i in agent_infos(lambda i: i.concrete)]
MARKER = "diffagents_kernel_pickle_ran"


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from diffagents.data import make_dataset

    old = os.environ.get("MINARI_DATASETS_PATH")
    root = tmp_path_factory.mktemp("minari")
    out = {"pendulum": make_pendulum_dataset(root)}
    os.environ["MINARI_DATASETS_PATH"] = str(root)
    out["team"] = make_dataset("diffagents/mpe-spread/expert-v0", size=250)
    yield out
    if old is None:
        os.environ.pop("MINARI_DATASETS_PATH", None)
    else:
        os.environ["MINARI_DATASETS_PATH"] = old


def build(name: str, data: dict[str, Any], seed: int = 0, **extra: Any) -> Any:
    """An untrained agent of ``name`` at its tiny config, on data that suits its kind."""
    info = next(i for i in agent_infos() if i.name == name)
    cls, kw = info.cls, {**info.cls.tiny_config(), **extra}
    if info.kind == "offline":
        return cls(env=gym.make("Pendulum-v1"), dataset=data["pendulum"], seed=seed, **kw)
    if info.kind == "online":
        return cls(env=gym.make("Pendulum-v1", max_episode_steps=50), seed=seed, **kw)
    if info.kind == "multiagent":
        from diffagents.wrappers.pettingzoo import env_fn_from_dataset

        return cls(env_fn_from_dataset(data["team"]), data["team"], seed=seed, **kw)
    if info.kind == "generator":
        return cls.from_dataset(data["pendulum"], seed=seed, **kw)
    raise AssertionError(f"build: no factory for kind {info.kind}")


def trained(name: str, data: dict[str, Any], steps: int = 3) -> Any:
    info = next(i for i in agent_infos() if i.name == name)
    if info.kind == "distilled":
        from diffagents.agents.policies.distill import distill

        teacher = trained(info.cls.config_class().teacher, data)
        return distill(teacher, steps=steps, seed=0, **info.cls.tiny_config())
    agent = build(name, data)
    if info.kind == "generator":
        return agent.fit(steps=steps)
    return agent.learn(20 if info.kind == "online" else steps)


def load(name: str, path: Path) -> Any:
    return get_agent_class(name).load(path)


# ---------------------------------------------------------------------------------------------- registry
def test_every_registered_agent_is_reachable_by_name() -> None:
    assert set(diffagents.list_agents()) == {i.name for i in agent_infos()}
    for info in agent_infos():
        assert getattr(diffagents, info.name) is info.cls
        assert diffagents.get_agent_class(info.name.upper()) is info.cls
        assert diffagents.get_agent_class(info.name.lower().replace("q", "-q")) is info.cls  # '-' / '_' ignored
        if info.concrete:
            assert info.kind in CONCRETE_KINDS and info.cls.batch_spec in BATCH_SPECS
            assert isinstance(info.cls.tiny_config(), dict)
    with pytest.raises(ValueError, match="unknown agent 'nosuch'"):
        diffagents.get_agent_class("nosuch")


def test_no_agent_name_list_outside_the_registry() -> None:
    """Nothing in the package spells out the set of agents: the registry is the only list."""
    root = Path(diffagents.__file__).parent
    names = {i.name for i in agent_infos()}
    for path in [*root.rglob("*.py"), *(root.parent / "wrappers").rglob("*.py"), *(root.parent / "zoo").rglob("*.py")]:
        text = path.read_text()
        for line in text.splitlines():
            quoted = [n for n in names if f'"{n}"' in line or f"'{n}'" in line]
            assert len(quoted) < 3, f"{path.name}: a list of agent names: {line.strip()}"


# ---------------------------------------------------------------------------------------------- hostile files
def _rewrite(src: Path, dst: Path, **members: bytes) -> None:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.namelist():
            zout.writestr(item, members.get(item, zin.read(item)))


class _Payload:
    def __reduce__(self) -> Any:
        return (open, (os.path.join(os.environ.get("TMPDIR", "/tmp"), MARKER), "w"))


@pytest.mark.parametrize("name", CONCRETE)
def test_hostile_checkpoints_are_refused_naming_the_problem(name: str, data: dict[str, Any], tmp_path: Path
                                                            ) -> None:
    agent = trained(name, data)
    good = tmp_path / "good.zip"
    agent.save(good)
    marker = Path(os.environ.get("TMPDIR", "/tmp")) / MARKER
    marker.unlink(missing_ok=True)

    # 1. a pickle payload where the optimizer states live: torch.load(weights_only=True) refuses it
    payload = tmp_path / "pickle.zip"
    _rewrite(good, payload, **{"optimizers.pt": pickle.dumps({"critic": _Payload()})})
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load(name, payload)
    assert not marker.exists(), "loading ran code from the file"

    # 2. a truncated file
    cut = tmp_path / "cut.zip"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated|not a diffagents checkpoint"):
        load(name, cut)

    # 3. another agent's checkpoint, and an algorithm name that is not registered
    meta = json.loads(zipfile.ZipFile(good).read("diffagents.json"))
    other = next(n for n in CONCRETE if n != name)
    wrong = tmp_path / "wrong.zip"
    _rewrite(good, wrong, **{"diffagents.json": json.dumps({**meta, "algo": other}).encode()})
    with pytest.raises(CheckpointError, match=f"holds a {other} agent, not a {name}"):
        load(name, wrong)
    unknown = tmp_path / "unknown.zip"
    _rewrite(good, unknown, **{"diffagents.json": json.dumps({**meta, "algo": "os.system"}).encode()})
    with pytest.raises(CheckpointError, match="os.system"):
        load(name, unknown)

    # 4. NaN weights: refused naming the tensor
    from safetensors.torch import load as st_load
    from safetensors.torch import save as st_save

    flat = st_load(zipfile.ZipFile(good).read("weights.safetensors"))
    key = next(k for k, v in flat.items() if v.is_floating_point())
    flat[key] = torch.full_like(flat[key], float("nan"))
    nan = tmp_path / "nan.zip"
    _rewrite(good, nan, **{"weights.safetensors": st_save(flat)})
    with pytest.raises(CheckpointError, match=f"weights: {key.replace('.', '[.]')} holds NaN"):
        load(name, nan)

    # the good file still loads
    assert load(name, good).num_timesteps == agent.num_timesteps


# ---------------------------------------------------------------------------------------------- crash-resume
class _Crash(BaseCallback):
    """Raises at step ``at``: a run killed between two checkpoints (the exception skips the final one)."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at = at

    def _on_step(self) -> bool:
        if self.num_timesteps >= self.at:
            raise KeyboardInterrupt(f"killed at step {self.at}")
        return True


def _train(agent: Any, steps: int, ckpt: Path, callback: Any = None) -> Any:
    if agent.agent_kind == "generator":
        return agent.fit(steps=steps, checkpoint_dir=ckpt, checkpoint_every=4, callback=callback, log_every=5)
    return agent.learn(steps, checkpoint_dir=ckpt, checkpoint_every=4, callback=callback, log_interval=5)


def _state(agent: Any) -> dict[str, torch.Tensor]:
    out = {f"{n}.{k}": v.detach().clone() for n, m in agent.nets.items() for k, v in m.state_dict().items()}
    if agent.ema is not None:
        out |= {f"ema.{k}": v.detach().clone() for k, v in agent.ema.model.state_dict().items()}
    return out


RESUMABLE = [i.name for i in agent_infos(lambda i: i.kind in ("offline", "online", "multiagent", "generator"))]


@pytest.mark.parametrize("name", RESUMABLE)
def test_kill_at_a_random_step_and_resume_is_bitwise_identical(name: str, data: dict[str, Any],
                                                               tmp_path: Path) -> None:
    # online: 60 env steps of 50-step episodes, updates from step 16 on (an episode ends and restarts inside)
    steps = 60 if get_agent_class(name).agent_kind == "online" else 14
    reference = _state(_train(build(name, data, seed=5), steps, tmp_path / "ref"))
    at = int(np.random.default_rng().integers(5, steps))  # after at least one checkpoint, before the end
    with pytest.raises(KeyboardInterrupt):
        _train(build(name, data, seed=5), steps, tmp_path / "run", callback=_Crash(at))
    torch.manual_seed(1234)  # the resumed process starts from other RNG states: the checkpoint restores them
    np.random.seed(1234)  # noqa: NPY002
    resumed = _train(build(name, data, seed=5), steps, tmp_path / "run")
    assert resumed.num_timesteps == steps
    got = _state(resumed)
    assert got.keys() == reference.keys()
    for key, value in reference.items():
        assert torch.equal(got[key], value), f"{name}: {key} differs after resuming from step {at}"


@pytest.mark.parametrize("name", RESUMABLE)
def test_resume_refuses_a_folder_of_another_agent(name: str, data: dict[str, Any], tmp_path: Path) -> None:
    other = next(n for n in RESUMABLE if n != name)
    _train(build(other, data), 4, tmp_path / "ckpt")
    with pytest.raises(CheckpointError, match=f"holds {other} checkpoints, not {name}"):
        _train(build(name, data), 4, tmp_path / "ckpt")


def test_legacy_checkpoint_layouts_load() -> None:
    """Files written before the one format (SynthER's ``algorithm`` key and ``norm_mean`` / ``norm_std`` arrays,
    MADiff's single ``normalizer``) load with the same normalizer statistics; the shipped zoo files are such."""
    from diffagents import zoo

    seen = set()
    for zoo_id, entry in zoo.entries().items():
        if not entry.trained:
            continue
        ckpt = read_checkpoint(entry.weights, load_optimizers=False)
        if ckpt.meta.get("algorithm") == "SynthER":
            stats = {"mean": ckpt.arrays["norm_mean"], "std": ckpt.arrays["norm_std"]}
        elif "normalizer" in ckpt.meta and ckpt.meta["normalizer"] is not None:
            stats = {k.split("/", 1)[1]: v for k, v in ckpt.arrays.items() if k.startswith("normalizer/")}
        else:
            continue
        agent = zoo.load(zoo_id)
        norm = agent.normalizer.state_dict()
        for key, value in stats.items():
            np.testing.assert_array_equal(norm[key], value, err_msg=f"{zoo_id}: normalizer {key}")
        seen.add(agent.agent_name)
    assert seen == {"SynthER", "MADiff"}


@pytest.mark.parametrize("env_id", ["Hopper-v5", "Pendulum-v1"])
def test_env_state_round_trip_continues_bitwise(env_id: str) -> None:
    """The env state an online checkpoint stores (MuJoCo physics or classic-control state, np_random, TimeLimit,
    Monitor) makes a fresh env continue exactly as the original."""
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv

    from diffagents.core.online_resume import _env_state, _set_env_state, check_resumable_env

    def make() -> Any:
        return DummyVecEnv([lambda: Monitor(gym.make(env_id, max_episode_steps=30))])

    a, b = make(), make()
    check_resumable_env(a)
    a.seed(0)
    a.reset()
    rng = np.random.default_rng(0)
    actions = [rng.uniform(-1, 1, (1, *a.action_space.shape)).astype(np.float32) for _ in range(60)]
    for act in actions[:7]:
        a.step(act)
    meta, arrays = _env_state(a.envs[0], 0)
    meta = json.loads(json.dumps(meta))  # what the checkpoint's JSON holds
    b.seed(123)
    b.reset()
    _set_env_state(b.envs[0], 0, meta, arrays)
    for act in actions[7:]:  # crosses the 30-step time limit: auto-reset draws from the restored np_random
        oa, ra, da, _ = a.step(act)
        ob, rb, db, _ = b.step(act)
        np.testing.assert_array_equal(oa, ob)
        np.testing.assert_array_equal(ra, rb)
        np.testing.assert_array_equal(da, db)
    with pytest.raises(TypeError, match="needs a DummyVecEnv"):
        from stable_baselines3.common.vec_env import SubprocVecEnv

        check_resumable_env(SubprocVecEnv.__new__(SubprocVecEnv))


def test_renamed_config_fields_load_from_old_checkpoints_and_warn_as_keywords() -> None:
    """Config names agree across agents (``n_diffusion_steps``, ``sampler_steps``, ``clip_denoised``); the old names
    still load from checkpoints and warn when passed as keywords."""
    dp, synther = get_agent_class("DiffusionPolicy").config_class, get_agent_class("SynthER").config_class
    with pytest.warns(DeprecationWarning, match="'clip_sample' is now 'clip_denoised'"):
        assert dp.from_kwargs("DiffusionPolicy", {"clip_sample": False}).clip_denoised is False
    old = synther.from_dict({"sample_steps": 3, "num_train_steps": 50, "process": "discrete"})
    assert (old.sampler_steps, old.n_diffusion_steps) == (3, 50)
    with pytest.raises(ValueError, match=r"unknown hyperparameters \['nosuch'\]"):
        dp.from_kwargs("DiffusionPolicy", {"nosuch": 1})


@pytest.fixture(scope="module")
def bench_data(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from diffagents.bench import synthetic_dataset

    old = os.environ.get("MINARI_DATASETS_PATH")
    ds = synthetic_dataset("Pendulum-v1", 300, tmp_path_factory.mktemp("bench"))
    yield ds
    if old is None:
        os.environ.pop("MINARI_DATASETS_PATH", None)
    else:
        os.environ["MINARI_DATASETS_PATH"] = old


@pytest.mark.parametrize("name", CONCRETE)
def test_every_registered_agent_is_a_bench_row(name: str, bench_data: Any) -> None:
    """``diffagents bench --quick`` measures every concrete registered agent at its tiny config."""
    from diffagents import bench

    assert name in bench.default_agents()
    res = bench.measure(name, gym.make("Pendulum-v1"), bench_data, steps=2, repeats=2, quick=True)
    assert res.agent == name and res.train_steps_per_s is not None and res.train_steps_per_s > 0
    assert np.isfinite(res.latency_ms) and res.latency_ms > 0


def test_registration_requires_the_contract() -> None:
    """A concrete agent without a tiny config, or with an unknown batch spec, is refused when it registers."""
    from diffagents.core.offline import OfflineAgent
    from diffagents.core.registry import register_agent

    class NoTiny(OfflineAgent):
        pass

    class BadSpec(OfflineAgent):
        batch_spec = "frames"

        @classmethod
        def tiny_config(cls) -> dict[str, Any]:
            return {}

    with pytest.raises(TypeError, match="NoTiny.tiny_config"):
        register_agent(NoTiny)
    with pytest.raises(TypeError, match="BadSpec.batch_spec: expected one of"):
        register_agent(BadSpec)
    assert "NoTiny" not in diffagents.list_agents() and "BadSpec" not in diffagents.list_agents()
