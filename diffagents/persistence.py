"""Safe, atomic checkpoints: a zip of JSON + safetensors that loading never unpickles.

Layout of ``agent.zip``::

    diffagents.json        format marker, algorithm name, config, spaces, observation flattening, counters
    weights.safetensors    every module's state dict, keys prefixed with the module name ("actor.net.0.weight")
    arrays.safetensors     normalizer statistics and other plain arrays
    optimizers.pt          optimizer states, read back with ``torch.load(weights_only=True)`` (no code execution)

``save_checkpoint`` writes to a temporary file in the target folder and renames it over the target, so a crash
never leaves a half-written checkpoint. ``read_checkpoint`` validates everything before returning and raises
:class:`CheckpointError` naming the problem.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

FORMAT = "diffagents-checkpoint"
FORMAT_VERSION = 1
_MEMBERS = ("diffagents.json", "weights.safetensors", "arrays.safetensors", "optimizers.pt")


class CheckpointError(ValueError):
    """A checkpoint file is missing, corrupt, of another format, or does not match the agent / env."""


@dataclass
class Checkpoint:
    """The decoded contents of a checkpoint."""

    meta: dict[str, Any]
    weights: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    optimizers: dict[str, Any] = field(default_factory=dict)


def normalize_path(path: str | os.PathLike[str] | io.BufferedIOBase) -> Path:
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"path: expected a str or os.PathLike, got {type(path).__name__}")
    p = Path(path)
    return p if p.suffix else p.with_suffix(".zip")


WEIGHTS_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def storage_dtype(name: str | None) -> torch.dtype | None:
    """The storage dtype named ``name`` (None: keep every tensor's own dtype).

    Raises:
        ValueError: ``name`` is not one of :data:`WEIGHTS_DTYPES`.
    """
    if name is None:
        return None
    if name not in WEIGHTS_DTYPES:
        raise ValueError(f"weights_dtype: expected None or one of {sorted(WEIGHTS_DTYPES)}, got {name!r}")
    return WEIGHTS_DTYPES[name]


def _flatten(weights: dict[str, dict[str, torch.Tensor]], dtype: torch.dtype | None = None
             ) -> dict[str, torch.Tensor]:
    flat: dict[str, torch.Tensor] = {}
    for name, sd in weights.items():
        if "." in name:
            raise ValueError(f"module name {name!r} must not contain '.'")
        for key, tensor in sd.items():
            t = tensor.detach().to("cpu")
            if dtype is not None and t.is_floating_point():
                cast = t.to(dtype)
                if not torch.equal(torch.isfinite(cast), torch.isfinite(t)):
                    raise ValueError(f"weights_dtype: {name}.{key} has values outside the {dtype} range (max |x| = "
                                     f"{t.abs().max().item():.3g}); save it with weights_dtype=None")
                t = cast
            flat[f"{name}.{key}"] = t.contiguous()
    return flat


def _unflatten(flat: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    out: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in flat.items():
        name, _, rest = key.partition(".")
        out.setdefault(name, {})[rest] = tensor
    return out


def save_checkpoint(path: str | os.PathLike[str], ckpt: Checkpoint, *, weights_dtype: str | None = None) -> Path:
    """Atomically write ``ckpt`` to ``path`` (".zip" is appended when the path has no suffix).

    Args:
        weights_dtype: store the floating-point weights in this dtype (``"float16"`` halves a float32 checkpoint, as the
            zoo does); loading casts them back into the modules' own dtype. None keeps them as they are.
            Normalizer statistics and other arrays are always stored exactly.
    """
    cast = storage_dtype(weights_dtype)
    target = normalize_path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, **ckpt.meta}
    if cast is not None:
        meta["weights_dtype"] = weights_dtype
    flat = _flatten(ckpt.weights, cast)
    arrays = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in ckpt.arrays.items()}
    opt_buf = io.BytesIO()
    torch.save(ckpt.optimizers, opt_buf)
    _remove_dead_temporaries(target)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh, zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("diffagents.json", json.dumps(meta, indent=1, sort_keys=True))
            zf.writestr("weights.safetensors", st_save(flat))
            zf.writestr("arrays.safetensors", st_save(arrays))
            zf.writestr("optimizers.pt", opt_buf.getvalue())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; a checkpoint is an ordinary file
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def _remove_dead_temporaries(target: Path) -> None:
    """Temporary files of earlier saves to ``target`` whose process was killed mid-write (``.<name>.<pid>.*.tmp``)."""
    from diffagents.procs import pid_alive

    for tmp in target.parent.glob(f".{target.name}.*.tmp"):
        parts = tmp.name[len(target.name) + 2:].split(".")
        if parts and parts[0].isdigit() and int(parts[0]) != os.getpid() and not pid_alive(int(parts[0])):
            tmp.unlink(missing_ok=True)


def read_checkpoint(path: str | os.PathLike[str], *, load_optimizers: bool = True) -> Checkpoint:
    """Read and validate a checkpoint without executing anything stored in it."""
    p = normalize_path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint: no such file {str(p)!r}")
    try:
        with zipfile.ZipFile(p) as zf:
            names = set(zf.namelist())
            missing = [m for m in _MEMBERS if m not in names]
            if missing:
                raise CheckpointError(
                    f"checkpoint {str(p)!r}: not a diffagents checkpoint (missing {missing}); SB3 zips are not "
                    "loaded because SB3's format unpickles code")
            meta = json.loads(zf.read("diffagents.json"))
            weights = _unflatten(st_load(zf.read("weights.safetensors")))
            arrays = {k: v.numpy() for k, v in st_load(zf.read("arrays.safetensors")).items()}
            optimizers: dict[str, Any] = {}
            if load_optimizers:
                optimizers = torch.load(io.BytesIO(zf.read("optimizers.pt")), map_location="cpu", weights_only=True)
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, json.JSONDecodeError, OSError, EOFError, RuntimeError, ValueError,
            KeyError, Exception) as exc:
        raise CheckpointError(f"checkpoint {str(p)!r} is corrupt or truncated: {type(exc).__name__}: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {str(p)!r}: format is {meta.get('format') if isinstance(meta, dict) else meta!r}, "
                              f"expected {FORMAT!r}")
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {str(p)!r}: format_version {meta['format_version']} is newer than this "
                              f"diffagents ({FORMAT_VERSION}); upgrade diffagents")
    return Checkpoint(meta=meta, weights=weights, arrays=arrays, optimizers=optimizers)


TRAINING_WEIGHTS = "training_weights"  # ``save(exclude=[...])`` part: networks whose EMA copy stands in for them


def drop_ema_source(ckpt: Checkpoint, nets: Mapping[str, torch.nn.Module], ema_model: torch.nn.Module) -> None:
    """Leave out of ``ckpt`` the network that ``ema_model`` averages, for inference-only files.

    Acting uses the EMA copy, so the directly trained network is only needed to continue training; dropping it
    halves a diffusion model's file. The source is the one network of ``nets`` with the EMA copy's parameter
    names and shapes; ``ckpt.meta["weights_from_ema"]`` records it, and :func:`fill_from_ema` restores it from
    ``weights["ema"]`` at load time (training then continues from the EMA weights). Nothing is dropped when no
    single network matches.
    """
    shapes = {k: tuple(v.shape) for k, v in ema_model.state_dict().items()}
    found = [name for name, net in nets.items()
             if {k: tuple(v.shape) for k, v in net.state_dict().items()} == shapes]
    if len(found) == 1 and "ema" in ckpt.weights:
        del ckpt.weights[found[0]]
        ckpt.meta["weights_from_ema"] = found[0]


def fill_from_ema(ckpt: Checkpoint) -> dict[str, dict[str, torch.Tensor]]:
    """``ckpt.weights`` with the network :func:`drop_ema_source` left out filled from the EMA copy.

    Raises:
        CheckpointError: ``weights_from_ema`` names a network that is still stored, or there is no EMA copy.
    """
    name = ckpt.meta.get("weights_from_ema")
    if name is None:
        return ckpt.weights
    if not isinstance(name, str) or name in ckpt.weights or "ema" not in ckpt.weights:
        raise CheckpointError(f"weights_from_ema: expected the name of a network left out of a file that stores "
                              f"'ema', got {name!r} with weights {sorted(ckpt.weights)}")
    return {**ckpt.weights, name: ckpt.weights["ema"]}
