"""Package-level guarantees: fast import without heavy optional frameworks; precision / compile options."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from agent_fixtures import make_pendulum_dataset


def test_import_does_not_pull_heavy_frameworks() -> None:
    code = ("import sys, time; t = time.perf_counter(); import diffagents; from diffagents import DiffusionQL, "
            "Diffuser; print(time.perf_counter() - t); "
            "print(','.join(m for m in ('tianshou', 'pettingzoo', 'mpe2', 'd3rlpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[1] == "", f"heavy modules imported: {out[1]}"
    bare = subprocess.run([sys.executable, "-c", "import sys, diffagents; print('torch' in sys.modules)"],
                          capture_output=True, text=True, check=True).stdout.strip()
    assert bare == "False"  # `import diffagents` alone loads agents lazily


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return make_pendulum_dataset(tmp_path_factory.mktemp("minari"))


def test_bf16_precision_trains_and_acts(dataset: Any) -> None:
    from diffagents import DiffusionQL

    agent = DiffusionQL(env=gym.make("Pendulum-v1"), dataset=dataset, precision="bf16", hidden=(16,),
                        critic_hidden=(16,), batch_size=8, n_candidates=2).learn(3)
    act, _ = agent.predict(np.zeros(3, dtype=np.float32))
    assert act.shape == (1,) and np.isfinite(act).all()


@pytest.mark.slow
def test_compile_option_matches_eager(dataset: Any) -> None:
    from diffagents import DiffusionQL

    kw = dict(hidden=(16,), critic_hidden=(16,), batch_size=8, n_candidates=2, seed=0)
    eager = DiffusionQL(env=gym.make("Pendulum-v1"), dataset=dataset, **kw)
    compiled = DiffusionQL(env=gym.make("Pendulum-v1"), dataset=dataset, compile=True, **kw)
    obs = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    np.testing.assert_allclose(eager.predict(obs, deterministic=True)[0],
                               compiled.predict(obs, deterministic=True)[0], atol=1e-5)
    compiled.learn(2)
