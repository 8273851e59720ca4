"""The command line and the pretrained zoo."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import pytest
import torch

from diffagents import zoo
from diffagents.cli import main
from diffagents.data.envs import ensure_registered


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "diffagents", *args], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


@pytest.mark.parametrize("cmd", [[], ["data"], ["train"], ["eval"], ["zoo"], ["quickstart"], ["bench"]])
def test_help_on_every_command(cmd: list[str]) -> None:
    proc = run_cli(*cmd, "--help")
    assert proc.returncode == 0 and "usage:" in proc.stdout


def test_bad_arguments_exit_2_with_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "nosuchalgo", "--dataset", "diffagents/pendulum/expert-v0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("diffagents: error:") and "nosuchalgo" in err[0]
    assert main(["eval", str(tmp_path / "missing.zip"), "--env", "Pendulum-v1"]) == 2
    assert main(["zoo", "eval", "no-such-zoo-id"]) == 2
    assert main(["data", "make", "diffagents/nosuch/thing-v0"]) == 2
    with pytest.raises(SystemExit) as exc:
        main(["--threads", "0", "data", "list"])
    assert exc.value.code == 2


def test_bench_reports_speed_in_a_table_and_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = run_cli("bench", "diffusionql", "--quick", "--steps", "2", "--repeats", "2", "--env", "Pendulum-v1",
                   "--json", str(out), env={"MINARI_DATASETS_PATH": str(tmp_path / "minari")})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "DiffusionQL" in proc.stdout and "steps/s" in proc.stdout
    info = json.loads(out.read_text())
    assert info["threads"] == 1 and info["device"] == "cpu" and len(info["rows"]) == 1
    row = info["rows"][0]
    from diffagents import DiffusionQL

    assert row["agent"] == "DiffusionQL" and row["batch"] == DiffusionQL.tiny_config()["batch_size"]  # --quick: tiny
    assert info["sizes"] == "tiny_config"
    assert math.isfinite(row["train_steps_per_s"]) and row["train_steps_per_s"] > 0
    assert math.isfinite(row["latency_ms"]) and row["latency_ms"] > 0
    assert not (tmp_path / "minari").exists()  # the random dataset lives in a temporary folder


def test_bench_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "nosuchalgo"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("diffagents: error:") and "nosuchalgo" in err[0]
    assert main(["bench", "diffusionql", "--steps", "0"]) == 2
    assert main(["bench", "diffusionql", "--threads", "0"]) == 2
    assert main(["bench", "diffusionql", "--env", "NoSuchEnv-v0"]) == 2
    with pytest.raises(SystemExit) as exc:
        main(["bench", "--device", "tpu"])
    assert exc.value.code == 2


def test_train_then_eval_round_trip(tmp_path: Path) -> None:
    env = {"MINARI_DATASETS_PATH": str(tmp_path / "minari")}
    sys.path.insert(0, str(Path(__file__).parent))
    from agent_fixtures import make_pendulum_dataset

    make_pendulum_dataset(tmp_path / "minari")
    out = tmp_path / "agent.zip"
    proc = run_cli("train", "diffusionql", "--dataset", "test/pendulum/mixed-v0", "--steps", "20", "--out", str(out),
                   "--eval-episodes", "1", "--no-progress", "--set", "hidden=[16]", "critic_hidden=[16]",
                   "batch_size=8", "n_candidates=2", env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert out.is_file() and (tmp_path / "agent.zip.checkpoints").is_dir()
    proc = run_cli("eval", str(out), "--dataset", "test/pendulum/mixed-v0", "--episodes", "1", env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "normalized score" in proc.stdout
    # running the same command with a larger budget resumes from the last checkpoint
    proc = run_cli("train", "diffusionql", "--dataset", "test/pendulum/mixed-v0", "--steps", "30", "--out", str(out),
                   "--eval-episodes", "1", "--no-progress", "--set", "hidden=[16]", "critic_hidden=[16]",
                   "batch_size=8", "n_candidates=2", env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "resuming from" in proc.stdout and "step_000000020.zip" in proc.stdout
    from diffagents.persistence import read_checkpoint

    assert read_checkpoint(out).meta["num_timesteps"] == 30


def test_zoo_registry_is_consistent() -> None:
    entries = zoo.entries()
    assert entries, "the zoo has recipes"
    total = 0
    for zoo_id, entry in entries.items():
        assert zoo_id == zoo_id.lower() and zoo_id.startswith(entry.algo.lower())
        if entry.trained:
            card = zoo.card(zoo_id)
            assert card["command"] == f"diffagents zoo train {zoo_id}"
            assert card["gradient_steps"] == entry.steps, zoo_id
            # a recipe edited after training needs `zoo train` (or, for acting settings, `zoo rescore`) again
            assert card["hyperparameters"] == zoo.registry._plain(zoo.registry._backend(entry).hyperparameters(entry)), \
                zoo_id
            if entry.generator:  # judged by dynamics fidelity of sampled transitions
                assert card["evaluation"]["samples"] >= 1000
            else:
                ev = card["evaluation"]
                assert ev["episodes"] >= 20
                lo, hi = card["reference_scores"]  # what zoo.evaluate normalizes with (no dataset needed)
                assert ev["normalized_mean"] == pytest.approx(100 * (ev["return_mean"] - lo) / (hi - lo))
            total += entry.weights.stat().st_size
    assert total < 100_000_000  # the zoo issue's budget: under 100 MB of weights in the package


TRAINED = [row["id"] for row in zoo.list_agents()]
AGENTS = [zoo_id for zoo_id in TRAINED if not zoo.entries()[zoo_id].generator]


def _episode_limit(zoo_id: str) -> int:
    """The card env's episode length (0 for a multi-agent constructor or a generator's simulator)."""
    env = zoo.card(zoo_id)["env"]
    if zoo.entries()[zoo_id].generator or not isinstance(env, str):
        return 0
    ensure_registered(env)  # PointMaze ids live in gymnasium_robotics
    return gym.spec(env).max_episode_steps or 0


def _one_per_algorithm(ids: list[str]) -> set[str]:
    """Per algorithm, the entry with the shortest episodes (then the first id): the default suite re-evaluates
    these (on about 400 env steps); ``-m slow`` re-evaluates every other entry (on about 3000)."""
    best: dict[str, tuple[int, str]] = {}
    for limit, zoo_id in sorted((_episode_limit(i), i) for i in ids):
        best.setdefault(zoo.entries()[zoo_id].algo, (limit, zoo_id))
    return {zoo_id for _, zoo_id in best.values()}


_DEFAULT_REEVALUATED = _one_per_algorithm(TRAINED)


@pytest.mark.parametrize("zoo_id", [pytest.param(i, marks=() if i in _DEFAULT_REEVALUATED else pytest.mark.slow)
                                    for i in TRAINED])
def test_zoo_agents_reproduce_their_cards(zoo_id: str) -> None:
    info = zoo.card(zoo_id)
    card = info["evaluation"]
    if "samples" in card:  # a generator: next-state error of fresh samples against the simulator
        n, count, (key, std_key) = 1000, card["samples"], ("next_std_mse_mean", "next_std_mse_std")
    else:  # 6 episodes, fewer for long-episode envs: about 3000 env steps at most (at least 3 episodes) with
        # -m slow, about 400 in the default suite (at least 2: Decision Diffuser samples a whole 20-step chain with
        # guidance at every env step, 0.3 s a decision on one CPU thread); the tolerance widens with fewer episodes
        count = card["episodes"]
        limit = _episode_limit(zoo_id)  # 0 for a multi-agent constructor
        lo, steps = (2, 400) if zoo_id in _DEFAULT_REEVALUATED else (3, 3000)
        n = max(lo, min(6, steps // limit)) if limit else 6
        key, std_key = ("normalized_mean", "normalized_std") if "normalized_mean" in card else ("return_mean",
                                                                                                  "return_std")
    fresh = zoo.evaluate(zoo_id, n_episodes=n, seed=777)  # seeds never used for the card; one env, as the card
    # 3 standard errors of the difference of two means (Welch): the fresh mean's spread is the card's, or the fresh
    # sample's own where it is wider (heavy-tailed metrics such as a generator's per-transition error)
    fresh_std = max(card[std_key], fresh[std_key])
    tol = 3.0 * math.sqrt(fresh_std ** 2 / n + card[std_key] ** 2 / count) + 1e-6
    assert abs(fresh[key] - card[key]) <= tol, json.dumps({"fresh": fresh, "card": card})


def test_batched_zoo_evaluation_is_for_single_agents() -> None:
    multi = [i for i in TRAINED if zoo.entries()[i].multi_agent or zoo.entries()[i].generator]
    for zoo_id in multi[:1]:
        with pytest.raises(ValueError, match="n_envs.*expected n_envs=1, got 2"):
            zoo.evaluate(zoo_id, n_episodes=2, n_envs=2)
    assert main(["zoo", "eval", AGENTS[0], "--n-envs", "0"]) == 2


@pytest.mark.parametrize("zoo_id", [i for i in AGENTS if zoo.card(i)["env"] == "Pendulum-v1"][:1])
def test_enjoy_records_a_gif(zoo_id: str, tmp_path: Path) -> None:
    import imageio.v2 as imageio
    from diffagents.zoo.enjoy import record_episode

    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    path = record_episode(zoo_id, tmp_path / "episode.gif", max_steps=20)
    frames = imageio.mimread(path)
    assert len(frames) == 21 and frames[0].ndim == 3


def test_enjoy_names_the_opengl_setting_when_mujoco_cannot_render(tmp_path: Path) -> None:
    from diffagents.zoo.enjoy import record_episode

    zoo_id = next(i for i in AGENTS if zoo.card(i)["env"] in ("Hopper-v5", "HalfCheetah-v5"))
    try:
        path = record_episode(zoo_id, tmp_path / "episode.gif", max_steps=2)
    except RuntimeError as exc:  # this machine has no OpenGL backend for MuJoCo
        assert "MUJOCO_GL=egl" in str(exc) and zoo_id in str(exc)
    else:
        assert path.is_file()


def use_temporary_zoo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point the zoo registry (recipes, weights, cards) and the Minari root at empty folders under ``tmp_path``."""
    from diffagents.zoo import catalog

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    for name in ("recipes", "weights", "cards"):
        (tmp_path / name).mkdir()
        monkeypatch.setattr(catalog, name.upper(), tmp_path / name)


