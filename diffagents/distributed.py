"""Data-parallel training with ``torch.distributed`` (DDP semantics), switched on by ``WORLD_SIZE > 1``.

Launch any training with ``torchrun --nproc-per-node N -m diffagents train ALGO ...`` (or a script calling
``agent.learn``). Each rank samples its own minibatches (a rank-specific generator, so ``batch_size`` is per rank),
gradients are averaged across ranks with one flattened all-reduce per optimizer step (what
``DistributedDataParallel`` does, without wrapping modules whose call pattern is not a single ``forward``), and
parameters are broadcast from rank 0 at start, so every rank holds identical weights after every step. Only rank 0
logs, runs callbacks and writes checkpoints. The backend is NCCL on CUDA and Gloo on CPU.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import torch
import torch.distributed as dist
from torch import nn


def env_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    return rank() == 0


def maybe_init(device: torch.device) -> bool:
    """Initialise the default process group from torchrun's environment when ``WORLD_SIZE > 1``."""
    if env_world_size() <= 1 or not dist.is_available():
        return False
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
    return True


def local_device(requested: str | torch.device) -> str | torch.device:
    """Map ``"auto"``/``"cuda"`` to this rank's GPU (``cuda:LOCAL_RANK``) under torchrun."""
    if env_world_size() > 1 and torch.cuda.is_available() and str(requested) in ("auto", "cuda"):
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return f"cuda:{local}"
    return requested


@torch.no_grad()
def broadcast_modules(modules: Iterable[nn.Module], src: int = 0) -> None:
    """Copy parameters and buffers of rank ``src`` to every rank."""
    if not is_distributed():
        return
    for module in modules:
        for tensor in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(tensor.data, src)


def average_gradients(params: list[nn.Parameter]) -> None:
    """All-reduce (mean) the gradients of ``params`` with one flattened collective."""
    if not is_distributed():
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[offset:offset + n].view_as(g))
        offset += n
