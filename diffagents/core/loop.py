"""The one training loop of every dataset-trained agent (docs/architecture.md, "The training loop").

``agent.learn(total_timesteps, ...)`` of offline agents, MADiff and SynthER all run :func:`run_training`: SB3
callbacks (``EvalCallback``, ``CheckpointCallback``, plain callables via ``ConvertCallback``) after every step,
the SB3 logger, a progress bar, the LR schedule, bf16 autocast, DDP (each rank draws its own minibatches; only
rank 0 logs, evaluates and checkpoints), finite-value checks at logging intervals only, periodic training
checkpoints and bitwise resume after a crash (:mod:`diffagents.core.checkpoint`).

One timestep is one gradient step. Online agents (SB3 ``OffPolicyAlgorithm``) keep SB3's collection loop.

The agent provides (the learner contract, :mod:`diffagents.core.contract`): ``sample_batch(generator)``,
``train_step(batch)``, ``set_training_mode(mode)``, ``updaters``, ``config`` (``batch_size``, ``precision``),
the counters ``num_timesteps`` / ``_n_updates`` / ``train_wall_s``, ``logger``, and SB3's
``_setup_learn`` / ``_update_current_progress_remaining`` / ``_update_learning_rate`` (inherited from
``BaseAlgorithm``, or from :class:`~diffagents.core.standalone.StandaloneAgent`).
"""

from __future__ import annotations

import os
import time
from collections import deque
from pathlib import Path
from typing import Any

import torch
from stable_baselines3.common.callbacks import (
    BaseCallback,
    CallbackList,
    ConvertCallback,
    ProgressBarCallback,
)
from stable_baselines3.common.utils import configure_logger

from diffagents.core.checkpoint import resume_from, write_training_checkpoint
from diffagents.distributed import is_main_process, rank
from diffagents.training import autocast, check_finite


class GradientStepProgressBar(ProgressBarCallback):
    """SB3's progress bar, advancing one tick per gradient step whatever the number of envs."""

    def _on_step(self) -> bool:
        self.pbar.update(1)
        return True


def setup_learn(agent: Any, total_timesteps: int, callback: Any, reset_num_timesteps: bool, tb_log_name: str,
                progress_bar: bool) -> tuple[int, BaseCallback]:
    """SB3's ``_setup_learn`` without resetting an env (dataset-trained agents never step one): counters, logger,
    callbacks (a list becomes a ``CallbackList``, a callable a ``ConvertCallback``) and the progress bar."""
    agent.start_time = time.time_ns()
    if getattr(agent, "ep_info_buffer", None) is None or reset_num_timesteps:
        window = getattr(agent, "_stats_window_size", 100)
        agent.ep_info_buffer = deque(maxlen=window)
        agent.ep_success_buffer = deque(maxlen=window)
    if reset_num_timesteps:
        agent.num_timesteps = 0
        agent._episode_num = 0
    else:
        total_timesteps += agent.num_timesteps
    agent._total_timesteps = total_timesteps
    agent._num_timesteps_at_start = agent.num_timesteps
    if not agent._custom_logger:
        agent._logger = configure_logger(agent.verbose, agent.tensorboard_log, tb_log_name, reset_num_timesteps)
    if isinstance(callback, list):
        callback = CallbackList(callback)
    if not isinstance(callback, BaseCallback):
        callback = ConvertCallback(callback)
    if progress_bar:
        callback = CallbackList([callback, GradientStepProgressBar()])
    callback.init_callback(agent)
    return total_timesteps, callback


def run_training(agent: Any, total_timesteps: int, callback: Any = None, *, log_interval: int = 1000,
                 tb_log_name: str | None = None, reset_num_timesteps: bool = True, progress_bar: bool = False,
                 checkpoint_dir: str | os.PathLike[str] | None = None, checkpoint_every: int = 1000,
                 keep_checkpoints: int = 2) -> Any:
    """Take gradient steps until ``agent.num_timesteps`` reaches the target (see the module docstring).

    Args:
        total_timesteps: gradient steps of this call (with ``reset_num_timesteps=False``, added to the counter).
        checkpoint_dir: if set, a full training checkpoint is written atomically there every ``checkpoint_every``
            steps and at the end; calling again with the same folder resumes from the newest readable one, so a
            killed run continues and ends with the weights of an uninterrupted run (CPU, same seed).
        keep_checkpoints: how many of the newest checkpoints to keep.
    """
    if total_timesteps < 0:
        raise ValueError(f"total_timesteps: expected >= 0, got {total_timesteps}")
    if checkpoint_every < 1:
        raise ValueError(f"checkpoint_every: expected >= 1, got {checkpoint_every}")
    name = tb_log_name or agent.agent_name
    ckpt_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
    if ckpt_dir is not None and resume_from(agent, ckpt_dir) is not None:
        total_timesteps, cb = agent._setup_learn(total_timesteps - agent.num_timesteps, callback, False, name,
                                                 progress_bar)
    else:
        total_timesteps, cb = agent._setup_learn(total_timesteps, callback, reset_num_timesteps, name, progress_bar)
    if not is_main_process():  # only rank 0 logs, evaluates and checkpoints
        ckpt_dir, log_interval = None, 0
        cb = ConvertCallback(None)
        cb.init_callback(agent)
    batch_gen = None
    if getattr(agent, "_distributed", False):  # each rank draws its own minibatches
        batch_gen = torch.Generator(device=agent.device).manual_seed(
            (agent.seed or 0) * 1000 + rank() + 7919 * agent.num_timesteps)
    cb.on_training_start(locals(), globals())
    agent.set_training_mode(True)
    stats: dict[str, torch.Tensor] = {}
    t0 = time.perf_counter()
    wall_before = agent.train_wall_s
    while agent.num_timesteps < total_timesteps:
        agent._update_current_progress_remaining(agent.num_timesteps, total_timesteps)
        agent._update_learning_rate([u.optimizer for u in agent.updaters.values()])
        batch = agent.sample_batch(batch_gen)
        with autocast(agent.device, agent.config.precision):
            stats = agent.train_step(batch)
        agent.num_timesteps += 1
        agent._n_updates += 1
        if log_interval and agent.num_timesteps % log_interval == 0:
            _log(agent, stats, t0)
        if ckpt_dir is not None and agent.num_timesteps % checkpoint_every == 0:
            agent.train_wall_s = wall_before + time.perf_counter() - t0
            write_training_checkpoint(agent, ckpt_dir, keep_checkpoints)
        cb.update_locals(locals())
        if not cb.on_step():
            break
        agent.set_training_mode(True)  # evaluation callbacks switch to eval mode
    if stats:  # one host sync per call: the final statistics, checked finite
        agent.last_train_stats = check_finite(stats, agent.num_timesteps)
    agent.train_wall_s = wall_before + time.perf_counter() - t0
    if ckpt_dir is not None and agent.num_timesteps % checkpoint_every:
        write_training_checkpoint(agent, ckpt_dir, keep_checkpoints)
    cb.on_training_end()
    agent.set_training_mode(False)
    return agent


def _log(agent: Any, stats: dict[str, torch.Tensor], t0: float) -> None:
    values = check_finite(stats, agent.num_timesteps)
    for key, value in values.items():
        agent.logger.record(f"train/{key}", value)
    steps = agent.num_timesteps - agent._num_timesteps_at_start
    agent.logger.record("train/n_updates", agent._n_updates)
    agent.logger.record("time/grad_steps_per_s", steps / max(time.perf_counter() - t0, 1e-9))
    agent.logger.record("time/total_timesteps", agent.num_timesteps, exclude="tensorboard")
    agent.logger.dump(step=agent.num_timesteps)