def test_recipe_weights_dtype_is_validated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import yaml

    use_temporary_zoo(tmp_path, monkeypatch)
    base = {"algo": "IDQL", "dataset": "diffagents/pendulum/expert-v0", "steps": 1, "seed": 0}
    (tmp_path / "recipes" / "idql-a.yaml").write_text(yaml.safe_dump(base))
    (tmp_path / "recipes" / "idql-b.yaml").write_text(yaml.safe_dump({**base, "weights_dtype": None}))
    entries = zoo.entries()
    assert entries["idql-a"].weights_dtype == "float16" and entries["idql-b"].weights_dtype is None
    (tmp_path / "recipes" / "idql-c.yaml").write_text(yaml.safe_dump({**base, "weights_dtype": "int8"}))
    with pytest.raises(ValueError, match="idql-c.yaml: weights_dtype.*'int8'"):
        zoo.entries()


def test_train_and_eval_madiff_from_the_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``train madiff`` on a multi-agent recipe builds the PettingZoo env named in its metadata, saves, evaluates."""
    from diffagents.data import make_dataset

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    ds_id = make_dataset("mpe-spread/expert-v0", size=60).spec.dataset_id
    env = {"MINARI_DATASETS_PATH": str(tmp_path / "minari")}
    out = tmp_path / "madiff.zip"
    proc = run_cli("train", "MADiff", "--dataset", ds_id, "--steps", "3", "--out", str(out), "--eval-episodes", "1",
                   "--no-progress", "--set", "dim=8", "dim_mults=[1,2]", "horizon=8", "n_diffusion_steps=10",
                   "sampler=ddim", "sampler_steps=2", "inv_hidden=[16]", "batch_size=4", "inv_batch_size=8",
                   "n_heads=2", env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert out.is_file() and "MADiff on diffagents/mpe-spread/expert-n60-s0-v0" in " ".join(proc.stdout.split())
    proc = run_cli("eval", str(out), "--dataset", ds_id, "--episodes", "1", env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = " ".join(proc.stdout.split())  # rich wraps long lines
    assert "team return" in text and "normalized" in text
    proc = run_cli("eval", str(out), "--env", "Pendulum-v1", env=env)  # no dataset: no PettingZoo env to run on
    assert proc.returncode == 2 and "needs --dataset" in proc.stderr


def test_dataset_env_factory_refuses_other_constructors() -> None:
    """A dataset naming an arbitrary constructor cannot make the loader import it."""
    from diffagents.wrappers.pettingzoo import env_fn_from_dataset

    ok = env_fn_from_dataset({"diffagents_eval_env": {"constructor": "mpe2.simple_spread_v3.parallel_env",
                                                      "kwargs": {"N": 2, "continuous_actions": True}}})
    assert len(ok().possible_agents) == 2
    for bad in ("os.system", "mpe2.simple_spread_v3.env_fn", "subprocess.parallel_env"):
        with pytest.raises(ValueError, match="diffagents_eval_env.constructor"):
            env_fn_from_dataset({"diffagents_eval_env": {"constructor": bad}})
    with pytest.raises(ValueError, match="diffagents_eval_env"):
        env_fn_from_dataset({})


TINY_MADIFF = {"dim": 8, "dim_mults": [1, 2], "horizon": 8, "n_diffusion_steps": 10, "sampler": "ddim",
               "sampler_steps": 2, "inv_hidden": [16], "batch_size": 4, "inv_batch_size": 8, "n_heads": 2}


def test_zoo_trains_loads_and_evaluates_a_madiff_entry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A multi-agent recipe runs end to end in a temporary zoo: card, inference-only weights, load, eval, enjoy."""
    import imageio.v2 as imageio
    import numpy as np
    import yaml
    from diffagents.zoo import catalog
    from diffagents.zoo.enjoy import record_episode

    from diffagents import MADiff
    from diffagents.persistence import read_checkpoint

    use_temporary_zoo(tmp_path, monkeypatch)
    zoo_id = "madiff-mpe-spread-tiny"
    recipe = {"algo": "MADiff", "dataset": "diffagents/mpe-spread/expert-v0", "dataset_size": 60, "steps": 3,
              "seed": 0, "eval_episodes": 1, "hyperparameters": TINY_MADIFF}
    (tmp_path / "recipes" / f"{zoo_id}.yaml").write_text(yaml.safe_dump(recipe))
    assert zoo.list_agents() == [] and zoo.list_agents(trained_only=False)[0]["trained"] is False
    with pytest.raises(FileNotFoundError, match="zoo train"):
        zoo.load(zoo_id)

    trained: list[MADiff] = []
    learn = MADiff.learn
    monkeypatch.setattr(MADiff, "learn", lambda self, *a, **k: (trained.append(self), learn(self, *a, **k))[1])
    info = zoo.train(zoo_id, device="cpu")
    card = zoo.card(zoo_id)
    assert card == json.loads(json.dumps(info))
    assert card["algo"] == "MADiff" and card["dataset"] == "diffagents/mpe-spread/expert-n60-s0-v0"
    assert card["dataset_size"] == 60 and card["gradient_steps"] == 3 and card["seed"] == 0
    assert card["command"] == f"diffagents zoo train {zoo_id}" and card["hardware"] and card["wall_time_s"] >= 0
    assert card["env"]["constructor"] == "mpe2.simple_spread_v3.parallel_env" and card["device"] == "cpu"
    assert card["hyperparameters"]["dim"] == 8 and card["hyperparameters"]["prediction_type"] == "x0"  # + CPU preset
    ev = card["evaluation"]
    assert ev["episodes"] == 1 and ev["seed"] == 10_000 and ev["deterministic"] is True
    assert all(math.isfinite(ev[k]) for k in ("return_mean", "return_std", "normalized_mean", "normalized_std"))
    assert read_checkpoint(catalog.WEIGHTS / f"{zoo_id}.zip").optimizers == {}  # inference-only
    assert card["weights_bytes"] == (catalog.WEIGHTS / f"{zoo_id}.zip").stat().st_size
    assert [row["id"] for row in zoo.list_agents()] == [zoo_id]

    env_fn = zoo.make_env(zoo_id)  # from the card: no dataset needed
    agent = zoo.load(zoo_id, device="cpu")
    assert isinstance(agent, MADiff) and agent.agents == list(env_fn().possible_agents)
    obs, _ = env_fn().reset(seed=3)
    got, _ = agent.predict(obs, episode_start=np.array([True]), deterministic=True)
    assert card["weights_dtype"] == "float16"  # the zoo ships half-size weights: the trained ones, rounded
    with torch.no_grad():
        for module in [*trained[0].nets.values(), trained[0].ema.model]:
            for tensor in module.state_dict().values():
                if tensor.is_floating_point():
                    tensor.copy_(tensor.half().float())
    want, _ = trained[0].predict(obs, episode_start=np.array([True]), deterministic=True)
    assert set(got) == set(want)
    for a in want:
        np.testing.assert_allclose(got[a], want[a], rtol=1e-6, atol=1e-7)
    res = zoo.evaluate(zoo_id, n_episodes=1, seed=10_000, device="cpu")  # the card's episode again
    assert res["episodes"] == 1 and res["return_mean"] == pytest.approx(ev["return_mean"])
    assert res["normalized_mean"] == pytest.approx(ev["normalized_mean"])

    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    frames = imageio.mimread(record_episode(zoo_id, tmp_path / "spread.gif", max_steps=3, scale=0.1))
    assert 1 <= len(frames) <= 4 and frames[0].shape == (70, 70, 3)  # the GIF writer merges identical frames


