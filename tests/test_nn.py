"""Contract tests for ``diffagents.nn``: every backbone and head, with small widths (fast on one CPU thread)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from torch import nn

from diffagents.nn import (
    AgentAttention,
    ConditionEncoder,
    DiT1D,
    FourierFeatures,
    InverseDynamics,
    MLPDenoiser,
    ResidualMLPDenoiser,
    SinusoidalEmbedding,
    TemporalUNet,
    TemporalValue,
    TwinQ,
    ValueMLP,
    make_activation,
    mlp,
)

X_DIM, D, H, COND = 5, 6, 8, 3


@dataclass(frozen=True)
class Case:
    """A backbone under test: ``build(cond_dim, cfg_dropout)`` and the shape of its input and output."""

    build: Callable[..., nn.Module]
    x_tail: tuple[int, ...]
    out_tail: tuple[int, ...] | None = None  # None: same as x

    def x(self, batch: int, **kw: Any) -> torch.Tensor:
        return torch.randn(batch, *self.x_tail, **kw)

    def out_shape(self, batch: int) -> tuple[int, ...]:
        return (batch, *(self.x_tail if self.out_tail is None else self.out_tail))


CASES = {
    "mlp": Case(lambda c=0, p=0.0: MLPDenoiser(X_DIM, c, hidden=(16, 16), time_dim=8, activation="mish",
                                                 cfg_dropout=p), (X_DIM,)),
    "resmlp": Case(lambda c=0, p=0.0: ResidualMLPDenoiser(X_DIM, c, width=16, n_blocks=2, time_dim=8, dropout=0.1,
                                                          cfg_dropout=p), (X_DIM,)),
    "resmlp-sin": Case(lambda c=0, p=0.0: ResidualMLPDenoiser(X_DIM, c, width=16, n_blocks=1, time_dim=8,
                                                              time_embedding="sinusoidal", layer_norm=False,
                                                              cfg_dropout=p), (X_DIM,)),
    "unet": Case(lambda c=0, p=0.0: TemporalUNet(D, dim=8, dim_mults=(1, 2), cond_dim=c, n_groups=4,
                                                 cfg_dropout=p), (H, D)),
    "unet-attn": Case(lambda c=0, p=0.0: TemporalUNet(D, dim=8, dim_mults=(1, 2, 4), cond_dim=c, n_groups=4,
                                                      kernel_size=3, cfg_dropout=p, attention=True), (H, D)),
    "dit": Case(lambda c=0, p=0.0: DiT1D(D, horizon_max=16, d_model=16, n_layers=2, n_heads=2, cond_dim=c,
                                         cfg_dropout=p, dropout=0.1), (H, D)),
    "value": Case(lambda c=0, p=0.0: TemporalValue(H, D, dim=8, dim_mults=(1, 2), cond_dim=c, n_groups=2,
                                                   cfg_dropout=p), (H, D), ()),
}
DENOISERS = [k for k, case in CASES.items() if case.out_tail is None]


def _perturb(model: nn.Module, scale: float = 0.3) -> None:
    """Move every parameter off its init (DiT's zero-initialised gates would make CFG checks vacuous)."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * scale)


def _levels(batch: int, **kw: Any) -> torch.Tensor:
    return torch.randint(0, 100, (batch,), **kw).float()


@pytest.mark.parametrize("cond_dim", [0, COND])
@pytest.mark.parametrize("name", list(CASES))
def test_output_shape(name: str, cond_dim: int) -> None:
    case = CASES[name]
    torch.manual_seed(0)
    model = case.build(cond_dim)
    for batch in (1, 4):  # batch size 1 included
        cond = torch.randn(batch, cond_dim) if cond_dim else None
        out = model(case.x(batch), _levels(batch), cond)
        assert out.shape == case.out_shape(batch)
        assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", list(CASES))
def test_continuous_sigma_and_scalar_t(name: str) -> None:
    case = CASES[name]
    model = case.build().eval()
    x = case.x(3)
    sigma = torch.tensor([0.002, 1.5, 80.0])
    assert model(x, sigma).shape == case.out_shape(3)
    same = model(x, torch.full((3,), 0.7))
    torch.testing.assert_close(model(x, torch.tensor(0.7)), same)


@pytest.mark.parametrize("name", list(CASES))
def test_determinism_under_seed(name: str) -> None:
    case = CASES[name]
    outs = []
    for _ in range(2):
        torch.manual_seed(123)
        model = case.build(COND, 0.3).train()  # training mode: CFG dropout and dropout draw random numbers
        x, cond = case.x(4), torch.randn(4, COND)
        outs.append(model(x, _levels(4), cond))
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)


