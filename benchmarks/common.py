"""Shared helpers for the benchmark scripts: result files, plus the package's timing, hardware and dataset helpers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from diffagents.bench import synthetic_dataset, timeit  # shared with ``diffagents bench``
from diffagents.sysinfo import hardware

RESULTS = Path(__file__).parent / "results"
__all__ = ["RESULTS", "hardware", "synthetic_dataset", "timeit", "write"]


def write(name: str, payload: dict[str, Any], markdown: str) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(payload, indent=1))
    (RESULTS / f"{name}.md").write_text(markdown)
