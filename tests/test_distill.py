"""Consistency distillation: the teacher's DDIM steps, the student's boundary condition, the student's one-step
actions approaching the teacher's deterministic ODE outputs, and API parity (predict / save / load)."""

from __future__ import annotations

import copy
import io
import zipfile
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from agent_fixtures import make_pendulum_dataset

from diffagents.agents.policies.diffusion_policy import DiffusionPolicy
from diffagents.agents.policies.diffusion_ql import DiffusionQL
from diffagents.agents.policies.distill import DistilledPolicy, distill
from diffagents.agents.policies.idql import IDQL
from diffagents.diffusion import DDIMSampler, NoiseSchedule, sample_loop
from diffagents.nn import MLPDenoiser
from diffagents.persistence import CheckpointError
from diffagents.roles.consistency_policy import DistilledConsistencyPolicy


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return make_pendulum_dataset(tmp_path_factory.mktemp("minari"), dataset_id="test/pendulum/distill-v0",
                                 episodes=4)


@pytest.fixture(scope="module")
def teacher(dataset: Any) -> IDQL:
    torch.manual_seed(0)
    agent = IDQL(env=gym.make("Pendulum-v1"), dataset=dataset, seed=0, actor_width=32, actor_blocks=1,
                 actor_dropout=0.0, critic_hidden=(16, 16), batch_size=64, n_candidates=4, learning_rate=1e-3,
                 ema_decay=0.99)
    agent.learn(300)
    return agent


def _ode_error(agent: Any, student: DistilledPolicy, obs: torch.Tensor, cond: torch.Tensor | None = None) -> float:
    """MSE between the student's one-step output and the teacher's deterministic DDIM chain from the same noise."""
    actor = agent.ema.model
    cond = obs if cond is None else cond
    z = torch.randn((cond.shape[0], *student.student.event_shape), generator=torch.Generator().manual_seed(123))
    ddim = DDIMSampler(actor.diffusion.schedule, student.student.n_levels, clip_sample=1.0)
    with torch.no_grad():
        ref = sample_loop(actor.denoiser, ddim, z.shape, cond=cond, x_init=z)
        out = student.student.sample(cond, noise=z)
    return float(((ref - out) ** 2).mean())


def test_ddim_steps_match_the_sampler_and_boundary_is_exact() -> None:
    torch.manual_seed(0)
    schedule = NoiseSchedule(num_train_steps=5, kind="vp")
    teacher = MLPDenoiser(1, 3, hidden=(16,))
    ddim = DDIMSampler(schedule, 5, clip_sample=1.0)
    student = DistilledConsistencyPolicy(copy.deepcopy(teacher), schedule, ddim.timesteps, (1,))
    obs, z = torch.randn(16, 3), torch.randn(16, 1)
    with torch.no_grad():
        ref = sample_loop(teacher, ddim, z.shape, cond=obs, x_init=z)
        x = z
        for level in range(5):
            x = student.ddim_step(teacher, "eps", x, torch.full((16,), level), obs)
        torch.testing.assert_close(x, ref)
        big = torch.randn(16, 1) * 5
        assert torch.equal(student(big, torch.full((16,), 5), obs), big)  # f(x, clean) = x
        # initialised from the teacher, f(x, t_j) is the teacher's one-step x0 estimate
        j = torch.full((16,), 2)
        t = torch.full((16,), float(ddim.timesteps[2]))
        sqrt_ab, sqrt_1mab = student.sqrt_ab[2], student.sqrt_1mab[2]
        torch.testing.assert_close(student(z, j, obs), (z - sqrt_1mab * teacher(z, t, obs)) / sqrt_ab)


@pytest.mark.parametrize("init_from_teacher", [False, True])
def test_student_approaches_teacher_ode(teacher: IDQL, init_from_teacher: bool) -> None:
    obs = teacher._sampler.tensors["obs"][:256]
    untrained = distill(teacher, steps=0, init_from_teacher=init_from_teacher, seed=0)
    before = _ode_error(teacher, untrained, obs)
    student = distill(teacher, steps=300, batch_size=64, init_from_teacher=init_from_teacher, seed=0)
    after = _ode_error(teacher, student, obs)
    assert after < before * (0.25 if not init_from_teacher else 0.5), (before, after)