@pytest.mark.parametrize("cfg", [False, True])
@pytest.mark.parametrize("name", list(CASES))
def test_gradients_reach_every_parameter(name: str, cfg: bool) -> None:
    case = CASES[name]
    torch.manual_seed(0)
    model = case.build(COND, 0.25 if cfg else 0.0).train()
    mask = torch.tensor([True, False, True, False]) if cfg else None
    out = model(case.x(4), _levels(4), torch.randn(4, COND), mask)
    out.sum().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{pname} got no gradient"
        assert torch.isfinite(p.grad).all(), pname
    assert any("null_embedding" in pname for pname, _ in model.named_parameters()) == cfg


@pytest.mark.parametrize("name", list(CASES))
def test_meta_device(name: str) -> None:
    case = CASES[name]
    with torch.device("meta"):
        model = case.build(COND, 0.2)
        x, t, cond = case.x(2), torch.zeros(2), torch.zeros(2, COND)
        mask = torch.ones(2, dtype=torch.bool)
    out = model(x, t, cond, mask)
    assert out.device.type == "meta"
    assert out.shape == case.out_shape(2)


@pytest.mark.parametrize("name", list(CASES))
def test_cfg_null_condition(name: str) -> None:
    case = CASES[name]
    torch.manual_seed(0)
    model = case.build(COND, 0.5)
    _perturb(model)
    nulls = [p for pname, p in model.named_parameters() if pname.endswith("null_embedding")]
    assert len(nulls) == 1 and isinstance(nulls[0], nn.Parameter)
    assert nulls[0].abs().sum() > 0  # learned, not a fixed zero vector
    model.eval()
    x, t = case.x(4), _levels(4)
    c1, c2 = torch.randn(4, COND), torch.randn(4, COND) * 3
    off = torch.zeros(4, dtype=torch.bool)
    torch.testing.assert_close(model(x, t, c1, off), model(x, t, c2, off))
    on = torch.ones(4, dtype=torch.bool)
    assert not torch.allclose(model(x, t, c1, on), model(x, t, c2, on), atol=1e-5)  # cond matters when kept
    torch.testing.assert_close(model(x, t, c1, on), model(x, t, c1))  # eval mode: no random dropout
    mixed = torch.tensor([True, False, True, False])
    out = model(x, t, c1, mixed)
    torch.testing.assert_close(out[mixed], model(x[mixed], t[mixed], c1[mixed]))
    torch.testing.assert_close(out[~mixed], model(x[~mixed], t[~mixed], c2[~mixed], off[:2]))
    out[~mixed].sum().backward()
    assert nulls[0].grad is not None and nulls[0].grad.abs().sum() > 0


def test_condition_encoder_dropout_rate() -> None:
    torch.manual_seed(0)
    enc = ConditionEncoder(COND, 4, dropout_prob=0.3)
    cond = torch.randn(4000, COND)
    dropped = (enc(cond) == enc.null_embedding).all(dim=1).float().mean().item()
    assert abs(dropped - 0.3) < 0.04
    enc.eval()
    assert not (enc(cond) == enc.null_embedding).all(dim=1).any()
    plain = ConditionEncoder(COND, 4)
    assert plain.null_embedding is None
    assert ConditionEncoder(COND, 4, cfg=True).null_embedding is not None
    with pytest.raises(ValueError, match="cond_mask"):
        plain(cond[:2], torch.ones(2, dtype=torch.bool))
    with pytest.raises(ValueError, match="cond_mask"):
        enc(cond[:2], torch.ones(2))  # float, not bool
    with pytest.raises(ValueError, match="dropout_prob"):
        ConditionEncoder(COND, 4, dropout_prob=1.0)


@pytest.mark.parametrize("name", list(CASES))
def test_input_errors(name: str) -> None:
    case = CASES[name]
    model = case.build(COND)
    x, t, cond = case.x(2), _levels(2), torch.randn(2, COND)
    bad_x = torch.randn(2, *case.x_tail[:-1], case.x_tail[-1] + 1)
    with pytest.raises(ValueError, match=r"x: expected shape .*got \(2, "):
        model(bad_x, t, cond)
    with pytest.raises(ValueError, match=r"x: expected shape"):
        model(x[0], t, cond)  # missing batch dimension
    with pytest.raises(ValueError, match=rf"cond: .*\(2, {COND}\).*None"):
        model(x, t)
    with pytest.raises(ValueError, match=r"cond: expected shape"):
        model(x, t, torch.randn(2, COND + 1))
    with pytest.raises(ValueError, match=r"t: expected shape \(2,\)"):
        model(x, torch.zeros(3))
    with pytest.raises(ValueError, match="cond_mask: .*cfg_dropout"):
        model(x, t, cond, torch.ones(2, dtype=torch.bool))
    with pytest.raises(ValueError, match="cond: the model was built with cond_dim=0"):
        case.build(0)(x, t, cond)
    with pytest.raises(ValueError, match="cfg_dropout"):
        case.build(0, 0.1)


