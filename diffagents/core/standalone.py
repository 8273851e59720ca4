"""The front-end of agents that are not SB3 algorithms: the PettingZoo multi-agent facade (MADiff) and the
generator facade (SynthER) (docs/architecture.md, "Front-ends").

:class:`StandaloneAgent` gives them what SB3's ``BaseAlgorithm`` gives the offline agents and what the one
training loop (:func:`~diffagents.core.loop.run_training`) and the one checkpoint format
(:mod:`diffagents.core.checkpoint`) read: counters, the SB3 logger (so SB3 callbacks such as
``CheckpointCallback`` work), the LR schedule, train / eval mode, ``save`` / ``load``.
"""

from __future__ import annotations

from typing import Any

import torch

from diffagents.core.checkpoint import load_agent, save_agent
from diffagents.core.contract import AgentTraits
from diffagents.core.loop import setup_learn
from diffagents.training import EMA, Updater, make_lr_schedule


class StandaloneAgent(AgentTraits):
    """Counters, logger, LR schedule and persistence for a kernel agent outside SB3 (subclass and register).

    Subclasses set ``self.config`` (an :class:`AgentConfig`) before calling ``__init__`` here, then build their
    networks (``nets``, ``ema``, ``updaters``) and fill ``normalizers``.
    """

    config: Any

    def __init__(self, *, device: torch.device | str = "auto", seed: int | None = None, verbose: int = 0,
                 tensorboard_log: str | None = None) -> None:
        from stable_baselines3.common.utils import get_device

        self.device = get_device(device)
        self.seed, self.verbose, self.tensorboard_log = seed, verbose, tensorboard_log
        self.num_timesteps = 0
        self._n_updates = 0
        self.train_wall_s = 0.0
        self.normalizers: dict[str, Any] = {}
        self.ema: EMA | None = None
        self.updaters: dict[str, Updater] = {}
        self.lr_schedule = make_lr_schedule(self.config.learning_rate, self.config.lr_schedule)
        self._current_progress_remaining = 1.0
        self._progress_origin = 0  # the step the LR schedule starts from (SynthER: the start of each fit)
        self._logger: Any = None
        self._custom_logger = False

    @property
    def nets(self) -> dict[str, torch.nn.Module]:
        """The trained networks by name (all saved)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ what the training loop reads
    @property
    def logger(self) -> Any:
        """The SB3 logger (stdout with ``verbose=1``, TensorBoard with ``tensorboard_log``)."""
        if self._logger is None:
            from stable_baselines3.common.utils import configure_logger

            self._logger = configure_logger(self.verbose, self.tensorboard_log, type(self).__name__, True)
        return self._logger

    def set_logger(self, logger: Any) -> None:
        """Use a custom SB3 logger (``stable_baselines3.common.logger.configure(folder, formats)``)."""
        self._logger = logger
        self._custom_logger = True

    def get_env(self) -> Any:
        """No SB3 VecEnv (SB3 callbacks read this)."""
        return None

    def get_vec_normalize_env(self) -> Any:
        return None

    def _setup_learn(self, total_timesteps: int, callback: Any = None, reset_num_timesteps: bool = True,
                     tb_log_name: str = "run", progress_bar: bool = False) -> tuple[int, Any]:
        return setup_learn(self, total_timesteps, callback, reset_num_timesteps, tb_log_name, progress_bar)

    def _update_current_progress_remaining(self, num_timesteps: int, total_timesteps: int) -> None:
        span = max(total_timesteps - self._progress_origin, 1)
        self._current_progress_remaining = 1.0 - float(num_timesteps - self._progress_origin) / float(span)

    def _update_learning_rate(self, optimizers: list[torch.optim.Optimizer]) -> None:
        lr = self.lr_schedule(self._current_progress_remaining) if callable(self.lr_schedule) else self.lr_schedule
        self.logger.record("train/learning_rate", lr)
        for optimizer in optimizers:
            for group in optimizer.param_groups:
                group["lr"] = lr

    def set_training_mode(self, mode: bool) -> None:
        """``train()`` / ``eval()`` on every trained network (the EMA copy stays in eval mode)."""
        for net in self.nets.values():
            net.train(mode)

    # ------------------------------------------------------------------ what the checkpoint reads
    def extra_state(self) -> dict[str, Any]:
        return {"progress_origin": self._progress_origin}

    def load_extra_state(self, extra: dict[str, Any]) -> None:
        self._progress_origin = int(extra.get("progress_origin", 0))

    def checkpoint_spaces(self) -> dict[str, Any]:
        raise NotImplementedError

    def save(self, path: Any, exclude: Any = None, *, weights_dtype: str | None = None) -> str:
        """Atomically write a pickle-free checkpoint (``.zip`` is appended when ``path`` has no suffix);
        ``exclude=["optimizers"]`` writes an inference-only file, adding ``"training_weights"`` leaves out the
        network the EMA copy averages, and ``weights_dtype="float16"`` stores a half-size one (as
        :meth:`diffagents.core.offline.OfflineAgent.save`)."""
        return str(save_agent(self, path, exclude, weights_dtype=weights_dtype))

    @classmethod
    def load(cls, path: Any, env: Any = None, device: torch.device | str = "auto", dataset: Any = None) -> Any:
        """Rebuild an agent saved by :meth:`save`; never unpickles (raises ``CheckpointError`` naming the
        problem)."""
        return load_agent(cls, path, env=env, device=device, dataset=dataset)
