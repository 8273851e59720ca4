"""Reliability under concurrency and untrusted inputs (README, "Security and reliability").

* Several processes asking for the same recipe at once on an empty data folder: one build, every process gets
  the same dataset; a builder killed mid-build leaves nothing a later call trips on.
* ``torchrun`` training on an empty data folder (both ranks ask for the dataset).
* Datasets whose metadata names code (``os:system``, ``subprocess:run``, ``builtins:exec``, an unregistered id, a
  registered id with another entry point or kwargs) are refused by every entry point that makes an env from
  them, and a marker file proves nothing ran.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

RECIPE = "diffagents/pendulum/random-v0"
SIZE = 400

BUILD = """
import os, sys, time
sys.path[:0] = {path!r}
import diffagents.data.recipes.base as base
from diffagents.data import make_dataset
from diffagents.data.recipes.base import RECIPES, full_id
rid = full_id({recipe!r})
recipe = RECIPES[rid]
def counted(n, seed, _build=recipe.build):
    with open({log!r}, "a") as fh:  # one line per build actually run
        fh.write(f"{{os.getpid()}}\\n")
    if {slow}:
        open({started!r}, "w").close()
        time.sleep(60)
    return _build(n, seed)
RECIPES[rid] = type(recipe)(recipe.id, recipe.summary, recipe.default_size, counted)
ds = make_dataset({recipe!r}, size={size})
print(ds.spec.dataset_id, ds.total_steps)
"""


def _spawn(root: Path, log: Path, *, slow: bool = False, started: Path | None = None) -> subprocess.Popen[str]:
    code = BUILD.format(path=sys.path, recipe=RECIPE, log=str(log), slow=slow, started=str(started or ""),
                        size=SIZE)
    env = {**os.environ, "MINARI_DATASETS_PATH": str(root), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.name != "metadata.json":  # metadata holds the generation time
            h.update(path.relative_to(folder).as_posix().encode())
            h.update(path.read_bytes())
    meta = json.loads((folder / "data" / "metadata.json").read_text())
    meta.pop("diffagents_generation_s", None)
    h.update(json.dumps(meta, sort_keys=True).encode())
    return h.hexdigest()


@pytest.mark.parametrize("n", [2, 4, 8])
def test_concurrent_requests_build_once_and_agree(n: int, tmp_path: Path) -> None:
    root, log = tmp_path / "minari", tmp_path / "builds.log"
    procs = [_spawn(root, log) for _ in range(n)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    assert len({out.strip() for out, _ in outs}) == 1  # every process read the same dataset
    assert len(log.read_text().split()) == 1  # built once
    folders = [p for p in (root / "diffagents" / "pendulum").iterdir() if p.is_dir()]
    assert len(folders) == 1 and not any((root / ".building").iterdir())
    # a rebuild from scratch in another folder gives the same bytes: what the others read is the real thing
    other, log2 = tmp_path / "minari2", tmp_path / "builds2.log"
    p = _spawn(other, log2)
    assert p.wait(timeout=300) == 0
    assert _digest(folders[0]) == _digest(next(p for p in (other / "diffagents" / "pendulum").iterdir() if p.is_dir()))


def test_a_builder_killed_mid_build_leaves_nothing_behind(tmp_path: Path) -> None:
    root, log, started = tmp_path / "minari", tmp_path / "builds.log", tmp_path / "started"
    victim = _spawn(root, log, slow=True, started=started)
    deadline = time.time() + 120
    while not started.exists():
        assert time.time() < deadline and victim.poll() is None, victim.stderr.read() if victim.stderr else ""
        time.sleep(0.1)
    waiter = _spawn(root, log)  # blocks on the lock the victim holds
    time.sleep(1.0)
    assert waiter.poll() is None
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    out, err = waiter.communicate(timeout=300)  # the OS released the dead builder's lock
    assert waiter.returncode == 0, err[-3000:]
    assert out.split()[1] == str(SIZE)
    assert len(log.read_text().split()) == 2  # the killed build and the one that finished
    assert not any((root / ".building").iterdir())  # the dead builder's temporary folder was removed


# ---------------------------------------------------------------------------------------------- code named by data
def _tamper(dataset: Any, **spec: Any) -> None:
    """Rewrite the dataset's stored env specs (both) with ``spec`` fields."""
    meta_path = Path(dataset.storage.data_path) / "metadata.json"
    meta = json.loads(meta_path.read_text())
    for key in ("env_spec", "eval_env_spec"):
        stored = json.loads(meta[key])
        stored.update(spec)
        meta[key] = json.dumps(stored)
    meta_path.write_text(json.dumps(meta))


