"""CUDA-graph capture of act-time sampling, with an eager fallback.

A diffusion agent's decision is tens of small kernels per denoising step; at batch 1 the GPU mostly waits for
Python to launch them. :class:`GraphedCall` records a pure tensor function once per input signature in a
``torch.cuda.CUDAGraph`` and then replays it with one launch, following the PyTorch "CUDA Graphs" recipe
(static input buffers, warm-up on a side stream, capture, copy-in / ``replay()`` / copy-out).

What a graphed function may do: tensor operations on its inputs, on module weights and on cached tensors.
What it must not do: host synchronisation (``.item()``, ``float(tensor)``, ``.cpu()``, NumPy, ``nonzero`` and
boolean-mask indexing, ``torch.multinomial``), data-dependent Python control flow (a branch on a tensor value
is frozen at capture), creating CUDA tensors from host data, or any effect other than its return value. Python
state read at capture (the sampler, its number of steps, ``n_candidates``) is frozen too: pass what may change
as ``key`` (e.g. the sampler object, so that ``set_sampler`` gives a fresh graph). Weights updated in place
(optimiser steps, EMA, ``load_state_dict``) are seen by later replays.

Fallbacks (eager execution of the same function): inputs not on CUDA; a call made while another capture is in
progress; a new signature once ``max_graphs`` signatures are graphed (fixed batch sizes are graphed, changing
shapes run eagerly); a signature whose capture raised (warned once with the reason, then eager for good); a
``torch.Generator`` when this PyTorch cannot register generators with graphs.

Random numbers: without a generator the default CUDA generator is used, which graphs support natively (each
replay draws fresh noise). With a generator (the fixed-seed noise of ``deterministic=True``), each graph owns
a private generator registered with ``CUDAGraph.register_generator_state``; before a replay it takes the
caller's generator state, afterwards the caller's generator is advanced as an eager call would advance it, so
a graphed call and an eager call from the same generator state draw the same noise.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Hashable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch

Out = TypeVar("Out", torch.Tensor, tuple[torch.Tensor, ...])
Signature = tuple[Hashable, ...]

_KEEP_ALIVE: list[list[Any]] = []  # one list per graph being warmed up or captured (innermost last)


def keep_alive(obj: Any) -> None:
    """Tie ``obj`` to the lifetime of the graph being warmed up or captured, if any (else a no-op).

    A graph reads tensors it did not allocate (weights, cached level tensors) at fixed addresses; a cache that
    may drop entries calls this so that a dropped entry's memory is not reused while a graph still reads it.
    """
    if _KEEP_ALIVE:
        _KEEP_ALIVE[-1].append(obj)


@dataclass
class _Graph:
    """One captured signature: the graph, its static input and output buffers, its private generator."""

    graph: Any
    inputs: tuple[torch.Tensor, ...]
    outputs: tuple[torch.Tensor, ...]
    single: bool
    generator: torch.Generator | None
    refs: list[Any] = field(default_factory=list)


class GraphedCall:
    """Run ``fn(*inputs, generator=...)`` through a CUDA graph per input signature (see the module docstring).

    Args:
        name: label used in warnings.
        max_graphs: signatures (shapes, dtypes, device, generator or not, autocast, ``key``) graphed at most;
            further signatures run eagerly.
        warmup_iters: eager iterations on a side stream before capture (the PyTorch recipe uses 3).

    Example:
        >>> call = GraphedCall("act")
        >>> actions = call(policy.sample, obs, generator=gen, key=(policy.sampler,))
    """

    def __init__(self, name: str = "fn", *, max_graphs: int = 4, warmup_iters: int = 3) -> None:
        if max_graphs < 0 or warmup_iters < 1:
            raise ValueError(f"max_graphs >= 0 and warmup_iters >= 1 expected, got {max_graphs}, {warmup_iters}")
        self.name, self.max_graphs, self.warmup_iters = name, max_graphs, warmup_iters
        self.graphs: dict[Signature, _Graph] = {}
        self.failed: dict[Signature, str] = {}
        self.counts = {"captures": 0, "replays": 0, "eager": 0}
        self._warned: set[str] = set()

    def __call__(self, fn: Callable[..., Out], *inputs: torch.Tensor, generator: torch.Generator | None = None,
                 key: Hashable = ()) -> Out:
        """``fn(*inputs, generator=generator)``, replayed from a graph when possible.

        Returns:
            What ``fn`` returns (a tensor or a tuple of tensors), as fresh tensors (clones of the static outputs).
        """
        with torch.no_grad():
            reason = self._eager_reason(inputs, generator)
            if reason is not None:
                return self._eager(fn, inputs, generator, reason)
            sig = _signature(inputs, generator, key)
            entry = self.graphs.get(sig)
            if entry is None:
                if sig in self.failed:
                    return self._eager(fn, inputs, generator, None)
                if len(self.graphs) >= self.max_graphs:
                    return self._eager(fn, inputs, generator, f"max_graphs={self.max_graphs} input signatures "
                                                              "are graphed; new shapes run eagerly")
                try:
                    entry = self._capture(fn, inputs, generator)
                except Exception as exc:  # noqa: BLE001 - any capture error means "run this signature eagerly"
                    self.failed[sig] = f"{type(exc).__name__}: {exc}"
                    return self._eager(fn, inputs, generator, f"capture failed for input shapes "
                                                              f"{[tuple(x.shape) for x in inputs]} "
                                                              f"({self.failed[sig]}); running eagerly")
                self.graphs[sig] = entry
            return self._replay(entry, inputs, generator)  # type: ignore[return-value]

    def reset(self) -> None:
        """Drop every captured graph (and the record of failed captures)."""
        self.graphs.clear()
        self.failed.clear()

    # ------------------------------------------------------------------ internals
    def _eager_reason(self, inputs: Sequence[torch.Tensor], generator: torch.Generator | None) -> str | None:
        """Why this call cannot be graphed (``""`` for silent cases), or None."""
        if not inputs or not all(isinstance(x, torch.Tensor) and x.is_cuda for x in inputs):
            return ""
        if len({x.device for x in inputs}) > 1:
            return "inputs on several devices; running eagerly"
        if torch.cuda.is_current_stream_capturing():
            return ""  # inside someone else's capture: run eagerly so the ops land in that graph
        if generator is not None and not hasattr(torch.cuda.CUDAGraph, "register_generator_state"):
            return "this PyTorch cannot register a torch.Generator with a graph; calls with a generator run eagerly"
        if generator is not None and generator.device.type != "cuda":
            return "the generator is not a CUDA generator; running eagerly"
        return None

    def _eager(self, fn: Callable[..., Out], inputs: Sequence[torch.Tensor], generator: torch.Generator | None,
               reason: str | None) -> Out:
        if reason and reason not in self._warned:
            self._warned.add(reason)
            warnings.warn(f"{self.name}: {reason}", RuntimeWarning, stacklevel=3)
        self.counts["eager"] += 1
        return fn(*inputs, generator=generator)

    def _capture(self, fn: Callable[..., Any], inputs: Sequence[torch.Tensor],
                 generator: torch.Generator | None) -> _Graph:
        device = inputs[0].device
        with torch.inference_mode(False):  # static buffers are written in place on every call
            static = tuple(x.clone() for x in inputs)
        gen = torch.Generator(device=device) if generator is not None else None
        refs: list[Any] = []
        _KEEP_ALIVE.append(refs)
        try:
            with torch.cuda.device(device), _autocast_without_cache(device):
                side = torch.cuda.Stream(device)
                side.wait_stream(torch.cuda.current_stream(device))
                with torch.cuda.stream(side):
                    for _ in range(self.warmup_iters):
                        fn(*static, generator=gen)
                torch.cuda.current_stream(device).wait_stream(side)
                graph = torch.cuda.CUDAGraph()
                if gen is not None:
                    graph.register_generator_state(gen)
                with torch.cuda.graph(graph):
                    out = fn(*static, generator=gen)
        finally:
            _KEEP_ALIVE.pop()
        single = isinstance(out, torch.Tensor)
        outputs = (out,) if single else tuple(out)
        if not all(isinstance(o, torch.Tensor) for o in outputs):
            raise TypeError(f"expected fn to return a tensor or a tuple of tensors, got {type(out).__name__}")
        self.counts["captures"] += 1
        return _Graph(graph, static, outputs, single, gen, refs)

    def _replay(self, entry: _Graph, inputs: Sequence[torch.Tensor], generator: torch.Generator | None
                ) -> torch.Tensor | tuple[torch.Tensor, ...]:
        for dst, src in zip(entry.inputs, inputs):
            dst.copy_(src)
        if entry.generator is not None and generator is not None:
            entry.generator.set_state(generator.get_state())
        entry.graph.replay()
        if entry.generator is not None and generator is not None:
            generator.set_state(entry.generator.get_state())  # advance the caller's generator as eager would
        self.counts["replays"] += 1
        outs = tuple(o.clone() for o in entry.outputs)
        return outs[0] if entry.single else outs


def _signature(inputs: Sequence[torch.Tensor], generator: torch.Generator | None, key: Hashable) -> Signature:
    device = inputs[0].device
    shapes = tuple((tuple(x.shape), x.dtype, x.device) for x in inputs)
    return shapes, generator is not None, _autocast_state(device), key


def _autocast_state(device: torch.device) -> tuple[bool, torch.dtype | None]:
    try:
        enabled = torch.is_autocast_enabled(device.type)
        dtype = torch.get_autocast_dtype(device.type) if enabled else None
    except (TypeError, AttributeError):  # torch < 2.4: CUDA-only functions
        enabled = torch.is_autocast_enabled()
        dtype = torch.get_autocast_gpu_dtype() if enabled else None
    return enabled, dtype


def _autocast_without_cache(device: torch.device) -> Any:
    """The current autocast setting with its weight-cast cache off (a graph must not read cached casts)."""
    enabled, dtype = _autocast_state(device)
    if not enabled:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype, cache_enabled=False)


def maybe_graphed(owner: Any, enabled: bool, name: str, fn: Callable[..., Out], *inputs: torch.Tensor,
                  generator: torch.Generator | None = None, key: Hashable = ()) -> Out:
    """``fn(*inputs, generator=generator)``: eager unless ``enabled`` and the inputs are on CUDA, then through
    ``owner``'s :class:`GraphedCall` named ``name`` (created on first use, kept on ``owner``).

    Every agent's act-time sampling goes through this one helper (``OfflineAgent._graphed`` for SB3 agents).
    """
    if not (enabled and inputs and inputs[0].is_cuda):
        return fn(*inputs, generator=generator)
    calls: dict[str, GraphedCall] = owner.__dict__.setdefault("_graphed_calls", {})
    call = calls.get(name)
    if call is None:
        call = calls[name] = GraphedCall(f"{type(owner).__name__}.{name}")
    return call(fn, *inputs, generator=generator, key=key)
