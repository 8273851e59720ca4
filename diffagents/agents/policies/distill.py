"""Consistency distillation of a trained diffusion actor into a one-step actor (Song et al. 2023, Alg. 2).

``distill(agent, steps=...)`` takes a trained :class:`~diffagents.agents.policies.diffusion_ql.DiffusionQL`,
:class:`~diffagents.agents.policies.idql.IDQL` or :class:`~diffagents.agents.policies.diffusion_policy.DiffusionPolicy` and returns
a :class:`DistilledPolicy`, an agent with the same API (``predict``/``save``/``load``, the teacher's observation
flattener and normalizers, the same action scaling) whose actor needs one network evaluation per action (or per
chunk).

The teacher is the agent's EMA actor, a VP diffusion over [-1, 1] actions with discrete levels. The ODE solver is
the teacher's own probability-flow ODE: one deterministic DDIM step (eta = 0, with the teacher's x0 clipping)
between adjacent levels of ``n_levels`` DDIM timesteps ``t_0 = T-1 > ... > t_{n-1} = 0``, then to clean data.
The student ``f(x, t_j) = c_skip(j) x + c_out(j) F(x, t_j, s)`` with ``c_skip = 1 / sqrt(ab_j)`` and
``c_out = -sqrt((1 - ab_j) / ab_j)`` (an x0-estimate from an eps-network ``F``) has ``c_skip = 1, c_out = 0`` at
the clean end (the boundary condition), is initialised from the teacher's network (``init_from_teacher``, so it
starts as the teacher's one-step estimate) and is trained with the squared-L2 consistency-distillation loss
against an EMA target network (``ema_decay``, Song et al.'s ``mu``); see
:class:`~diffagents.roles.consistency_policy.DistilledConsistencyPolicy`. After distillation ``f(z, t_0)``
replaces the whole teacher chain. For Q-based teachers (Diffusion-QL, IDQL) a frozen copy of the teacher's target
critic selects among ``n_candidates`` one-step samples (argmax when deterministic, softmax(Q) otherwise; IDQL's
expectile re-weighting is replaced by softmax(Q)). A Diffusion Policy student keeps the chunk execution
(observation history, ``Ta`` actions per chunk) and :meth:`DistilledPolicy.predict_chunk`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import torch
from torch import nn

from diffagents.core.config import AgentConfig
from diffagents.core.contract import CHUNKS
from diffagents.core.offline import OfflineAgent
from diffagents.core.registry import register_agent
from diffagents.diffusion import DDIMSampler
from diffagents.roles import scored_candidates, select_candidates
from diffagents.roles.consistency_policy import DistilledConsistencyPolicy
from diffagents.training import EMA, Updater


def teachers() -> list[str]:
    """Registered agents that can be distilled (``distillable``)."""
    from diffagents.core.registry import agent_infos

    return [i.name for i in agent_infos(lambda i: bool(getattr(i.cls, "distillable", False)))]


@dataclass(kw_only=True)
class DistillConfig(AgentConfig):
    """Hyperparameters of :class:`DistilledPolicy`.

    Args:
        teacher: the teacher's registry name (any ``distillable`` agent, see :func:`teachers`).
        teacher_config: the teacher's config (``agent.config.to_dict()``), used to rebuild the architecture.
        n_levels: teacher levels the student is defined on (DDIM timesteps; None: all training levels, at most 20).
        ema_decay: decay ``mu`` of the target network.
        n_candidates: candidates ranked by the critic for Q-based teachers (None: the teacher's value).
        init_from_teacher: start ``F`` from the teacher's weights.
    """

    teacher: str = "DiffusionQL"
    teacher_config: dict[str, Any] = field(default_factory=dict)
    n_levels: int | None = None
    ema_decay: float = 0.95
    n_candidates: int | None = None
    init_from_teacher: bool = True
    grad_clip: float | None = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check(self.teacher in teachers(), "teacher", f"one of {teachers()}", self.teacher)
        self._check(self.n_levels is None or self.n_levels >= 1, "n_levels", ">= 1 or None", self.n_levels)
        self._check(0.0 <= self.ema_decay < 1.0, "ema_decay", "in [0, 1)", self.ema_decay)
        self._check(self.n_candidates is None or self.n_candidates >= 1, "n_candidates", ">= 1 or None",
                    self.n_candidates)


@register_agent(kind="distilled")
class DistilledPolicy(OfflineAgent):
    """A one-step consistency actor distilled from a diffusion agent (build it with :func:`distill`).

    ``learn`` continues the distillation and needs the teacher (:meth:`set_teacher`) and data (``set_dataset``).
    """

    config_class = DistillConfig

    @classmethod
    def tiny_config(cls) -> dict[str, Any]:
        """Keyword arguments of :func:`distill` for a seconds-long check (the teacher uses its own tiny config)."""
        return dict(n_levels=4, batch_size=16)
    ema_acts = False  # the EMA is the consistency target; the trained actor acts
    config: DistillConfig

    def build(self, obs_dim: int, act_dim: int) -> dict[str, nn.Module]:
        from diffagents.core.registry import get_agent_class

        c = self.config
        # a throwaway teacher of the same architecture: the single source of the network layout
        template = get_agent_class(c.teacher)(env=None, dataset=None, device="cpu",
                                              _spaces=(self.observation_space, self.action_space),
                                              **c.teacher_config)
        self.teacher_config = template.config
        actor = template.ema.model
        self.chunked = template.batch_spec == CHUNKS
        schedule = actor.diffusion.schedule
        self.prediction_type = actor.diffusion.prediction_type
        n = c.n_levels or min(schedule.num_train_steps, 20)
        self.solver_levels = DDIMSampler(schedule, n).timesteps
        event = tuple(actor.event_shape) if self.chunked else (act_dim,)
        net = copy.deepcopy(actor.denoiser).requires_grad_(True).train()  # the template is a frozen EMA copy
        student = DistilledConsistencyPolicy(net, schedule, self.solver_levels, event, clip_sample=actor.clip_sample)
        self.ema = EMA(student, decay=c.ema_decay)
        modules: dict[str, nn.Module] = {"student": student}
        if "critic_target" in template.nets:
            modules["critic"] = copy.deepcopy(template.nets["critic_target"]).requires_grad_(False)
        self.teacher_actor: nn.Module | None = None
        self.chunks_sampled = 0
        return modules

    def _make_updaters(self) -> dict[str, Updater]:
        return {"student": Updater(self.nets["student"].parameters(), self.config.learning_rate,
                                   grad_clip=self.config.grad_clip, name="student")}

    @property
    def student(self) -> DistilledConsistencyPolicy:
        return self.nets["student"]  # type: ignore[return-value]

    def _attach_data(self) -> None:
        if self.chunked:
            from diffagents.data.batches import attach_chunk_windows

            tc = self.teacher_config
            attach_chunk_windows(self, tc.obs_horizon, tc.pred_horizon)
        else:
            super()._attach_data()

    def set_teacher(self, agent: OfflineAgent, init_student: bool = False) -> None:
        """Attach the teacher (its EMA actor) for :meth:`learn`; ``init_student`` copies its weights into the
        student (and its target critic into the selection critic)."""
        if agent.agent_name != self.config.teacher:
            raise ValueError(f"teacher: this student was built for a {self.config.teacher}, got "
                             f"{agent.agent_name}")
        if agent.config.to_dict() != self.teacher_config.to_dict():
            raise ValueError("teacher: the agent's config differs from the one this student was built for")
        assert agent.ema is not None
        self.teacher_actor = agent.ema.model.to(self.device)
        if init_student:
            with torch.no_grad():
                self.student.denoiser.load_state_dict(agent.ema.model.denoiser.state_dict())  # type: ignore[union-attr,arg-type]
                if "critic" in self.nets:
                    self.nets["critic"].load_state_dict(agent.nets["critic_target"].state_dict())
                assert self.ema is not None
                self.ema.model.load_state_dict(self.student.state_dict())

    def _batch_x0_cond(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        if self.chunked:
            return batch["actions"], batch["obs"][:, : self.teacher_config.obs_horizon].flatten(1)
        return batch["action"], batch["obs"]

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if self.teacher_actor is None:
            raise RuntimeError("DistilledPolicy.learn: no teacher attached; call set_teacher(agent) first")
        assert self.ema is not None
        x0, cond = self._batch_x0_cond(batch)
        loss, stats = self.student.distillation_loss(self.ema.model, self.teacher_actor.denoiser,  # type: ignore[arg-type]
                                                     self.prediction_type, x0, cond)
        self.updaters["student"].step(loss)
        self.ema.update(self.student, self.num_timesteps)
        return stats

    def _sample(self, cond: torch.Tensor, deterministic: bool) -> torch.Tensor:
        self.chunks_sampled += cond.shape[0]
        return self._graphed("sample", self.student.sample, cond,
                             generator=self.eval_generator() if deterministic else None)

    def act(self, obs: torch.Tensor, state: Any, episode_start: np.ndarray | None, deterministic: bool
             ) -> tuple[torch.Tensor, Any]:
        if self.chunked:
            from diffagents.execution.chunks import act_with_chunks

            tc = self.teacher_config
            return act_with_chunks(obs, state, episode_start, obs_horizon=tc.obs_horizon,
                                   action_horizon=tc.action_horizon, sample=lambda c: self._sample(c, deterministic))
        n = self.config.n_candidates
        if n is None:
            n = int(getattr(self.teacher_config, "n_candidates", 1))
        if "critic" not in self.nets or n == 1:
            return self._sample(obs, deterministic), state
        self.chunks_sampled += obs.shape[0] * n
        scored = self._graphed("act", partial(scored_candidates, self.student.sample, self.nets["critic"], n=n), obs,
                               generator=self.eval_generator() if deterministic else None)
        return select_candidates(scored[0], scored[1], n, deterministic=deterministic), state

    def predict_chunk(self, obs_history: Any, deterministic: bool = True) -> np.ndarray:
        """As :meth:`DiffusionPolicy.predict_chunk` (Diffusion Policy students only)."""
        if not self.chunked:
            raise TypeError("predict_chunk: only a student of a DiffusionPolicy predicts action chunks")
        from diffagents.execution.chunks import predict_chunk_with

        tc = self.teacher_config
        return predict_chunk_with(self, obs_history, tc.obs_horizon, tc.action_horizon,
                                  lambda c: self._sample(c, deterministic))


def distill(agent: OfflineAgent, steps: int = 10_000, batch_size: int | None = None, *, dataset: Any = None,
            n_levels: int | None = None, learning_rate: float = 3e-4, ema_decay: float = 0.95,
            n_candidates: int | None = None, init_from_teacher: bool = True, seed: int | None = None,
            callback: Any = None, progress_bar: bool = False, verbose: int = 0, **hyperparameters: Any
            ) -> DistilledPolicy:
    """Distill ``agent``'s diffusion actor into a one-step :class:`DistilledPolicy` (see the module docstring).

    Args:
        agent: a trained DiffusionQL, IDQL or DiffusionPolicy.
        steps: distillation gradient steps (``learn`` timesteps).
        batch_size: minibatch size (default: the teacher's).
        dataset: data to distill on (default: the teacher's dataset).
        n_levels / learning_rate / ema_decay / n_candidates / init_from_teacher: :class:`DistillConfig` fields.
        seed / callback / progress_bar / verbose: as for any agent's ``learn``.
        **hyperparameters: other :class:`DistillConfig` fields (e.g. ``grad_clip``, ``lr_schedule``).

    Returns:
        The trained student, sharing the teacher's spaces, flattener and normalizers.
    """
    name = getattr(agent, "agent_name", type(agent).__name__)
    if not getattr(agent, "distillable", False):
        raise TypeError(f"agent: distill supports {teachers()}, got {name}")
    data = dataset if dataset is not None else agent.dataset
    if data is None:
        raise ValueError("dataset: the teacher has no dataset attached; pass dataset=")
    tc = agent.config
    student = DistilledPolicy(
        env=agent.get_env(), dataset=None, device=agent.device, seed=seed, verbose=verbose,
        _spaces=(agent.observation_space, agent.action_space), teacher=name, teacher_config=tc.to_dict(),
        n_levels=n_levels, learning_rate=learning_rate, ema_decay=ema_decay, n_candidates=n_candidates,
        init_from_teacher=init_from_teacher, batch_size=batch_size or tc.batch_size,
        obs_normalization=tc.obs_normalization, eval_seed=tc.eval_seed, precision=tc.precision,
        **hyperparameters)
    student.flattener = agent.flattener
    student.normalizers = dict(agent.normalizers)
    student.set_teacher(agent, init_student=init_from_teacher)
    student.set_dataset(data)
    if steps > 0:
        student.learn(steps, callback=callback, progress_bar=progress_bar)
    return student