def _attacks(marker: Path) -> dict[str, dict[str, Any]]:
    return {
        "os_system": {"entry_point": "os:system", "kwargs": {"command": f"touch {marker}"}},
        "subprocess_run": {"entry_point": "subprocess:run", "kwargs": {"args": ["touch", str(marker)]}},
        "builtins_exec": {"entry_point": "builtins:exec", "kwargs": {"source": f"open({str(marker)!r}, 'w')"}},
        "unregistered_id": {"id": "Evil-v0", "entry_point": "os:system", "kwargs": {"command": f"touch {marker}"}},
        "registered_id_other_entry_point": {"entry_point": "os:system"},
        "registered_id_other_kwargs": {"kwargs": {"g": 1e9}},
    }


@pytest.fixture(scope="module")
def clean_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("crafted")


@pytest.mark.parametrize("attack", list(_attacks(Path("/x"))))
def test_datasets_naming_code_are_refused_everywhere(attack: str, clean_root: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import minari
    from agent_fixtures import make_pendulum_dataset

    from diffagents.cli import main
    from diffagents.data import DataError
    from diffagents.data.safe_env import make_env_from_dataset

    marker = tmp_path / "pwned"
    root = clean_root / attack
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    ds = make_pendulum_dataset(root, dataset_id=f"test/crafted/{attack.replace('_', '-')}-v0", episodes=2)
    _tamper(ds, **_attacks(marker)[attack])
    ds = minari.load_dataset(ds.spec.dataset_id)  # loading the metadata itself runs nothing
    field = "id" if attack == "unregistered_id" else "kwargs" if attack.endswith("kwargs") else "entry_point"
    with pytest.raises(DataError, match=rf"field 'eval_env_spec'\.{field}"):
        make_env_from_dataset(ds)
    assert main(["train", "diffusionql", "--dataset", ds.spec.dataset_id, "--steps", "1", "--eval-episodes", "1",
                 "--no-progress"]) == 2
    if attack != "registered_id_other_kwargs":  # the collection env: only its entry point is held to the registry
        from diffagents import SynthER

        gen = SynthER.from_dataset(ds, width=16, n_blocks=1, time_dim=8, batch_size=8, sampler_steps=2)
        gen.fit(steps=1)
        with pytest.raises(DataError, match=f"field 'env_spec'.{field}"):
            gen.upsample(n=2, new_id="test/crafted/upsampled-v0")
    assert not marker.exists(), "data ran code"


# ---------------------------------------------------------------------------------------------- DDP, fresh folder
def test_torchrun_training_on_an_empty_data_folder(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MINARI_DATASETS_PATH": str(tmp_path / "empty"),
           "PYTHONPATH": os.pathsep.join(sys.path)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29531", "-m",
           "diffagents", "train", "diffusionql", "--dataset", RECIPE, "--steps", "20", "--eval-episodes", "1",
           "--out", str(tmp_path / "dql"), "--no-progress", "--set", "hidden=[32,32]", "critic_hidden=[32,32]",
           "batch_size=32", "n_candidates=2"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "dql.zip").is_file()
    assert len([p for p in (tmp_path / "empty" / "diffagents" / "pendulum").iterdir() if p.is_dir()]) == 1


def test_zoo_recipes_name_envs_by_registered_id_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A recipe's ``env`` in Gymnasium's ``module:Env`` form would import the module; it is refused first."""
    import yaml
    from diffagents.zoo import catalog

    from diffagents import zoo
    from diffagents.data import DataError

    for name in ("RECIPES", "WEIGHTS", "CARDS"):
        (tmp_path / name).mkdir()
        monkeypatch.setattr(catalog, name, tmp_path / name)
    evil = tmp_path / "evil_module_for_test.py"
    marker = tmp_path / "pwned"
    evil.write_text(f"open({str(marker)!r}, 'w').close()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    recipe = {"algo": "DiffusionQL", "dataset": "diffagents/pendulum/expert-v0", "env": "evil_module_for_test:Evil-v0",
              "steps": 1, "seed": 0}
    (tmp_path / "RECIPES" / "evil.yaml").write_text(yaml.safe_dump(recipe))
    with pytest.raises(DataError, match="zoo recipe evil field 'env': 'evil_module_for_test:Evil-v0' is not a registered"):
        zoo.make_env("evil")
    assert not marker.exists()