@pytest.mark.parametrize("factory", [
    lambda: MLPDenoiser(X_DIM, activation="swish"),
    lambda: ResidualMLPDenoiser(X_DIM, activation="leaky"),
    lambda: TemporalUNet(D, activation="Mish!"),
    lambda: mlp(3, 2, activation="sigmoidx"),
    lambda: TwinQ(3, 2, activation="elu"),
])
def test_bad_activation_name(factory: Callable[[], nn.Module]) -> None:
    with pytest.raises(ValueError, match=r"activation: expected one of \['gelu', 'mish', 'relu', 'silu', 'tanh'\]"):
        factory()


def test_unet_horizon_divisibility_and_config_errors() -> None:
    unet = TemporalUNet(D, dim=8, dim_mults=(1, 2, 4), n_groups=4)
    assert unet.downsample_factor == 4
    with pytest.raises(ValueError, match="horizon: expected a multiple of 4.*got 6"):
        unet(torch.randn(1, 6, D), torch.zeros(1))
    assert unet(torch.randn(1, 12, D), torch.zeros(1)).shape == (1, 12, D)
    assert TemporalUNet(D, dim=8, dim_mults=(1,), n_groups=4).downsample_factor == 1
    with pytest.raises(ValueError, match="kernel_size"):
        TemporalUNet(D, kernel_size=4)
    with pytest.raises(ValueError, match="n_groups"):
        TemporalUNet(D, dim=12, n_groups=8)
    with pytest.raises(ValueError, match="dim_mults"):
        TemporalUNet(D, dim_mults=())
    with pytest.raises(ValueError, match="horizon: expected at most horizon_max=16, got 20"):
        DiT1D(D, horizon_max=16, d_model=16, n_heads=2)(torch.randn(1, 20, D), torch.zeros(1))
    with pytest.raises(ValueError, match="n_heads"):
        DiT1D(D, d_model=16, n_heads=3)


def test_unet_film_and_value_horizons() -> None:
    cond_unet = TemporalUNet(D, dim=8, dim_mults=(1, 2), cond_dim=COND, n_groups=4)
    assert all(m.film for m in cond_unet.modules() if hasattr(m, "film"))
    assert not any(getattr(m, "film", False) for m in TemporalUNet(D, dim=8, n_groups=4).modules())
    out = cond_unet(torch.randn(2, H, D), _levels(2), torch.randn(2, COND))
    out.sum().backward()
    linear = cond_unet.mid1.emb_proj[1]
    assert isinstance(linear, nn.Linear)
    proj = linear.weight.grad  # rows [:C] give the scale, [C:] the shift
    assert proj is not None and proj[:16].abs().sum() > 0 and proj[16:].abs().sum() > 0
    for horizon in (4, 12, 37, 128):  # any horizon: the head size comes from the real downsampled length
        value = TemporalValue(horizon, D, dim=8, dim_mults=(1, 2, 4), n_groups=4)
        assert value(torch.randn(2, horizon, D), torch.zeros(2)).shape == (2,)
    with pytest.raises(ValueError, match=r"x: expected shape \(B, 12, 6\)"):
        value = TemporalValue(12, D, dim=8, dim_mults=(1, 2), n_groups=2)
        value(torch.randn(2, 8, D), torch.zeros(2))
    with pytest.raises(ValueError, match="n_groups: the last block's GroupNorm"):
        TemporalValue(8, D, dim=8, dim_mults=(1, 2), n_groups=4)


def test_unet_published_parameter_count() -> None:
    unet = TemporalUNet(transition_dim=23, dim=32, dim_mults=(1, 2, 4, 8))
    n = sum(p.numel() for p in unet.parameters())
    print(f"TemporalUNet(dim=32, dim_mults=(1,2,4,8), transition_dim=23): {n} parameters")
    assert 3.7e6 < n < 4.2e6  # Diffuser's locomotion U-Net: about 3.9M
    assert unet(torch.randn(1, 32, 23), torch.zeros(1)).shape == (1, 32, 23)


def test_sinusoidal_embedding_matches_reference() -> None:
    emb = SinusoidalEmbedding(16)
    t = torch.tensor([0.0, 1.0, 2.5, 999.0])
    half = 8
    freqs = torch.exp(torch.arange(half) * -(math.log(10000) / (half - 1)))
    arg = t[:, None] * freqs[None]
    torch.testing.assert_close(emb(t), torch.cat([arg.sin(), arg.cos()], dim=-1), atol=2e-4, rtol=0)
    with pytest.raises(ValueError, match="dim"):
        SinusoidalEmbedding(7)


