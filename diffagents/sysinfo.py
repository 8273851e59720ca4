"""A one-line description of the machine, recorded next to every benchmark figure and zoo card."""

from __future__ import annotations

import platform


def hardware() -> str:
    """CPU model and count (from /proc/cpuinfo when available), GPU name, torch version and thread count."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            names = [ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")]
        cpu = f"{len(names)}x {names[0]}" if names else cpu
    except OSError:
        pass
    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return f"{cpu}{gpu}, torch {torch.__version__}, {torch.get_num_threads()} thread(s)"
