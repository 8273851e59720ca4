"""Fault injection: what survives a kill, a full disk or concurrent writers, and what is lost (goal: nothing).

Each scenario runs in child processes on a fresh temporary folder and checks the state afterwards:

* kill -9 during a dataset build (a recipe slowed down inside the build), then a new request;
* kill -9 during a checkpoint write (a save slowed down between the zip members), then load the target;
* kill -9 during a zoo card write, then read the card;
* disk full while writing a checkpoint, a dataset and a card (``RLIMIT_FSIZE`` caps the size of any file the
  child writes, as a full disk would);
* 8 concurrent writers of the same dataset, of the same episode cache and of the same checkpoint path.

    python benchmarks/faults.py            # writes results/faults.md and results/faults.json
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
PRELUDE = """
import os, sys, time, json, resource, signal
sys.path[:0] = {path!r}
import torch; torch.set_num_threads(1)
"""


def child(code: str, root: Path, *, fsize: int | None = None) -> subprocess.Popen[str]:
    pre = PRELUDE.format(path=sys.path)
    if fsize is not None:
        pre += (f"signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
                f"resource.setrlimit(resource.RLIMIT_FSIZE, ({fsize}, {fsize}))\n")
    env = {**os.environ, "MINARI_DATASETS_PATH": str(root / "minari"), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", pre + textwrap.dedent(code)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=root)


def run(code: str, root: Path, **kw: Any) -> tuple[int, str, str]:
    p = child(code, root, **kw)
    out, err = p.communicate(timeout=600)
    return p.returncode, out, err


def kill_when(p: subprocess.Popen[str], flag: Path, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not flag.exists():
        if time.time() > deadline or p.poll() is not None:
            raise RuntimeError(f"child never reached the fault point: {p.stderr.read() if p.stderr else ''}")
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()


SLOW_RECIPE = """
from diffagents.data.recipes.base import RECIPES, full_id
rid = full_id("diffagents/pendulum/random-v0")
r = RECIPES[rid]
def slow(n, seed, _b=r.build):
    out = _b(n, seed)
    open("started", "w").close()
    time.sleep(60)
    return out
RECIPES[rid] = type(r)(r.id, r.summary, r.default_size, slow)
from diffagents.data import make_dataset
make_dataset("diffagents/pendulum/random-v0", size=400)
"""
MAKE = """
from diffagents.data import make_dataset
ds = make_dataset("diffagents/pendulum/random-v0", size=400)
print(ds.total_steps)
"""
SAVE = """
import gymnasium as gym
from diffagents import DiffusionQL
from diffagents.data import make_dataset
ds = make_dataset("diffagents/pendulum/random-v0", size=400)
agent = DiffusionQL(env=gym.make("Pendulum-v1"), dataset=ds, seed=0, hidden=(32, 32), critic_hidden=(32, 32),
                    batch_size=16)
agent.learn(2)
agent.save("agent.zip")
agent.learn(2, reset_num_timesteps=False)
{fault}
agent.save("agent.zip")
print("saved")
"""
SLOW_ZIP = """
import zipfile
_write = zipfile.ZipFile.writestr
def slow(self, name, data, *a, **k):
    _write(self, name, data, *a, **k)
    if name == "weights.safetensors":
        open("started", "w").close()
        time.sleep(60)