def test_fourier_features_fixed_buffer() -> None:
    torch.manual_seed(0)
    ff = FourierFeatures(8, scale=2.0)
    assert "freqs" in ff.state_dict() and not list(ff.parameters())
    t = torch.tensor([0.1, -0.3])
    w = ff.freqs[:4]
    ref = torch.cat([torch.cos(t[:, None] * w), torch.sin(t[:, None] * w)], dim=-1)
    torch.testing.assert_close(ff(t), ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(ff(t), ff(t))
    assert ff.freqs.std() > 1.0  # 2 pi * scale-sized frequencies


def test_make_activation_and_mlp() -> None:
    for name, cls in [("relu", nn.ReLU), ("silu", nn.SiLU), ("mish", nn.Mish), ("gelu", nn.GELU), ("tanh", nn.Tanh)]:
        assert isinstance(make_activation(name), cls)
    net = mlp(3, 2, hidden=(8, 8), activation="tanh", layer_norm=True, dropout=0.1, output_activation="tanh")
    kinds = [type(m).__name__ for m in net]
    assert kinds == ["Linear", "LayerNorm", "Tanh", "Dropout"] * 2 + ["Linear", "Tanh"]
    assert net(torch.randn(4, 3)).shape == (4, 2)
    assert [type(m).__name__ for m in mlp(3, 2, hidden=())] == ["Linear"]


def test_twin_q_and_value_heads() -> None:
    torch.manual_seed(0)
    q = TwinQ(4, 2, hidden=(16, 16), layer_norm=True)
    obs, act = torch.randn(5, 4), torch.randn(5, 2)
    q1, q2 = q(obs, act)
    assert q1.shape == q2.shape == (5,) and not torch.allclose(q1, q2)
    torch.testing.assert_close(q.q_min(obs, act), torch.minimum(q1, q2))
    q.q_min(obs, act).sum().backward()
    assert all(p.grad is not None for p in q.parameters())
    assert q(obs[:1], act[:1])[0].shape == (1,)
    with pytest.raises(ValueError, match=r"act: expected shape \(\.\.\., 2\)"):
        q(obs, torch.randn(5, 3))
    v = ValueMLP(4, hidden=(16,))
    assert v(obs).shape == (5,)
    with pytest.raises(ValueError, match=r"x: expected shape \(\.\.\., 4\)"):
        v(torch.randn(5, 3))


def test_inverse_dynamics() -> None:
    inv = InverseDynamics(4, 2, hidden=(16,))
    s, s_next = torch.randn(5, 4), torch.randn(5, 4)
    assert inv(s, s_next).shape == (5, 2)
    assert inv(torch.randn(3, 7, 4), torch.randn(3, 7, 4)).shape == (3, 7, 2)  # per step of a plan
    hist = InverseDynamics(4, 2, hidden=(16,), history=3)
    assert hist(torch.randn(5, 3, 4), s_next).shape == (5, 2)
    with pytest.raises(ValueError, match=r"s: expected shape \(5, 3, 4\)"):
        hist(s, s_next)
    with pytest.raises(ValueError, match="s_next"):
        inv(s, torch.randn(5, 3))


def test_agent_attention_equivariance() -> None:
    torch.manual_seed(0)
    attn = AgentAttention(8, n_heads=2)
    _perturb(attn)
    x = torch.randn(2, 5, 8, 6)  # (B, N, C, H)
    out = attn(x)
    assert out.shape == x.shape
    perm = torch.tensor([3, 0, 4, 2, 1])
    torch.testing.assert_close(attn(x[:, perm]), out[:, perm], atol=1e-5, rtol=1e-5)
    # independent per time step: changing step 0 leaves the other steps untouched, and agents do interact
    y = x.clone()
    y[:, 0, :, 0] += torch.randn(2, 8)  # agent 0 at step 0 (not a constant: LayerNorm removes it)
    out_y = attn(y)
    torch.testing.assert_close(out_y[..., 1:], out[..., 1:])
    assert not torch.allclose(out_y[:, 1:, :, 0], out[:, 1:, :, 0])
    out.sum().backward()
    assert all(p.grad is not None for p in attn.parameters())
    with pytest.raises(ValueError, match=r"x: expected shape \(B, N, 8, H\)"):
        attn(torch.randn(2, 5, 7, 6))
    with pytest.raises(ValueError, match="n_heads"):
        AgentAttention(8, n_heads=3)
