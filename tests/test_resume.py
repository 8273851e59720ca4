"""Crash-safe training: kill a run with SIGKILL, re-run it, and get the weights of an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from agent_fixtures import dataset_root

from diffagents.persistence import read_checkpoint

SCRIPT = """
import sys, os, torch
torch.set_num_threads(1)
sys.path.insert(0, {tests!r})
os.environ["MINARI_DATASETS_PATH"] = {root!r}
import gymnasium as gym, minari
from diffagents import DiffusionQL
ds = minari.load_dataset("test/pendulum/mixed-v0")
agent = DiffusionQL(env=gym.make("Pendulum-v1"), dataset=ds, seed=3, hidden=(32, 32), critic_hidden=(32, 32),
                    batch_size=32, n_candidates=2, ema_start=5, lr_schedule="cosine")
agent.learn({steps}, checkpoint_dir={ckpt!r}, checkpoint_every={every})
agent.save({out!r})
"""


def _run(root: Path, ckpt: Path, out: Path, steps: int = 120, every: int = 10) -> subprocess.Popen[bytes]:
    code = SCRIPT.format(tests=str(Path(__file__).parent), root=str(root), steps=steps, ckpt=str(ckpt),
                         every=every, out=str(out))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _weights(path: Path) -> dict[str, Any]:
    ckpt = read_checkpoint(path)
    return {f"{m}.{k}": v for m, sd in ckpt.weights.items() for k, v in sd.items()}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return dataset_root(tmp_path_factory)


def test_sigkill_and_resume_matches_uninterrupted_run(data_root: Path, tmp_path: Path) -> None:
    ref = _run(data_root, tmp_path / "ref_ckpt", tmp_path / "ref.zip")
    assert ref.wait(timeout=300) == 0, ref.stderr.read().decode() if ref.stderr else ""

    ckpt = tmp_path / "ckpt"
    proc = _run(data_root, ckpt, tmp_path / "killed.zip")
    deadline = time.time() + 240
    rng = np.random.default_rng()
    wanted = int(rng.integers(2, 9))  # kill after a random number of checkpoints
    while time.time() < deadline and proc.poll() is None:
        if len(list(ckpt.glob("step_*.zip"))) >= 1 and max(
                int(p.stem.split("_")[1]) for p in ckpt.glob("step_*.zip")) >= wanted * 10:
            break
        time.sleep(0.02)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert not (tmp_path / "killed.zip").exists()
    resumed = _run(data_root, ckpt, tmp_path / "resumed.zip")
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read().decode() if resumed.stderr else ""

    a, b = _weights(tmp_path / "ref.zip"), _weights(tmp_path / "resumed.zip")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=f"weights differ at {key}")
    assert read_checkpoint(tmp_path / "resumed.zip").meta["num_timesteps"] == 120


def test_resume_refuses_other_config(data_root: Path, tmp_path: Path) -> None:
    import gymnasium as gym
    import minari

    from diffagents import DiffusionQL
    from diffagents.persistence import CheckpointError

    os.environ["MINARI_DATASETS_PATH"] = str(data_root)
    ds = minari.load_dataset("test/pendulum/mixed-v0")
    kw = dict(hidden=(16,), critic_hidden=(16,), batch_size=8, n_candidates=2)
    DiffusionQL(env=gym.make("Pendulum-v1"), dataset=ds, **kw).learn(3, checkpoint_dir=tmp_path, checkpoint_every=2)
    assert sorted(p.name for p in tmp_path.glob("step_*.zip")) == ["step_000000002.zip", "step_000000003.zip"]
    other = DiffusionQL(env=gym.make("Pendulum-v1"), dataset=ds, **{**kw, "eta": 2.0})
    with pytest.raises(CheckpointError, match=r"config differs from this agent's \(eta: checkpoint 1\.0, this agent 2\.0\)"):
        other.learn(5, checkpoint_dir=tmp_path)
    # an acting setting (how the agent acts, not what it learns) may change between the pieces of a run
    acting = DiffusionQL(env=gym.make("Pendulum-v1"), dataset=ds, **{**kw, "n_candidates": 3})
    acting.learn(5, checkpoint_dir=tmp_path)
    assert acting.num_timesteps == 5 and acting._num_timesteps_at_start == 3 and acting.config.n_candidates == 3


def test_nonfinite_loss_names_the_step(data_root: Path) -> None:
    import gymnasium as gym
    import minari

    from diffagents import DiffusionQL
    from diffagents.training import NonFiniteError

    os.environ["MINARI_DATASETS_PATH"] = str(data_root)
    ds = minari.load_dataset("test/pendulum/mixed-v0")
    agent = DiffusionQL(env=gym.make("Pendulum-v1"), dataset=ds, hidden=(16,), critic_hidden=(16,), batch_size=8,
                        n_candidates=2, grad_clip=None, learning_rate=1e30)
    with pytest.raises(NonFiniteError, match="gradient step"):
        agent.learn(50, log_interval=5)