def test_zoo_fits_loads_and_evaluates_a_synther_generator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """A SynthER recipe runs end to end in a temporary zoo; its card reports dynamics fidelity, not returns."""
    import numpy as np
    import yaml

    from diffagents import SynthER
    from diffagents.agents.synthesis.synther_fidelity import simulator_step

    use_temporary_zoo(tmp_path, monkeypatch)
    zoo_id = "synther-hopper-random-tiny"
    recipe = {"algo": "SynthER", "dataset": "diffagents/hopper/random-v0", "dataset_size": 300, "env": "Hopper-v5",
              "steps": 20, "seed": 0, "eval_episodes": 64,
              "hyperparameters": {"width": 32, "n_blocks": 1, "batch_size": 32, "sampler_steps": 4}}
    (tmp_path / "recipes" / f"{zoo_id}.yaml").write_text(yaml.safe_dump(recipe))
    info = zoo.train(zoo_id, device="cpu")
    card = zoo.card(zoo_id)
    assert card == json.loads(json.dumps(info))
    assert card["algo"] == "SynthER" and card["env"] == "Hopper-v5" and card["gradient_steps"] == 20
    ev = card["evaluation"]
    assert ev["samples"] == 64 and ev["seed"] == 10_000 and 0.0 <= ev["terminal_agreement"] <= 1.0
    assert all(math.isfinite(ev[k]) and ev[k] > 0 for k in ("reward_abs_mean", "next_std_mse_mean", "next_mse_std"))
    gen = zoo.load(zoo_id, device="cpu")
    assert isinstance(gen, SynthER) and gen.num_timesteps == 20
    assert zoo.evaluate(zoo_id, n_episodes=64, seed=10_000) == ev  # same seed, same samples, same errors
    # the fidelity is the simulator's verdict: real transitions score ~0, so the metric can tell data apart
    from diffagents.data import make_dataset, to_transitions

    tr = to_transitions(make_dataset("diffagents/hopper/random-v0", size=300))
    truth = simulator_step("Hopper-v5", tr.observations[:50], tr.actions[:50])
    np.testing.assert_allclose(truth["rewards"], tr.rewards[:50], atol=1e-3)
    assert zoo.list_agents()[0]["score"] is None
    with pytest.raises(ValueError, match="transition generator"):
        from diffagents.zoo.enjoy import record_episode

        record_episode(zoo_id, tmp_path / "x.gif")
    assert main(["zoo", "enjoy", zoo_id]) == 2
    assert "transition generator" in capsys.readouterr().err


