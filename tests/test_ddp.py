"""Data-parallel training with torchrun semantics: 2 CPU processes on the Gloo backend."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from agent_fixtures import dataset_root

from diffagents.persistence import read_checkpoint

SCRIPT = """
import json, os, sys, torch
torch.set_num_threads(1)
import gymnasium as gym, minari
from diffagents import DiffusionQL
import torch.distributed as dist
out = sys.argv[1]
ds = minari.load_dataset("test/pendulum/mixed-v0")
agent = DiffusionQL(env=gym.make("Pendulum-v1"), dataset=ds, seed=0, hidden=(32, 32), critic_hidden=(32, 32),
                    batch_size=32, n_candidates=2, ema_start=5, eta=0.0, learning_rate=1e-3,
                    lr_schedule="constant")
rank = dist.get_rank()
fixed = agent._sampler.sample(256, generator=torch.Generator().manual_seed(123))
def bc():
    torch.manual_seed(5)
    with torch.no_grad():
        return float(agent.actor.loss(fixed["action"], fixed["obs"])[0])
before = bc()
agent.learn(150, checkpoint_dir=os.path.join(out, "ckpt"), checkpoint_every=50)
after = bc()
agent.save(os.path.join(out, f"rank{rank}.zip"))
json.dump({"before": before, "after": after, "world": dist.get_world_size()},
          open(os.path.join(out, f"rank{rank}.json"), "w"))
"""


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return dataset_root(tmp_path_factory)


def test_two_process_gloo_training_stays_in_sync(data_root: Path, tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MINARI_DATASETS_PATH": str(data_root),
           "PYTHONPATH": os.pathsep.join(sys.path)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29517",
           str(script), str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, timeout=600)
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["world"] == r1["world"] == 2
    assert r0["after"] < 0.8 * r0["before"], r0  # the loss decreased
    w0, w1 = (read_checkpoint(tmp_path / f"rank{r}.zip").weights for r in (0, 1))
    for module in w0:
        for key in w0[module]:
            torch.testing.assert_close(w0[module][key], w1[module][key], rtol=0, atol=0,
                                       msg=f"ranks diverged at {module}.{key}")
    # only rank 0 writes training checkpoints, and they load into a single-process agent
    ckpts = sorted((tmp_path / "ckpt").glob("step_*.zip"))
    assert [p.name for p in ckpts] == ["step_000000100.zip", "step_000000150.zip"]
    import gymnasium as gym

    from diffagents import DiffusionQL

    single = DiffusionQL.load(ckpts[-1], env=gym.make("Pendulum-v1"))
    assert single.num_timesteps == 150
    ref = read_checkpoint(tmp_path / "rank0.zip").weights["actor"]
    for key, value in single.nets["actor"].state_dict().items():
        torch.testing.assert_close(value, ref[key], rtol=0, atol=0)
