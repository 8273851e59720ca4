"""Behaviour policies stored as safetensors weights + a JSON description (no unpickling).

A trained SB3 SAC actor is saved as its deterministic part (``latent_pi`` MLP + ``mu`` head) and rebuilt here
as :class:`MLPActor`: ``a = low + (tanh(mu(x)) + 1) / 2 * (high - low)`` (SB3's squashed-Gaussian mean).
Files live in :func:`weights_dirs`: ``$DIFFAGENTS_BEHAVIOUR_DIR`` (default ``~/.cache/diffagents/behaviour``)
first, then the package's ``recipes/weights`` folder (the committed Pendulum policies).

Retrain with ``python -m diffagents.data.recipes.train_behaviour ENV`` (see that module).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from diffagents.data.errors import DataError

PACKAGE_WEIGHTS = Path(__file__).resolve().parent / "weights"


def user_weights_dir() -> Path:
    """``$DIFFAGENTS_BEHAVIOUR_DIR`` or ``~/.cache/diffagents/behaviour``."""
    return Path(os.environ.get("DIFFAGENTS_BEHAVIOUR_DIR", Path.home() / ".cache" / "diffagents" / "behaviour"))


def weights_dirs() -> list[Path]:
    """Search order for behaviour files."""
    return [user_weights_dir(), PACKAGE_WEIGHTS]


def find_file(name: str) -> Path | None:
    """First existing ``name`` in :func:`weights_dirs`, or ``None``."""
    for d in weights_dirs():
        if (d / name).is_file():
            return d / name
    return None


class MLPActor(nn.Module):
    """Deterministic SAC actor: ReLU MLP -> ``mu`` -> tanh -> action bounds.

    Args:
        obs_dim: Observation size.
        act_dim: Action size.
        hidden: Hidden layer widths.
        low: Action lower bounds.
        high: Action upper bounds.
    """

    low: torch.Tensor
    high: torch.Tensor

    def __init__(self, obs_dim: int, act_dim: int, hidden: list[int], low: np.ndarray, high: np.ndarray) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        last = obs_dim
        for width in hidden:
            layers += [nn.Linear(last, width), nn.ReLU()]
            last = width
        self.latent_pi = nn.Sequential(*layers)
        self.mu = nn.Linear(last, act_dim)
        self.register_buffer("low", torch.as_tensor(low, dtype=torch.float32))
        self.register_buffer("high", torch.as_tensor(high, dtype=torch.float32))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        squashed = torch.tanh(self.mu(self.latent_pi(obs)))  # (B, A) in [-1, 1]
        return self.low + (squashed + 1.0) * 0.5 * (self.high - self.low)

    def scaled(self, obs: torch.Tensor) -> torch.Tensor:
        """Action in ``[-1, 1]`` (before mapping to the bounds)."""
        return torch.tanh(self.mu(self.latent_pi(obs)))

    @torch.no_grad()
    def act(self, obs: np.ndarray) -> np.ndarray:
        """Numpy in, numpy out; works for one observation or a batch."""
        x = torch.as_tensor(np.asarray(obs, dtype=np.float32))
        return self(x).numpy()


def save_actor(sb3_actor: Any, path: Path, info: dict[str, Any]) -> None:
    """Save an SB3 SAC actor's deterministic part as ``path`` (.safetensors) + ``path.with_suffix('.json')``.

    Args:
        sb3_actor: ``model.actor`` of an SB3 ``SAC``.
        path: Target ``.safetensors`` file.
        info: Extra JSON-able description (training steps, returns, command).
    """
    state = {k: v.detach().cpu().float().contiguous() for k, v in sb3_actor.state_dict().items()
             if k.startswith(("latent_pi.", "mu."))}
    hidden = [int(v.shape[0]) for k, v in state.items() if k.startswith("latent_pi.") and k.endswith(".weight")]
    space = sb3_actor.action_space
    arch = {"obs_dim": int(state["latent_pi.0.weight"].shape[1]) if hidden else int(state["mu.weight"].shape[1]),
            "act_dim": int(state["mu.weight"].shape[0]), "hidden": hidden,
            "low": np.asarray(space.low, dtype=float).tolist(), "high": np.asarray(space.high, dtype=float).tolist()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file(state, str(tmp))
    os.replace(tmp, path)
    os.chmod(path, 0o644)
    with open(path.with_suffix(".json"), "w") as f:
        json.dump({"architecture": arch, **info}, f, indent=1)


def load_actor(name: str) -> tuple[MLPActor, dict[str, Any]]:
    """Load ``name`` (``<name>.safetensors`` + ``<name>.json``) from :func:`weights_dirs`.

    Raises:
        DataError: If the files are missing or do not match the architecture.
    """
    path = find_file(f"{name}.safetensors")
    if path is None:
        raise DataError(
            f"behaviour policy {name!r}: expected {name}.safetensors in {[str(d) for d in weights_dirs()]}, "
            f"got nothing; train it with `python -m diffagents.data.recipes.train_behaviour {name.split('_')[0]}`"
        )
    with open(path.with_suffix(".json")) as f:
        info = json.load(f)
    arch = info["architecture"]
    actor = MLPActor(arch["obs_dim"], arch["act_dim"], arch["hidden"], np.asarray(arch["low"]), np.asarray(arch["high"]))
    state = load_file(str(path))
    missing, unexpected = actor.load_state_dict(state, strict=False)
    missing = [k for k in missing if k not in ("low", "high")]
    if missing or unexpected:
        raise DataError(f"behaviour policy {name!r} weights: expected keys {missing}, got extra {unexpected}")
    actor.eval()
    return actor, info


def expand_replay(data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Restore ``next_observations`` of a compact replay file (written by ``train_behaviour``); full files pass."""
    if "next_observations" in data:
        return data
    obs = data["observations"]
    n = len(obs)
    ends = np.flatnonzero(data["terminations"] | data["truncations"] | (np.arange(n) == n - 1))
    nxt = np.empty_like(obs)
    nxt[:-1] = obs[1:]
    nxt[ends] = data["final_next_observations"]
    out = {k: v for k, v in data.items() if k != "final_next_observations"}
    out["next_observations"] = nxt
    return out
