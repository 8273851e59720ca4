"""RL heads: twin Q critics, state-value network and inverse dynamics.

* :class:`TwinQ`: clipped double Q-learning critics (Fujimoto et al. 2018, TD3 Sec. 4.1), as in Diffusion-QL
  (Wang et al. 2023, Sec. 4: 3 x 256 Mish) and IDQL / IQL (Kostrikov et al. 2022).
* :class:`ValueMLP`: ``V(s)`` for IQL-style expectile regression (IDQL, Hansen-Estruch et al. 2023, Eq. 3).
* :class:`InverseDynamics`: Decision Diffuser's ``a_t = f(s_t, s_{t+1})`` (Ajay et al. 2023, Sec. 3.1, Eq. 4).

All heads accept any leading batch dimensions (``(B, ...)`` or ``(B, H, ...)``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from diffagents.nn._checks import check_positive
from diffagents.nn.mlp import mlp


def _check_last(x: torch.Tensor, dim: int, name: str) -> None:
    if x.ndim < 1 or x.shape[-1] != dim:
        raise ValueError(f"{name}: expected shape (..., {dim}), got {tuple(x.shape)}")


class TwinQ(nn.Module):
    """Two independent Q networks ``Q_i(s, a) = MLP_i([s, a])``.

    Args:
        obs_dim: observation size.
        act_dim: action size.
        hidden: hidden widths (Diffusion-QL: three layers of 256 with Mish).
        activation: activation name.
        layer_norm: LayerNorm after each hidden linear layer.
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int] = (256, 256, 256),
                 activation: str = "relu", layer_norm: bool = False) -> None:
        super().__init__()
        check_positive("obs_dim", obs_dim)
        check_positive("act_dim", act_dim)
        self.obs_dim = obs_dim
        self.act_dim = act_dim
        self.q1 = mlp(obs_dim + act_dim, 1, hidden, activation, layer_norm)
        self.q2 = mlp(obs_dim + act_dim, 1, hidden, activation, layer_norm)

    def forward(self, obs: torch.Tensor, act: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``obs``: ``(B, obs_dim)``, ``act``: ``(B, act_dim)`` -> ``(q1, q2)``, each ``(B,)``."""
        _check_last(obs, self.obs_dim, "obs")
        _check_last(act, self.act_dim, "act")
        if obs.shape[:-1] != act.shape[:-1]:
            raise ValueError(f"act: expected batch dimensions {tuple(obs.shape[:-1])} like obs, "
                             f"got {tuple(act.shape[:-1])}")
        sa = torch.cat([obs, act], dim=-1)  # (B, obs_dim + act_dim)
        return self.q1(sa).squeeze(-1), self.q2(sa).squeeze(-1)

    def q_min(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """``min(Q_1, Q_2)``, shape ``(B,)`` (the clipped double-Q target)."""
        q1, q2 = self(obs, act)
        return torch.minimum(q1, q2)


class ValueMLP(nn.Module):
    """A scalar network ``V(x) = MLP(x)`` returning ``(B,)``.

    Args:
        in_dim: input size (the observation for ``V(s)``).
        hidden: hidden widths.
        activation: activation name.
    """

    def __init__(self, in_dim: int, hidden: Sequence[int] = (256, 256), activation: str = "relu") -> None:
        super().__init__()
        check_positive("in_dim", in_dim)
        self.in_dim = in_dim
        self.net = mlp(in_dim, 1, hidden, activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``(B, in_dim)`` -> ``(B,)``."""
        _check_last(x, self.in_dim, "x")
        return self.net(x).squeeze(-1)


class InverseDynamics(nn.Module):
    """Decision Diffuser's inverse dynamics ``a_t = f(s_{t-k+1..t}, s_{t+1})`` (official code: 2 x 256 ReLU).

    Args:
        obs_dim: observation size.
        act_dim: action size.
        hidden: hidden widths.
        activation: activation name.
        history: number ``k`` of past states (including ``s_t``) fed with ``s_{t+1}``; with ``k > 1``, ``s``
            has shape ``(B, k, obs_dim)`` (oldest first).
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int] = (256, 256), activation: str = "relu",
                 history: int = 1) -> None:
        super().__init__()
        check_positive("obs_dim", obs_dim)
        check_positive("act_dim", act_dim)
        check_positive("history", history)
        self.obs_dim = obs_dim
        self.act_dim = act_dim
        self.history = history
        self.net = mlp((history + 1) * obs_dim, act_dim, hidden, activation)

    def forward(self, s: torch.Tensor, s_next: torch.Tensor) -> torch.Tensor:
        """``s``: ``(B, obs_dim)`` (or ``(B, history, obs_dim)``), ``s_next``: ``(B, obs_dim)`` -> ``(B, act_dim)``."""
        _check_last(s_next, self.obs_dim, "s_next")
        lead = s_next.shape[:-1]
        if self.history == 1:
            expected = (*lead, self.obs_dim)
        else:
            expected = (*lead, self.history, self.obs_dim)
        if s.shape != expected:
            raise ValueError(f"s: expected shape {expected} (history={self.history}), got {tuple(s.shape)}")
        if self.history > 1:
            s = s.flatten(-2)  # (..., history * obs_dim)
        return self.net(torch.cat([s, s_next], dim=-1))  # (..., act_dim)


class AgentInverseDynamics(nn.Module):
    """Inverse dynamics ``a^i_t = f^i(o^i_t, o^i_{t+1})`` for every agent (MADiff: one MLP per agent on MPE,
    one shared MLP on SMAC). Agent ``i``'s output depends on agent ``i``'s observations only.

    Args:
        obs_dim: per-agent observation size.
        out_dim: action size (Box) or number of actions (Discrete: the outputs are logits).
        n_agents: number of agents.
        shared: one MLP for all agents instead of one per agent.
        hidden: hidden widths (MADiff: 2 x 256 ReLU).
        activation: activation name.
    """

    def __init__(self, obs_dim: int, out_dim: int, n_agents: int, *, shared: bool = False,
                 hidden: Sequence[int] = (256, 256), activation: str = "relu") -> None:
        super().__init__()
        for name, value in (("obs_dim", obs_dim), ("out_dim", out_dim), ("n_agents", n_agents)):
            check_positive(name, value)
        self.obs_dim, self.out_dim, self.n_agents, self.shared = obs_dim, out_dim, n_agents, shared
        self.nets = nn.ModuleList(mlp(2 * obs_dim, out_dim, hidden, activation)
                                  for _ in range(1 if shared else n_agents))

    def forward(self, s: torch.Tensor, s_next: torch.Tensor) -> torch.Tensor:
        """``s``, ``s_next``: ``(..., N, obs_dim)`` -> ``(..., N, out_dim)``."""
        want = (self.n_agents, self.obs_dim)
        if s.shape[-2:] != want or s_next.shape != s.shape:
            raise ValueError(f"s / s_next: expected equal shapes (..., {want[0]}, {want[1]}), got "
                             f"{tuple(s.shape)} and {tuple(s_next.shape)}")
        pair = torch.cat([s, s_next], dim=-1)  # (..., N, 2 D)
        if self.shared:
            return self.nets[0](pair)
        return torch.stack([net(pair[..., i, :]) for i, net in enumerate(self.nets)], dim=-2)

    def loss(self, s: torch.Tensor, s_next: torch.Tensor, actions: torch.Tensor, discrete: bool
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """MSE on scaled Box actions ``(..., N, A)`` or cross-entropy on Discrete indices ``(..., N)``."""
        pred = self(s, s_next)
        if discrete:
            logits = pred.reshape(-1, self.out_dim)
            target = actions.reshape(-1).long()
            loss = F.cross_entropy(logits, target)
            acc = (logits.argmax(-1) == target).float().mean()
            return loss, {"inv_dyn_loss": loss.detach(), "inv_dyn_acc": acc.detach()}
        loss = F.mse_loss(pred, actions)
        return loss, {"inv_dyn_loss": loss.detach()}
