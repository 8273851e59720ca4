"""MADiff (Zhu, Liu, Mao, Zhang, Ma, Zhang & Zhang, NeurIPS 2024): offline multi-agent RL with diffusion.

MADiff diffuses the joint observation trajectories ``(N, H, D)`` of all agents with attention between agents
(:class:`~diffagents.roles.joint_planner.JointTemporalUNet`), conditions on the team's discounted return
``y = R / returns_scale`` with classifier-free guidance (condition dropout 0.25, ``w = 1.2``; Decision Diffuser
Eq. 4) and recovers each agent's action by inverse dynamics ``a^i_t = f^i(o^i_t, o^i_{t+1})``.

* **MADiff-C** (centralised control, ``decentralized=False``): one planner sees every agent's observation
  history, inpaints all of it and every agent's action comes from the same joint plan.
* **MADiff-D** (decentralised execution, ``decentralized=True``; the paper's headline CTDE setting,
  ``agent_condition_type="single"`` in ``zbzhu99/madiff``): in training each sample inpaints the history of
  one random agent only; at act time agent ``i`` inpaints only its own history, predicts its teammates'
  trajectories, and acts from its own plan. No other agent's observation is used.

``env`` is a PettingZoo Parallel env (or a callable returning one); ``dataset`` a multi-agent Minari dataset with
``Dict({agent: Box})`` observations, ``Dict({agent: Box | Discrete})`` actions and one team reward per step (e.g.
``diffagents.data.make_dataset("diffagents/mpe-spread/expert-v0")``). MADiff is not an SB3 ``BaseAlgorithm``
(SB3 needs a Gymnasium env) but keeps its shapes: ``learn(total_timesteps)`` takes that many gradient steps,
``predict(obs_dict, state, episode_start, deterministic) -> (action_dict, state)``, and ``save``/``load`` use the
same pickle-free JSON + safetensors checkpoints (:mod:`diffagents.persistence`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, cast

import numpy as np
import torch
from gymnasium import spaces

from diffagents import __version__
from diffagents.agents.config import AgentConfig
from diffagents.agents.plan_cache import PlanCache
from diffagents.cuda_graph import maybe_graphed
from diffagents.diffusion import GaussianDiffusion, NoiseSchedule
from diffagents.guidance import ClassifierFreeGuidance
from diffagents.persistence import Checkpoint, CheckpointError, read_checkpoint, save_checkpoint
from diffagents.roles.joint_planner import AgentInverseDynamics, JointPlanner, JointTemporalUNet
from diffagents.training import EMA, Updater, autocast, check_finite
from diffagents.transfer import to_device

#: Settings that fit the CPU budget of docs/compute-budget.md Sec. 6-7 (10-20k steps in about 20-40 min for 3
#: agents at 1 thread; ~55 ms per MADiff-C decision). Measured in short development runs on mpe-spread expert
#: data (5k steps of data, T=20, DDIM 5, lr 1e-3, 10 evaluation episodes):
#: * the first U-Net level must be wider than the per-agent observation (18 on simple_spread), or the output is
#:   rank-limited: training loss after 400 steps 0.70 with dim 16, 0.43 with dim 32 and (1, 2, 4), 0.09 with
#:   dim 64 and (1, 2);
#: * with short training, x0-prediction keeps plans continuous with the inpainted observation: planned
#:   next-observation error 0.16 (x0) vs 0.37 (eps) after 800 steps; normalised score -22 / -3 / 18 after
#:   1k / 2k / 3k steps with x0, -113 after 1.5k steps with eps.
#: ``returns_scale=50`` suits team returns of about -17 (expert) to -80 (random). Use as
#: ``MADiff(env, dataset, **CPU_HYPERPARAMETERS)``.
CPU_HYPERPARAMETERS: dict[str, Any] = {
    "dim": 64, "dim_mults": (1, 2), "n_diffusion_steps": 20, "prediction_type": "x0", "sampler": "ddim",
    "sampler_steps": 10, "learning_rate": 1e-3, "inv_hidden": (256, 256), "returns_scale": 50.0, "ema_start": 1000,
}


@dataclass(kw_only=True)
class MADiffConfig(AgentConfig):
    """Hyperparameters of :class:`MADiff`; defaults follow ``zbzhu99/madiff`` ``exp_specs/mpe/spread/
    mad_mpe_spread_ctde_exp.yaml`` (paper scale: days on CPU; see :data:`CPU_HYPERPARAMETERS`).

    Args:
        horizon: planned steps from the current one (MPE: 24); the diffused window is ``history + horizon``,
            which must be divisible by ``2 ** (len(dim_mults) - 1)``.
        history: ``K`` past steps inpainted with the current one (MPE: 0; SMAC: 20).
        n_diffusion_steps / schedule: training process (200 steps, cosine = ``squaredcos_cap_v2``).
        prediction_type: ``"eps"`` (MADiff), ``"x0"`` (Diffuser's choice) or ``"v"``; with few diffusion steps and
            short training, ``"x0"`` keeps plans continuous with the inpainted history (see the benchmark).
        dim / dim_mults / n_heads / agent_embedding / attention / activation: the joint U-Net.
        cfg_dropout / guidance_weight: classifier-free guidance (0.25 / 1.2).
        returns_scale: team returns-to-go are divided by it (the paper's 700 is for OMAR's per-agent data).
        target_return: normalised return to condition on at every act step (the paper uses 0.9 on its own
            scale); ``None`` = per episode step, the ``target_quantile`` of the dataset's returns-to-go at that
            step (data-driven and valid for negative rewards; saved with the model).
        target_quantile: quantile used when ``target_return`` is None.
        discount: for returns-to-go (0.99).
        decentralized: MADiff-D (see the module docstring) instead of MADiff-C.
        shared_inv_dyn / inv_hidden / inv_batch_size: inverse dynamics (per-agent 2 x 256 on MPE).
        ema_decay / ema_start / ema_every: EMA of the planner used to act (0.995).
        replan_every: replan every k steps (1 = MADiff's per-step replanning).
        sampler / sampler_steps / clip_denoised: act-time sampler (DDPM over all levels; clip the x0 estimate to
            [-1, 1], applied only with the ``"cdf"`` or ``"minmax"`` normalizers, whose data lie in [-1, 1]).
        pad_mode / loss_on_padding: windows past the episode end repeat the final observation (``"edge"``,
            MADiff's ``use_zero_padding=False``) and are trained on (``pred_future_padding=True``).
        grad_clip: optional gradient-norm clip.
    """

    batch_size: int = 32
    learning_rate: float = 2e-4
    obs_normalization: str = "cdf"
    horizon: int = 24
    history: int = 0
    n_diffusion_steps: int = 200
    schedule: str = "cosine"
    prediction_type: str = "eps"
    dim: int = 128
    dim_mults: tuple[int, ...] = (1, 4, 8)
    n_heads: int = 4
    agent_embedding: bool = True
    attention: bool = True
    activation: str = "mish"
    cfg_dropout: float = 0.25
    guidance_weight: float = 1.2
    returns_scale: float = 700.0
    target_return: float | None = None
    target_quantile: float = 0.9
    discount: float = 0.99
    decentralized: bool = False
    shared_inv_dyn: bool = False
    inv_hidden: tuple[int, ...] = (256, 256)
    inv_batch_size: int = 256
    ema_decay: float = 0.995
    ema_start: int = 2000
    ema_every: int = 10
    replan_every: int = 1
    sampler: str = "ddpm"
    sampler_steps: int | None = None
    clip_denoised: bool = True
    pad_mode: str = "edge"
    loss_on_padding: bool = True
    grad_clip: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check(self.history >= 0, "history", ">= 0", self.history)
        self._check(self.horizon >= 2, "horizon", ">= 2", self.horizon)
        factor = 2 ** (len(self.dim_mults) - 1)
        self._check((self.history + self.horizon) % factor == 0, "horizon",
                    f"history + horizon divisible by {factor} (2 ** (len(dim_mults) - 1))", self.horizon)
        self._check(0.0 <= self.cfg_dropout < 1.0, "cfg_dropout", "in [0, 1)", self.cfg_dropout)
        self._check(self.returns_scale > 0, "returns_scale", "> 0", self.returns_scale)
        self._check(0.0 <= self.target_quantile <= 1.0, "target_quantile", "in [0, 1]", self.target_quantile)
        self._check(1 <= self.replan_every < self.horizon, "replan_every", f"in [1, horizon - 1 = {self.horizon - 1}]",
                    self.replan_every)
        self._check(self.pad_mode in ("edge", "zeros"), "pad_mode", "'edge' or 'zeros'", self.pad_mode)
        self._check(self.prediction_type in ("eps", "x0", "v"), "prediction_type", "'eps', 'x0' or 'v'",
                    self.prediction_type)
        self._check(self.inv_batch_size >= 1, "inv_batch_size", ">= 1", self.inv_batch_size)

    @property
    def window(self) -> int:
        return self.history + self.horizon


# ---------------------------------------------------------------------------------------------- agents and spaces
@dataclass
class AgentSpec:
    """The agents (in planner order) and their spaces: equally shaped Box observations, and all-Box (same
    shape, bounded) or all-Discrete (same ``n``) actions. Validation errors name the agent and the field."""

    agents: list[str]
    observation_spaces: dict[str, spaces.Box]
    action_spaces: dict[str, spaces.Space[Any]]

    def __post_init__(self) -> None:
        if not self.agents:
            raise ValueError("agents: expected at least one agent, got none")
        first = self.agents[0]
        obs0, act0 = self.observation_spaces.get(first), self.action_spaces.get(first)
        for a in self.agents:
            o, act = self.observation_spaces.get(a), self.action_spaces.get(a)
            if not isinstance(o, spaces.Box) or not isinstance(obs0, spaces.Box) or o.shape != obs0.shape:
                raise ValueError(f"observation_space[{a!r}]: expected a Box shaped like {first!r}'s {obs0}, got {o}")
            if isinstance(act, spaces.Box) and isinstance(act0, spaces.Box) and act.shape == act0.shape:
                if not (np.all(np.isfinite(act.low)) and np.all(np.isfinite(act.high))):
                    raise ValueError(f"action_space[{a!r}]: expected a bounded Box, got {act}")
            elif not (isinstance(act, spaces.Discrete) and isinstance(act0, spaces.Discrete) and act.n == act0.n):
                raise ValueError(f"action_space[{a!r}]: expected a Box or Discrete space like {first!r}'s {act0}, "
                                 f"got {act}")

    @classmethod
    def from_env(cls, env: Any) -> AgentSpec:
        agents = [str(a) for a in env.possible_agents]
        return cls(agents, {a: env.observation_space(a) for a in agents}, {a: env.action_space(a) for a in agents})

    @classmethod
    def from_dataset(cls, ds: Any) -> AgentSpec:
        obs, act = ds.observation_space, ds.action_space
        for name, space in (("observation_space", obs), ("action_space", act)):
            if not isinstance(space, spaces.Dict):
                raise ValueError(f"dataset {name}: expected a Dict keyed by agent, got {space}")
        if list(obs.spaces) != list(act.spaces):
            raise ValueError(f"dataset action_space: expected the agents {list(obs.spaces)}, got {list(act.spaces)}")
        return cls(list(obs.spaces), dict(obs.spaces), dict(act.spaces))  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, Any]:
        from diffagents.spaces import space_to_dict

        return {"agents": self.agents,
                "observation_spaces": {a: space_to_dict(self.observation_spaces[a]) for a in self.agents},
                "action_spaces": {a: space_to_dict(self.action_spaces[a]) for a in self.agents}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AgentSpec:
        from diffagents.spaces import space_from_dict

        agents = [str(a) for a in d["agents"]]
        return cls(agents, {a: space_from_dict(d["observation_spaces"][a]) for a in agents},  # type: ignore[misc]
                   {a: space_from_dict(d["action_spaces"][a]) for a in agents})

    def check_matches(self, other: AgentSpec, name: str) -> None:
        """Raise ``ValueError`` naming the agent and field where ``other`` (the ``name``) differs from ``self``."""
        from diffagents.spaces import spaces_equal

        if set(self.agents) != set(other.agents):
            raise ValueError(f"agents: the env has {sorted(self.agents)} but the {name} has {sorted(other.agents)}")
        for a in self.agents:
            for label, mine, theirs in (("observation_space", self.observation_spaces[a], other.observation_spaces[a]),
                                        ("action_space", self.action_spaces[a], other.action_spaces[a])):
                if not spaces_equal(mine, theirs):
                    raise ValueError(f"{label}[{a!r}]: the env has {mine} but the {name} has {theirs}")

    n_agents = property(lambda self: len(self.agents))
    obs_shape = property(lambda self: tuple(self.observation_spaces[self.agents[0]].shape))
    obs_dim = property(lambda self: int(np.prod(self.obs_shape)))
    discrete = property(lambda self: isinstance(self.action_spaces[self.agents[0]], spaces.Discrete))

    @property
    def act_dim(self) -> int:
        """Action size (Box) or number of actions (Discrete: the inverse dynamics outputs logits)."""
        space = self.action_spaces[self.agents[0]]
        return int(space.n) if isinstance(space, spaces.Discrete) else int(np.prod(space.shape))  # type: ignore[arg-type]

    def _bounds(self) -> tuple[np.ndarray, np.ndarray]:
        boxes = [self.action_spaces[a] for a in self.agents]
        low = np.stack([np.asarray(b.low, np.float64).reshape(-1) for b in boxes])  # type: ignore[attr-defined]
        high = np.stack([np.asarray(b.high, np.float64).reshape(-1) for b in boxes])  # type: ignore[attr-defined]
        return low, high  # (N, A) each

    def scale_action(self, actions: np.ndarray) -> np.ndarray:
        """Box actions ``(..., N, A)`` in env bounds -> ``[-1, 1]`` (clipped)."""
        low, high = self._bounds()
        return np.clip(2.0 * (actions - low) / (high - low) - 1.0, -1.0, 1.0).astype(np.float32)

    def to_env_actions(self, out: np.ndarray) -> np.ndarray:
        """Inverse-dynamics outputs ``(E, N, A)`` -> env actions ``(E, N, *shape)`` (Discrete: ``(E, N)`` ints)."""
        first = self.action_spaces[self.agents[0]]
        if isinstance(first, spaces.Discrete):
            return out.argmax(-1).astype(np.int64) + int(first.start)
        low, high = self._bounds()
        act = low + (np.clip(out, -1.0, 1.0) + 1.0) * 0.5 * (high - low)
        return act.reshape(*out.shape[:2], *first.shape).astype(first.dtype)  # type: ignore[misc]

    def joint_observation(self, observation: Any) -> tuple[np.ndarray, bool]:
        """``{agent: obs}`` -> ``((E, N, D) float32, batched)``; errors name the agent and the field."""
        if isinstance(observation, tuple) and len(observation) == 2 and isinstance(observation[1], Mapping):
            raise ValueError("observation: got an (obs, infos) tuple; pass only the obs dict from env.reset()")
        if not isinstance(observation, Mapping):
            raise TypeError(f"observation: expected a dict {{agent: obs}} over {self.agents}, got "
                            f"{type(observation).__name__}")
        missing = [a for a in self.agents if a not in observation]
        extra = [k for k in observation if k not in self.agents]
        if missing or extra:
            raise ValueError(f"observation: missing agent(s) {missing}, unknown agent(s) {extra}; expected the keys "
                             f"{self.agents}")
        shape, batch = self.obs_shape, None
        rows: list[np.ndarray] = []
        for a in self.agents:
            try:
                arr = np.asarray(observation[a], dtype=np.float32)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"observation[{a!r}]: expected a numeric array of shape {shape}, got {exc}") from None
            if arr.shape == shape:
                arr = arr[None]
                this = None
            elif arr.ndim == len(shape) + 1 and arr.shape[1:] == shape:
                this = arr.shape[0]
            else:
                raise ValueError(f"observation[{a!r}]: expected shape {shape} or (n_envs, *{shape}), got {arr.shape}")
            if rows and this != batch:
                raise ValueError(f"observation[{a!r}]: expected the same batch layout as {self.agents[0]!r} "
                                 f"({batch} envs), got shape {arr.shape}")
            batch = this
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"observation[{a!r}]: contains NaN or Inf values")
            rows.append(arr.reshape(arr.shape[0], -1))
        return np.stack(rows, axis=1), batch is not None  # (E, N, D)


class _DiscreteActions:
    """Reads ``{agent: (T,) int}`` Discrete actions as ``(T, N)`` floats for :func:`read_episodes`."""

    def __init__(self, spec: AgentSpec) -> None:
        self.agents, self.n = spec.agents, spec.act_dim

    def __call__(self, actions: Any) -> np.ndarray:
        from diffagents.data import DataError

        if not isinstance(actions, Mapping) or any(a not in actions for a in self.agents):
            raise DataError(f"actions: expected a dict with the agents {self.agents}")
        return np.stack([np.asarray(actions[a]).reshape(-1) for a in self.agents], axis=-1).astype(np.float32)

    @property
    def flat_space(self) -> spaces.Box:
        return spaces.Box(0.0, float(self.n - 1), (len(self.agents),), np.float32)

    def to_dict(self) -> dict[str, Any]:
        """JSON description (the episode cache of :func:`diffagents.data.read_episodes` keys on it)."""
        return {"discrete_actions": list(self.agents), "n": int(self.n)}


@dataclass
class JointData:
    """Training arrays of a multi-agent dataset (see :func:`read_joint_data`)."""

    windows: Any  # TrajectoryWindows over episodes padded in front with K copies of their first step
    index: np.ndarray  # (M,) windows whose current step (window index K) is a real step
    real_obs: np.ndarray  # (R, N, D) every observation, to fit the normalizer
    obs: np.ndarray  # (T, N, D) transitions for the inverse dynamics
    next_obs: np.ndarray  # (T, N, D)
    actions: np.ndarray  # (T, N, A) float Box actions or (T, N) int64 Discrete indices
    step_returns: list[np.ndarray] = field(default_factory=list)  # returns-to-go of the windows, by episode step


def _prepend_history(table: Any, k: int) -> Any:
    """Pad each episode in front with ``k`` copies of its first observation (and action, reward 0), so windows
    can start ``k`` steps before the episode as act time does (MADiff's ``use_zero_padding=False``)."""
    import dataclasses

    lengths = table.lengths
    new_len, e = lengths + k, np.arange(len(lengths))
    obs_off = np.concatenate([[0], np.cumsum(new_len + 1)[:-1]])
    ep = np.repeat(e, new_len + 1)
    p = np.arange(len(ep)) - obs_off[ep]
    obs = table.observations[table.obs_offsets[ep] + np.maximum(p - k, 0)]
    step_off = np.concatenate([[0], np.cumsum(new_len)[:-1]])
    ep = np.repeat(e, new_len)
    p = np.arange(len(ep)) - step_off[ep]
    real, src = p >= k, table.step_offsets[ep] + np.maximum(p - k, 0)
    return dataclasses.replace(
        table, observations=obs, actions=table.actions[src], rewards=np.where(real, table.rewards[src], 0.0),
        terminations=real & table.terminations[src], truncations=real & table.truncations[src],
        lengths=new_len.astype(np.int64))


def read_joint_data(dataset: Any, spec: AgentSpec, window: int, *, history: int, discount: float,
                    pad_mode: str) -> JointData:
    """Joint windows ``(M, N, W, D)`` (team returns-to-go) and inverse-dynamics transitions of ``dataset``."""
    from diffagents.data import ObsFlattener, read_episodes
    from diffagents.data.transitions import table_to_transitions
    from diffagents.data.windows import table_to_windows

    n, d = spec.n_agents, spec.obs_dim
    obs_flat = ObsFlattener.from_space(dataset.observation_space, keys=spec.agents)
    act_reader = _DiscreteActions(spec) if spec.discrete else ObsFlattener.from_space(dataset.action_space,
                                                                                       keys=spec.agents)
    table = read_episodes(dataset, flattener=obs_flat, action_flattener=act_reader)  # type: ignore[arg-type]
    table.observations = table.observations.reshape(-1, n, d)  # (sum(T+1), N*D) -> (sum(T+1), N, D)
    table.actions = table.actions.reshape(len(table.actions), n, -1)  # (sum(T), N, A); Discrete: A = 1
    tr = table_to_transitions(table)
    actions = tr.actions[..., 0].astype(np.int64) if spec.discrete else tr.actions
    padded = _prepend_history(table, history) if history else table
    windows = table_to_windows(padded, window, discount=discount, use_padding=True, pad_mode=pad_mode, joint=True,
                               agent_ids=spec.agents)
    current = windows.index + history  # row of each window's current step
    keep = windows.flat["mask"][current] > 0
    rtg, step = windows.flat["returns_to_go"][current[keep]], windows.start[keep]  # step = real episode step
    by_step = [rtg[step == s] for s in range(int(step.max()) + 1)]
    return JointData(windows=windows, index=windows.index[keep], real_obs=table.observations, obs=tr.observations,
                     next_obs=tr.next_observations, actions=actions, step_returns=by_step)


Callback = Callable[["MADiff", int, dict[str, float]], Any]


class MADiff:
    """MADiff agent for PettingZoo Parallel envs, trained offline from a multi-agent Minari dataset.

    Args:
        env: a PettingZoo Parallel env or a zero-argument callable returning one (for spaces and
            :func:`diffagents.wrappers.pettingzoo.evaluate`); may be None when ``dataset`` is given.
        dataset: a multi-agent Minari dataset, its id or local path.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        seed: seed of Python, NumPy and torch.
        verbose: 1 logs training statistics to stdout.
        tensorboard_log: TensorBoard log folder.
        **hyperparameters: fields of :class:`MADiffConfig`.
    """

    config_class: ClassVar[type[MADiffConfig]] = MADiffConfig

    def __init__(self, env: Any = None, dataset: Any = None, *, device: torch.device | str = "auto",
                 seed: int | None = None, verbose: int = 0, tensorboard_log: str | None = None,
                 _spec: AgentSpec | None = None, **hyperparameters: Any) -> None:
        import dataclasses

        from stable_baselines3.common.utils import get_device, set_random_seed

        from diffagents.data import load_dataset

        fields = {f.name for f in dataclasses.fields(self.config_class)}
        unknown = sorted(set(hyperparameters) - fields)
        if unknown:
            raise ValueError(f"MADiff: unknown hyperparameters {unknown}; expected some of {sorted(fields)}")
        self.config = self.config_class(**hyperparameters)
        self.env = None if env is None else make_parallel_env(env)
        self.dataset = load_dataset(dataset) if dataset is not None else None
        self.spec = self._resolve_spec(_spec)
        self.device = get_device(device)
        self.seed, self.verbose, self.tensorboard_log = seed, verbose, tensorboard_log
        if seed is not None:
            set_random_seed(seed)
        self.num_timesteps = 0
        self.normalizer: Any = None
        self.targets: np.ndarray | None = None  # (L,) normalised target return per episode step
        self._windows: Any = None
        self._pairs: Any = None
        self._logger: Any = None
        self._build()
        if self.dataset is not None:
            self._attach_data()

    # ------------------------------------------------------------------ spaces and data
    def _resolve_spec(self, given: AgentSpec | None) -> AgentSpec:
        env_spec = AgentSpec.from_env(self.env) if self.env is not None else None
        for name, other in (("checkpoint", given),
                            ("dataset", AgentSpec.from_dataset(self.dataset) if self.dataset is not None else None)):
            if other is not None and env_spec is not None:
                env_spec.check_matches(other, name)
        spec = env_spec or given or (AgentSpec.from_dataset(self.dataset) if self.dataset is not None else None)
        if spec is None:
            raise ValueError("env/dataset: at least one of env or dataset is needed to know the agents and spaces")
        return spec

    @property
    def agents(self) -> list[str]:
        """Agent ids in the order of the planner's agent axis."""
        return list(self.spec.agents)

    def set_dataset(self, dataset: Any) -> None:
        """Attach (or replace) the training data; the normalizer is kept if already fitted or loaded."""
        from diffagents.data import load_dataset

        ds = load_dataset(dataset)
        self.spec.check_matches(AgentSpec.from_dataset(ds), "dataset")
        self.dataset = ds
        self._attach_data()

    def _attach_data(self) -> None:
        from diffagents.data import TensorSampler, WindowSampler, make_normalizer

        c, spec = self.config, self.spec
        data = read_joint_data(self.dataset, spec, c.window, history=c.history, discount=c.discount,
                               pad_mode=c.pad_mode)
        if self.normalizer is None and c.obs_normalization != "none":
            self.normalizer = make_normalizer(c.obs_normalization).fit(data.real_obs.reshape(len(data.real_obs), -1))
        flat = dict(data.windows.flat)
        flat["observations"] = self._norm(flat["observations"])
        if c.pad_mode == "zeros":
            flat["observations"][flat["mask"] == 0] = 0.0
        self._windows = WindowSampler(flat, data.index, c.window, device=self.device, joint=True)
        act = data.actions if spec.discrete else spec.scale_action(data.actions)
        self._pairs = TensorSampler({"obs": self._norm(data.obs), "next_obs": self._norm(data.next_obs),
                                     "action": act}, device=self.device)
        if self.targets is None:
            q = [float(np.quantile(r, c.target_quantile)) if len(r) else np.nan for r in data.step_returns]
            filled = np.asarray(q, dtype=np.float64)
            for i in range(1, len(filled)):  # steps no window starts at keep the previous step's target
                filled[i] = filled[i - 1] if np.isnan(filled[i]) else filled[i]
            self.targets = (filled / c.returns_scale).astype(np.float32)

    def _norm(self, obs: Any) -> Any:
        """Normalise ``(..., N, D)`` observations (numpy or torch) with the per-agent ``(N*D)`` normalizer."""
        if self.normalizer is None:
            return obs.astype(np.float32) if isinstance(obs, np.ndarray) else obs
        flat = obs.reshape(*obs.shape[:-2], -1)
        out = self.normalizer.normalize(flat).reshape(obs.shape)
        return out.astype(np.float32) if isinstance(out, np.ndarray) else out

    # ------------------------------------------------------------------ model
    def _build(self) -> None:
        c, spec = self.config, self.spec
        n, d = spec.n_agents, spec.obs_dim
        clip = c.clip_denoised and c.obs_normalization in ("cdf", "minmax")  # only these map data to [-1, 1]
        diffusion = GaussianDiffusion(NoiseSchedule(num_train_steps=c.n_diffusion_steps, kind=c.schedule),  # type: ignore[arg-type]
                                      prediction_type=c.prediction_type)  # type: ignore[arg-type]
        unet = JointTemporalUNet(d, n, c.dim, c.dim_mults, cond_dim=1, activation=c.activation,
                                 cfg_dropout=c.cfg_dropout, cfg=True, agent_embedding=c.agent_embedding,
                                 n_heads=c.n_heads, attention=c.attention)
        self.planner = JointPlanner(unet, diffusion, c.window, n, d, history=c.history, sampler=c.sampler,
                                    num_inference_steps=c.sampler_steps,
                                    clip_sample=1.0 if clip else None).to(self.device)
        self.inv_dyn = AgentInverseDynamics(d, spec.act_dim, n, shared=c.shared_inv_dyn,
                                            hidden=c.inv_hidden).to(self.device)
        self.ema = EMA(self.planner, decay=c.ema_decay, start_step=c.ema_start, update_every=c.ema_every)
        self.ema.model.to(self.device)
        self.updaters = {name: Updater(m.parameters(), c.learning_rate, grad_clip=c.grad_clip, name=name)
                         for name, m in self.nets.items()}

    @property
    def nets(self) -> dict[str, torch.nn.Module]:
        """The trained networks by name (all saved)."""
        return {"planner": self.planner, "inv_dyn": self.inv_dyn}

    # ------------------------------------------------------------------ learn
    @property
    def logger(self) -> Any:
        """The SB3 logger (stdout with ``verbose=1``, TensorBoard with ``tensorboard_log``)."""
        if self._logger is None:
            from stable_baselines3.common.utils import configure_logger

            self._logger = configure_logger(self.verbose, self.tensorboard_log, "MADiff", True)
        return self._logger

    def set_logger(self, logger: Any) -> None:
        """Use a custom SB3 logger (``stable_baselines3.common.logger.configure(folder, formats)``)."""
        self._logger = logger

    def learn(self, total_timesteps: int, callback: Callback | None = None, log_interval: int = 1000,
              progress_bar: bool = False, reset_num_timesteps: bool = True) -> MADiff:
        """Take ``total_timesteps`` gradient steps (one planner and one inverse-dynamics update each).

        Args:
            total_timesteps: gradient steps.
            callback: optional ``callback(agent, step, stats)`` called every ``log_interval`` steps; returning
                False stops training.
            log_interval: steps between logger dumps (0 = never).
            progress_bar: show a rich/tqdm progress bar.
            reset_num_timesteps: count from 0 (False continues the step counter).
        """
        if self._windows is None:
            raise RuntimeError("MADiff.learn: no dataset attached; pass dataset= or call set_dataset() first")
        if total_timesteps < 0:
            raise ValueError(f"total_timesteps: expected >= 0, got {total_timesteps}")
        if reset_num_timesteps:
            self.num_timesteps = 0
        end = self.num_timesteps + total_timesteps
        bar = _progress_bar(total_timesteps) if progress_bar else None
        self.planner.train()
        self.inv_dyn.train()
        stats: dict[str, torch.Tensor] = {}
        t0, start = time.perf_counter(), self.num_timesteps
        try:
            while self.num_timesteps < end:
                with autocast(self.device, self.config.precision):
                    stats = self._train_step()
                self.num_timesteps += 1
                if bar is not None:
                    bar.update(1)
                if log_interval and self.num_timesteps % log_interval == 0:
                    values = self._log(stats, (self.num_timesteps - start) / max(time.perf_counter() - t0, 1e-9))
                    if callback is not None and callback(self, self.num_timesteps, values) is False:
                        break
        finally:
            if bar is not None:
                bar.close()
            self.planner.eval()
            self.inv_dyn.eval()
        if stats:
            check_finite(cast(dict[str, Any], stats), self.num_timesteps)
        return self

    def _train_step(self) -> dict[str, torch.Tensor]:
        c, n = self.config, self.spec.n_agents
        batch = self._windows.sample(c.batch_size)
        x0 = batch["observations"]  # (B, N, W, D)
        returns = batch["returns_to_go"][:, c.history : c.history + 1] / c.returns_scale  # (B, 1)
        agent_mask = None
        if c.decentralized:  # MADiff-D: each sample conditions on one random agent's own history
            pick = torch.randint(0, n, (x0.shape[0],), device=x0.device)
            agent_mask = torch.nn.functional.one_hot(pick, n).bool()  # (B, N)
        inpaint = self.planner.condition(x0[:, :, : c.history + 1], agent_mask)
        valid = torch.ones_like(batch["mask"]) if c.loss_on_padding else batch["mask"]
        loss, stats = self.planner.loss(x0, inpaint=inpaint, cond=returns, valid=valid)
        self.updaters["planner"].step(loss)
        self.ema.update(self.planner, self.num_timesteps)
        pairs = self._pairs.sample(c.inv_batch_size)  # (B', N, D) observation pairs, (B', N[, A]) actions
        inv_loss, inv_stats = self.inv_dyn.loss(pairs["obs"], pairs["next_obs"], pairs["action"], self.spec.discrete)
        self.updaters["inv_dyn"].step(inv_loss)
        return stats | inv_stats

    def _log(self, stats: dict[str, torch.Tensor], steps_per_s: float) -> dict[str, float]:
        values = check_finite(cast(dict[str, Any], stats), self.num_timesteps)
        for key, value in values.items():
            self.logger.record(f"train/{key}", value)
        self.logger.record("time/grad_steps_per_s", steps_per_s)
        self.logger.record("time/total_timesteps", self.num_timesteps, exclude="tensorboard")
        self.logger.dump(step=self.num_timesteps)
        return values

    # ------------------------------------------------------------------ predict
    def predict(self, observation: Mapping[str, Any], state: Any = None, episode_start: Any = None,
                deterministic: bool = False) -> tuple[dict[str, Any], Any]:
        """Joint step: ``{agent: obs}`` -> ``({agent: action}, state)``.

        Each observation is the agent's Box observation, or ``(n_envs, ...)`` for a batch of envs; actions come
        back with the same leading shape (Box actions in env bounds, Discrete actions as integers). ``state``
        carries the plan cache and observation history; pass ``episode_start=True`` (or one flag per env) at
        the first step of an episode. ``deterministic=True`` samples from a fixed-seed noise
        (``config.eval_seed``), so the same observations and state give the same actions.
        """
        obs, batched = self.spec.joint_observation(observation)  # (E, N, D)
        if self.normalizer is None and self.config.obs_normalization != "none":
            raise RuntimeError("MADiff.predict: the observation normalizer is not fitted; train or load first")
        x = to_device(self._norm(obs), self.device)  # pinned, non-blocking on CUDA
        with torch.no_grad(), autocast(self.device, self.config.precision):
            scaled, state = self._act(x, state, episode_start, deterministic)
        actions = self.spec.to_env_actions(scaled.float().cpu().numpy())  # (E, N, ...) env actions
        return {a: (actions[:, i] if batched else actions[0, i]) for i, a in enumerate(self.agents)}, state

    def _act(self, obs: torch.Tensor, state: Any, episode_start: Any, deterministic: bool
             ) -> tuple[torch.Tensor, PlanCache]:
        """``obs``: ``(E, N, D)`` normalised -> inverse-dynamics outputs ``(E, N, A)`` and the cache."""
        c = self.config
        k, e = c.history, obs.shape[0]
        cache = state if isinstance(state, PlanCache) else PlanCache()
        starts = np.zeros(e, dtype=bool) if episode_start is None else np.asarray(episode_start, bool).reshape(-1)
        if len(starts) != e:
            raise ValueError(f"episode_start: expected {e} flags (one per env), got {len(starts)}")
        idx = cache.due(e, starts, c.replan_every)
        hist = cache.extra.get("history")  # (E, K+1, N, D)
        if hist is None or hist.shape[0] != e:
            hist = obs[:, None].repeat(1, k + 1, 1, 1)
        else:
            hist = torch.cat([hist[:, 1:], obs[:, None]], dim=1)
            fresh = torch.as_tensor(starts, device=obs.device)
            hist[fresh] = obs[fresh, None].expand(-1, k + 1, -1, -1)
        step = cache.extra.get("step")  # (E,) episode step of each env
        if step is None or step.shape[0] != e:
            step = torch.zeros(e, dtype=torch.long, device=obs.device)
        else:
            step = torch.where(torch.as_tensor(starts, device=obs.device), 0, step + 1)
        cache.extra["history"], cache.extra["step"] = hist, step
        if len(idx):
            sub = torch.as_tensor(idx, device=obs.device)
            cache.store(idx, self._plan(hist[sub].transpose(1, 2), self._target(step[sub]), deterministic))
        plans, age = cache.current()  # (E, W, R, N, D)
        rows = torch.arange(e, device=obs.device)
        nxt = plans[rows, torch.as_tensor(np.minimum(age + k + 1, c.window - 1), device=obs.device)]  # (E, R, N, D)
        if c.decentralized:
            ids = torch.arange(self.spec.n_agents, device=obs.device)
            nxt = nxt[:, ids, ids]  # agent i reads its own plan's next observation
        else:
            nxt = nxt[:, 0]
        cache.advance()
        return self.inv_dyn(obs, nxt), cache

    def _target(self, step: torch.Tensor) -> torch.Tensor:
        """Normalised target return ``(M,)`` for envs at episode steps ``step``."""
        if self.config.target_return is not None:
            return torch.full(step.shape, self.config.target_return, device=step.device)
        if self.targets is None:
            raise RuntimeError("MADiff: no target returns; train on a dataset, load a trained model, or set "
                               "target_return")
        table = torch.as_tensor(self.targets, device=step.device)
        return table[step.clamp(max=len(table) - 1)]

    def _plan(self, known: torch.Tensor, target: torch.Tensor, deterministic: bool) -> torch.Tensor:
        """Plans for known histories ``(M, N, K+1, D)`` and targets ``(M,)`` -> ``(M, W, R, N, D)`` (R = N
        plans under MADiff-D, one per agent); a CUDA graph with ``cuda_graph=True``."""
        gen = torch.Generator(device=self.device).manual_seed(self.config.eval_seed) if deterministic else None
        return maybe_graphed(self, self.config.cuda_graph, "plan", self._sample_plans, known, target, generator=gen,
                             key=(self.ema.model.sampler,))

    def _sample_plans(self, known: torch.Tensor, target: torch.Tensor, *,
                      generator: torch.Generator | None = None) -> torch.Tensor:
        """:meth:`_plan` as a pure tensor function of the known histories and targets."""
        c, n = self.config, self.spec.n_agents
        m = known.shape[0]
        agent_mask = None
        if c.decentralized:  # row (j, i): agent i's own history only; the others' values are zeroed
            eye = torch.eye(n, dtype=torch.bool, device=known.device)
            agent_mask = eye.repeat(m, 1)  # (M*N, N)
            known = known.repeat_interleave(n, dim=0) * agent_mask[:, :, None, None]  # (M*N, N, K+1, D)
            target = target.repeat_interleave(n)
        planner: JointPlanner = self.ema.model  # type: ignore[assignment]
        cond = target[:, None].to(known.dtype)  # (rows, 1)
        guided = ClassifierFreeGuidance(planner.denoiser, c.guidance_weight)  # type: ignore[arg-type]
        plans = planner.plan(planner.condition(known, agent_mask), cond=cond, denoiser=guided, generator=generator)
        return plans.view(m, -1, n, c.window, self.spec.obs_dim).permute(0, 3, 1, 2, 4)  # (M, W, R, N, D)

    # ------------------------------------------------------------------ persistence
    def save(self, path: Any) -> None:
        """Atomically write a pickle-free checkpoint (``.zip`` is appended when ``path`` has no suffix)."""
        arrays: dict[str, np.ndarray] = {}
        norm_meta = None
        if self.normalizer is not None:
            scalars = {}
            for key, value in self.normalizer.state_dict().items():
                if isinstance(value, np.ndarray):
                    arrays[f"normalizer/{key}"] = value
                else:
                    scalars[key] = value
            norm_meta = scalars
        weights = {name: m.state_dict() for name, m in self.nets.items()} | {"ema": self.ema.model.state_dict()}
        meta = {
            "algo": "MADiff", "diffagents_version": __version__, "config": self.config.to_dict(),
            "agents": self.spec.to_dict(), "normalizer": norm_meta, "num_timesteps": int(self.num_timesteps),
            "ema_num_updates": self.ema.num_updates,
        }
        if self.targets is not None:
            arrays["targets"] = self.targets
        optim = {name: u.state_dict() for name, u in self.updaters.items()}
        save_checkpoint(path, Checkpoint(meta=meta, weights=weights, arrays=arrays, optimizers=optim))

    @classmethod
    def load(cls, path: Any, env: Any = None, device: torch.device | str = "auto", dataset: Any = None) -> MADiff:
        """Rebuild an agent saved by :meth:`save`; never unpickles.

        Raises:
            CheckpointError: corrupt file, another algorithm, or agents / spaces that differ from ``env``'s
                (the message names the agent and the field).
        """
        from diffagents.data import normalizer_from_state_dict

        ckpt = read_checkpoint(path)
        where = str(path)
        if ckpt.meta.get("algo") != "MADiff":
            raise CheckpointError(f"checkpoint {where!r} holds a {ckpt.meta.get('algo')} agent, not a MADiff")
        try:
            spec = AgentSpec.from_dict(ckpt.meta["agents"])
            config = cls.config_class.from_dict(ckpt.meta["config"])
        except (KeyError, ValueError, TypeError) as exc:
            raise CheckpointError(f"checkpoint {where!r}: invalid metadata: {exc}") from exc
        try:
            agent = cls(env=env, device=device, _spec=spec, **vars(config))
        except ValueError as exc:
            raise CheckpointError(f"checkpoint {where!r} does not match the env: {exc}") from exc
        try:
            for name, module in agent.nets.items():
                module.load_state_dict(ckpt.weights[name])
            agent.ema.model.load_state_dict(ckpt.weights["ema"])
            for name, upd in agent.updaters.items():
                if name in ckpt.optimizers:
                    upd.load_state_dict(ckpt.optimizers[name])
            if ckpt.meta.get("normalizer") is not None:
                state = dict(ckpt.meta["normalizer"])
                state |= {k.split("/", 1)[1]: v for k, v in ckpt.arrays.items() if k.startswith("normalizer/")}
                agent.normalizer = normalizer_from_state_dict(state)
        except (KeyError, RuntimeError, ValueError) as exc:
            raise CheckpointError(f"checkpoint {where!r} does not match this MADiff configuration: "
                                  f"{type(exc).__name__}: {exc}") from exc
        agent.ema.num_updates = int(ckpt.meta.get("ema_num_updates", 0))
        agent.num_timesteps = int(ckpt.meta.get("num_timesteps", 0))
        if "targets" in ckpt.arrays:
            agent.targets = np.asarray(ckpt.arrays["targets"], dtype=np.float32)
        if dataset is not None:
            agent.set_dataset(dataset)
        return agent


def make_parallel_env(env: Any) -> Any:
    """A Parallel env from an instance or a zero-argument factory (``functools.partial(parallel_env, ...)``)."""
    if hasattr(env, "possible_agents"):
        return env
    if callable(env):
        made = env()
        if hasattr(made, "possible_agents"):
            return made
        raise TypeError(f"env: the factory returned {type(made).__name__}, expected a PettingZoo Parallel env")
    raise TypeError(f"env: expected a PettingZoo Parallel env or a callable returning one, got {type(env).__name__}")


def _progress_bar(total: int) -> Any:
    import warnings

    try:
        from tqdm import TqdmExperimentalWarning
        from tqdm.rich import tqdm

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", TqdmExperimentalWarning)
            return tqdm(total=total, desc="MADiff")
    except ImportError:  # pragma: no cover - rich missing
        from tqdm.auto import tqdm as plain

        return plain(total=total, desc="MADiff")