zipfile.ZipFile.writestr = slow
"""
CARD = """
from pathlib import Path
from diffagents.zoo.registry import write_card
write_card(Path("card.json"), {{"ok": 1}})
{fault}
write_card(Path("card.json"), {{"ok": 2, "big": "x" * 3_000_000}})
print("written")
"""
SLOW_CARD = """
import os as _os
_fdopen = _os.fdopen
class Slow:
    def __init__(self, fh): self.fh = fh
    def __enter__(self): return self
    def __exit__(self, *a): self.fh.__exit__(*a)
    def write(self, s):
        self.fh.write(s[: len(s) // 2]); self.fh.flush()
        open("started", "w").close(); time.sleep(60)
def fdopen(fd, *a, **k): return Slow(_fdopen(fd, *a, **k))
_os.fdopen = fdopen
"""


def scenario_kill_dataset(root: Path) -> dict[str, Any]:
    p = child(SLOW_RECIPE, root)
    kill_when(p, root / "started")
    code, out, err = run(MAKE, root)
    building = list((root / "minari" / ".building").iterdir())
    return {"fault": "kill -9 during a dataset build", "survived": code == 0 and out.strip() == "400",
            "lost": "nothing" if code == 0 and not building else f"rc {code}, {len(building)} leftover folders",
            "detail": "the next request took the lock the dead builder released, removed its temporary folder "
                      "and built the dataset"}


def _load_ok(root: Path, path: str) -> tuple[bool, str]:
    code, out, err = run(f"""
from diffagents import DiffusionQL
a = DiffusionQL.load({path!r})
print(a.num_timesteps)
""", root)
    return code == 0, out.strip() or err.strip().splitlines()[-1]


def scenario_kill_checkpoint(root: Path) -> dict[str, Any]:
    p = child(SAVE.format(fault=SLOW_ZIP), root)
    kill_when(p, root / "started")
    ok, steps = _load_ok(root, "agent.zip")
    left = len([f for f in root.iterdir() if f.name.startswith(".agent.zip.")])
    code, out, _ = run(SAVE.format(fault=""), root)  # the next save to the same path
    after = len([f for f in root.iterdir() if f.name.startswith(".agent.zip.")])
    return {"fault": "kill -9 during a checkpoint write", "survived": ok and steps == "2" and code == 0,
            "lost": "the unfinished save only" if ok and steps == "2" else f"load: {steps}",
            "detail": f"the previous checkpoint (step {steps}) loads; the killed writer's temporary file "
                      f"({left} left) was removed by the next save to that path ({after} left)"}


def scenario_kill_card(root: Path) -> dict[str, Any]:
    p = child(CARD.format(fault=SLOW_CARD), root)
    kill_when(p, root / "started")
    card = json.loads((root / "card.json").read_text())
    return {"fault": "kill -9 during a zoo card write", "survived": card == {"ok": 1},
            "lost": "the unfinished write only" if card == {"ok": 1} else f"card {card}",
            "detail": "the card on disk is the previous one, whole"}


def scenario_disk_full(root: Path) -> list[dict[str, Any]]:
    rows = []
    code, out, err = run(SAVE.format(fault="resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))"), root)
    ok, steps = _load_ok(root, "agent.zip")
    rows.append({"fault": "disk full during a checkpoint write (files capped at 20 kB)",
                 "survived": code != 0 and ok and steps == "2",
                 "lost": "the new save only (it raised OSError)" if ok else f"load: {steps}",
                 "detail": f"save raised ({err.strip().splitlines()[-1][:80] if err.strip() else 'no error'}); "
                           f"the previous checkpoint (step {steps}) loads"})
    fresh = root / "fresh"  # an empty data folder: the checkpoint scenario above built the dataset in root
    fresh.mkdir()
    code, out, err = run(MAKE, fresh, fsize=30000)
    half = (fresh / "minari" / "diffagents" / "pendulum" / "random-n400-s0-v0").exists()
    code2, out2, _ = run(MAKE, fresh)
    how = f"died with signal {-code} inside HDF5" if code < 0 else f"raised (exit {code})"
    rows.append({"fault": "disk full during a dataset build (files capped at 30 kB)",
                 "survived": code != 0 and not half and code2 == 0 and out2.strip() == "400",
                 "lost": "nothing" if code2 == 0 and not half else f"rc {code2}, half dataset: {half}",
                 "detail": f"the build {how}; no half dataset was left under its id, and the next request built it"})
    (root / "card.json").unlink(missing_ok=True)
    code, out, err = run(CARD.format(fault="resource.setrlimit(resource.RLIMIT_FSIZE, (100000, 100000))"), root)
    card = json.loads((root / "card.json").read_text())
    rows.append({"fault": "disk full during a zoo card write (files capped at 100 kB)",
                 "survived": code != 0 and card == {"ok": 1},
                 "lost": "the new card only" if card == {"ok": 1} else f"card {card}",
                 "detail": "the write raised; the previous card is whole"})
    return rows


def scenario_concurrent(root: Path) -> list[dict[str, Any]]:
    rows = []
    procs = [child(MAKE, root) for _ in range(8)]
    res = [(p.wait(timeout=600), p.stdout.read() if p.stdout else "") for p in procs]
    rows.append({"fault": "8 processes request the same dataset at once (empty folder)",
                 "survived": all(c == 0 and o.strip() == "400" for c, o in res), "lost": "nothing",
                 "detail": "one build (the others waited on its lock), every process read the same dataset"})
    cache = """
from diffagents.data import make_dataset, read_episodes
ds = make_dataset("diffagents/pendulum/random-v0", size=400)
t = read_episodes(ds)
print(int(t.lengths.sum()))
"""
    procs = [child(cache, root) for _ in range(8)]
    res = [(p.wait(timeout=600), p.stdout.read() if p.stdout else "") for p in procs]
    rows.append({"fault": "8 processes write the same episode cache at once",
                 "survived": all(c == 0 and o.strip() == "400" for c, o in res), "lost": "nothing",
                 "detail": "the cache folder was written once under its lock; readers got whole tables"})
    save = SAVE.format(fault="")
    procs = [child(save, root) for _ in range(8)]
    res = [(p.wait(timeout=600), p.stdout.read() if p.stdout else "") for p in procs]
    ok, steps = _load_ok(root, "agent.zip")
    rows.append({"fault": "8 processes save a checkpoint to the same path at once",
                 "survived": all(c == 0 for c, _ in res) and ok, "lost": "nothing (last writer wins, whole)",
                 "detail": f"every save succeeded; the file on disk is one whole checkpoint (step {steps})"})
    return rows


def main() -> None:
    from diffagents.sysinfo import hardware

    rows: list[dict[str, Any]] = []
    for fn in (scenario_kill_dataset, scenario_kill_checkpoint, scenario_kill_card, scenario_disk_full,
               scenario_concurrent):
        with tempfile.TemporaryDirectory(prefix="diffagents_faults_") as tmp:
            out = fn(Path(tmp))
            rows.extend(out if isinstance(out, list) else [out])
            print(json.dumps(rows[-1]), flush=True)
    (HERE / "results" / "faults.json").write_text(json.dumps(rows, indent=1))
    lines = [f"`python benchmarks/faults.py`: each fault injected into child processes on a fresh folder, then "
             f"the state checked. {hardware()}.\n", "| fault | survived | lost | what happened |", "|---|---|---|---|"]
    lines += [f"| {r['fault']} | {'yes' if r['survived'] else 'NO'} | {r['lost']} | {r['detail']} |" for r in rows]
    (HERE / "results" / "faults.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