def test_api_parity_predict_save_load(teacher: IDQL, dataset: Any, tmp_path: Path) -> None:
    student = distill(teacher, steps=5, batch_size=16, seed=0)
    assert isinstance(student, DistilledPolicy)
    assert student.normalizers["obs"] is teacher.normalizers["obs"] and student.config.n_candidates is None
    obs = np.random.default_rng(1).normal(size=(5, 3)).astype(np.float32)
    act, _ = student.predict(obs[0])
    assert act.shape == (1,) and student.action_space.contains(act)
    before, _ = student.predict(obs, deterministic=True)
    np.testing.assert_array_equal(before, student.predict(obs, deterministic=True)[0])
    # deterministic selection = argmax of the copied critic over the one-step candidates
    t_obs, _ = student.prepare_obs(obs)
    with torch.no_grad():
        rep = t_obs.repeat_interleave(4, 0)  # (20, 3), the teacher's n_candidates = 4
        cand = student.student.sample(rep, generator=student.eval_generator()).view(5, 4, 1)
        critic: Any = student.nets["critic"]
        best = critic.q_min(rep, cand.view(20, 1)).view(5, 4).argmax(1)
    np.testing.assert_allclose(before, student.unscale_action(cand[torch.arange(5), best].numpy()), atol=1e-6)
    student.save(tmp_path / "s")
    loaded: Any = DistilledPolicy.load(tmp_path / "s.zip", env=gym.make("Pendulum-v1"))
    np.testing.assert_array_equal(before, loaded.predict(obs, deterministic=True)[0])
    with pytest.raises(RuntimeError, match="teacher"):
        loaded.set_dataset(dataset)
        loaded.learn(1, reset_num_timesteps=False)
    loaded.set_teacher(teacher)
    loaded.learn(2, reset_num_timesteps=False)
    assert loaded.num_timesteps == 7
    with pytest.raises(CheckpointError, match="observation_space"):
        DistilledPolicy.load(tmp_path / "s.zip", env=gym.make("MountainCarContinuous-v0"))
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self) -> Any:
            return (Path.touch, (marker,))

    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(tmp_path / "s.zip") as src, zipfile.ZipFile(evil, "w") as dst:
        for item in src.namelist():
            payload = src.read(item)
            if item == "optimizers.pt":
                buf = io.BytesIO()
                torch.save({"x": Payload()}, buf)
                payload = buf.getvalue()
            dst.writestr(item, payload)
    with pytest.raises(CheckpointError):
        DistilledPolicy.load(evil)
    assert not marker.exists()


def test_diffusion_ql_teacher_and_errors(dataset: Any) -> None:
    dql = DiffusionQL(env=gym.make("Pendulum-v1"), dataset=dataset, seed=0, hidden=(16, 16), critic_hidden=(16, 16),
                      batch_size=16, n_candidates=3, ema_start=1).learn(2)
    student = distill(dql, steps=2, n_candidates=2)
    assert student.student.n_levels == 5 and student.predict(np.zeros((2, 3), np.float32))[0].shape == (2, 1)
    with pytest.raises(ValueError, match="teacher"):
        student.set_teacher(IDQL(env=gym.make("Pendulum-v1"), dataset=dataset))
    with pytest.raises(TypeError, match="distill supports"):
        distill(student, steps=1)


def test_diffusion_policy_teacher_keeps_chunk_execution(dataset: Any) -> None:
    dp = DiffusionPolicy(env=gym.make("Pendulum-v1"), dataset=dataset, seed=0, obs_horizon=2, pred_horizon=8,
                         action_horizon=4, dim=8, dim_mults=(1, 2), n_diffusion_steps=10, batch_size=16,
                         lr_warmup_steps=0, learning_rate=1e-3).learn(10)
    batch = dp._sampler.sample(64, generator=torch.Generator().manual_seed(0))
    cond = batch["obs"][:, :2].flatten(1)
    untrained = distill(dp, steps=0, init_from_teacher=False, seed=0)
    student = distill(dp, steps=100, init_from_teacher=False, seed=0, batch_size=16, learning_rate=1e-3)
    assert student.student.event_shape == (8, 1) and student.student.n_levels == 10
    assert _ode_error(dp, student, cond, cond) < 0.75 * _ode_error(dp, untrained, cond, cond)
    obs = np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32)
    state, n0 = None, student.chunks_sampled
    for t in range(6):
        _, state = student.predict(obs[t], state=state, episode_start=np.array([t == 0]))
    assert student.chunks_sampled - n0 == 2  # Ta = 4 actions per one-step chunk
    assert student.predict_chunk(obs[:2]).shape == (4, 1)