def test_zoo_distills_a_one_step_student_of_a_zoo_teacher(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A DistilledPolicy recipe loads its teacher from the zoo, distills it, and loads and evaluates without it."""
    import yaml

    from diffagents.agents.policies.distill import DistilledPolicy

    use_temporary_zoo(tmp_path, monkeypatch)
    data = {"dataset": "diffagents/pendulum/expert-v0", "dataset_size": 400, "env": "Pendulum-v1", "seed": 0,
            "eval_episodes": 2}
    teacher = {"algo": "DiffusionQL", "steps": 20, **data,
               "hyperparameters": {"hidden": [32, 32], "critic_hidden": [32, 32], "n_candidates": 4, "batch_size": 32}}
    student = {"algo": "DistilledPolicy", "teacher": "diffusionql-pendulum-tiny", "steps": 10, **data,
               "hyperparameters": {"n_levels": 3}}
    (tmp_path / "recipes" / "diffusionql-pendulum-tiny.yaml").write_text(yaml.safe_dump(teacher))
    (tmp_path / "recipes" / "distilledpolicy-pendulum-tiny.yaml").write_text(yaml.safe_dump(student))
    zoo.train("diffusionql-pendulum-tiny", device="cpu")
    info = zoo.train("distilledpolicy-pendulum-tiny", device="cpu")
    card = zoo.card("distilledpolicy-pendulum-tiny")
    assert card == json.loads(json.dumps(info)) and card["gradient_steps"] == 10
    assert card["teacher"] == {"id": "diffusionql-pendulum-tiny",
                               "evaluation": zoo.card("diffusionql-pendulum-tiny")["evaluation"]}
    agent = zoo.load("distilledpolicy-pendulum-tiny", device="cpu")
    assert isinstance(agent, DistilledPolicy) and agent.teacher_actor is None and agent.num_timesteps == 10
    assert zoo.evaluate("distilledpolicy-pendulum-tiny", n_episodes=2, seed=10_000) == card["evaluation"]
    # a teacher on other data, or a student recipe without a teacher, is refused by name
    (tmp_path / "recipes" / "distilledpolicy-pendulum-tiny.yaml").write_text(
        yaml.safe_dump({**student, "dataset": "diffagents/pendulum/medium-v0"}))
    with pytest.raises(ValueError, match="teacher 'diffusionql-pendulum-tiny' was trained on"):
        zoo.train("distilledpolicy-pendulum-tiny", device="cpu")
    (tmp_path / "recipes" / "distilledpolicy-pendulum-tiny.yaml").write_text(
        yaml.safe_dump({k: v for k, v in student.items() if k != "teacher"}))
    with pytest.raises(ValueError, match="field 'teacher'"):
        zoo.entries()


def test_evaluation_reads_reference_scores_from_the_card(monkeypatch: pytest.MonkeyPatch) -> None:
    """Scoring a zoo agent never regenerates its (possibly 1M-step) dataset just for the normalization scores."""

    import diffagents.data

    def no_dataset(*args: object, **kwargs: object) -> None:
        raise AssertionError("zoo evaluation must not build the dataset")

    monkeypatch.setattr(diffagents.data, "make_dataset", no_dataset)
    for zoo_id in AGENTS:
        lo, hi = zoo.card(zoo_id)["reference_scores"]
        assert zoo.registry._reference(zoo.entries()[zoo_id]) == (lo, hi)


def _tiny_diffuser_zoo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, steps: int, eval_episodes: int,
                       **hyper: Any) -> tuple[dict[str, Any], Path]:
    """A temporary zoo holding one tiny Diffuser recipe ``diffuser-tiny-umaze``: (the recipe, its YAML path)."""
    import yaml
    from diffagents.zoo import catalog

    for name in ("RECIPES", "WEIGHTS", "CARDS"):
        (tmp_path / name).mkdir()
        monkeypatch.setattr(catalog, name, tmp_path / name)
    recipe = {"algo": "Diffuser", "dataset": "diffagents/pointmaze/umaze-v0", "dataset_size": 1200,
              "env": "PointMaze_UMaze-v3", "steps": steps, "seed": 0, "eval_episodes": eval_episodes,
              "hyperparameters": {"horizon": 8, "dim": 16, "dim_mults": [1, 2], "n_diffusion_steps": 4,
                                  "batch_size": 8, **hyper,
                                  "state_dims": 4, "goal_obs_dims": [4, 6], "execution": "follow",
                                  "replan_every": None, "value_guidance": False, "n_samples": 1,
                                  "clip_denoised": True, "obs_normalization": "minmax",
                                  "termination_penalty": None}}
    path = tmp_path / "RECIPES" / "diffuser-tiny-umaze.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return recipe, path


def test_rescore_applies_acting_settings_only_and_keeps_the_weights(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import yaml
    from diffagents.zoo import catalog

    from diffagents.persistence import read_checkpoint

    recipe, path = _tiny_diffuser_zoo(tmp_path, monkeypatch, steps=2, eval_episodes=2)
    trained = zoo.train("diffuser-tiny-umaze", device="cpu")
    before = read_checkpoint(catalog.WEIGHTS / "diffuser-tiny-umaze.zip").weights

    recipe["hyperparameters"].update(follow_stall_steps=5, follow_gains=[8.0, 1.0])  # acting settings
    path.write_text(yaml.safe_dump(recipe))
    info = zoo.rescore("diffuser-tiny-umaze", device="cpu")
    assert info["rescored"]["changed"] == {"follow_stall_steps": 5, "follow_gains": [8.0, 1.0]}
    assert info["hyperparameters"] == recipe["hyperparameters"] and zoo.card("diffuser-tiny-umaze") == info
    assert {k: v for k, v in info.items() if k not in ("evaluation", "hyperparameters", "rescored",
                                                        "weights_bytes")} == \
        {k: v for k, v in trained.items() if k not in ("evaluation", "hyperparameters", "weights_bytes")}
    agent = zoo.load("diffuser-tiny-umaze", device="cpu")
    assert agent.config.follow_stall_steps == 5 and list(agent.config.follow_gains) == [8.0, 1.0]
    after = read_checkpoint(catalog.WEIGHTS / "diffuser-tiny-umaze.zip").weights
    for part, tensors in before.items():
        for name, value in tensors.items():
            assert torch.equal(value, after[part][name]), (part, name)

    again = zoo.rescore("diffuser-tiny-umaze", device="cpu")  # nothing new: re-evaluated, the record kept
    assert again["rescored"]["changed"] == info["rescored"]["changed"] and again["evaluation"] == info["evaluation"]
    del recipe["hyperparameters"]["follow_gains"]  # a setting dropped from the recipe returns to its default
    path.write_text(yaml.safe_dump(recipe))
    assert zoo.rescore("diffuser-tiny-umaze", device="cpu")["rescored"]["changed"]["follow_gains"] == [10.0, 1.0]
    assert list(zoo.load("diffuser-tiny-umaze", device="cpu").config.follow_gains) == [10.0, 1.0]

    recipe["hyperparameters"]["dim"] = 32  # changes what is learned: only training again matches the recipe
    path.write_text(yaml.safe_dump(recipe))
    with pytest.raises(ValueError, match=r"\['dim'\].*zoo train diffuser-tiny-umaze"):
        zoo.rescore("diffuser-tiny-umaze", device="cpu")
    assert main(["zoo", "rescore", "diffuser-tiny-umaze"]) == 2


def test_zoo_train_resumes_from_its_checkpoints(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A recipe trained in two pieces (``--checkpoint-dir``) ends with the weights of an uninterrupted run."""
    import yaml
    from diffagents.zoo import catalog

    from diffagents.persistence import read_checkpoint

    recipe, path = _tiny_diffuser_zoo(tmp_path, monkeypatch, steps=6, eval_episodes=1, ema_start=1, ema_every=1)
    (tmp_path / "whole").mkdir()
    whole = zoo.train("diffuser-tiny-umaze", device="cpu", out_dir=tmp_path / "whole")
    assert "resumed_from_step" not in whole

    ckpt = tmp_path / "ckpt"
    path.write_text(yaml.safe_dump({**recipe, "steps": 4}))  # a first piece stopped at step 4 ...
    first = zoo.train("diffuser-tiny-umaze", device="cpu", checkpoint_dir=ckpt)
    assert [p.name for p in sorted(ckpt.glob("step_*.zip"))] == ["step_000000004.zip"]
    path.write_text(yaml.safe_dump(recipe))  # ... is continued to the recipe's 6 steps
    assert main(["zoo", "train", "diffuser-tiny-umaze", "--device", "cpu", "--no-progress",
                 "--checkpoint-dir", str(ckpt)]) == 0
    resumed = zoo.card("diffuser-tiny-umaze")
    assert resumed["resumed_from_step"] == 4 and resumed["gradient_steps"] == 6
    assert resumed["wall_time_s"] >= first["wall_time_s"]  # both pieces
    a = read_checkpoint(tmp_path / "whole" / "diffuser-tiny-umaze.zip").weights
    b = read_checkpoint(catalog.WEIGHTS / "diffuser-tiny-umaze.zip").weights
    assert a.keys() == b.keys()
    for part, tensors in a.items():
        for name, value in tensors.items():
            assert torch.equal(value, b[part][name]), (part, name)
    assert resumed["evaluation"] == whole["evaluation"]

    assert main(["zoo", "eval", "diffuser-tiny-umaze", "--checkpoint-dir", str(ckpt)]) == 2
    # every kernel agent resumes (MADiff, SynthER: tests/test_kernel.py); a distilled student is rebuilt from its
    # zoo teacher on each call, so its recipe refuses a checkpoint folder before building anything
    student = {"algo": "DistilledPolicy", "teacher": "diffuser-tiny-umaze", "dataset": recipe["dataset"],
               "steps": 1, "seed": 0}
    (tmp_path / "RECIPES" / "student.yaml").write_text(yaml.safe_dump(student))
    with pytest.raises(ValueError, match="checkpoint_dir: DistilledPolicy entries are not resumable"):
        zoo.train("student", checkpoint_dir=ckpt)
