"""On-disk cache of validated, flattened episode tables next to a Minari dataset.

Reading HDF5 episode by episode costs about 1.5-5 ms per episode on these machines (a 4M-step PointMaze
dataset with 13k episodes takes 20-60 s), so :func:`diffagents.data.read_episodes` stores its result as
``.npy`` files in ``<dataset folder>/diffagents_cache/<key>/`` and reloads them in about a second. The key
covers the flatteners, ``drop_invalid`` and the data file's size and modification time, so editing the dataset
or changing the layout invalidates it. Unwritable folders are skipped silently.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

ARRAYS = ("observations", "actions", "rewards", "terminations", "truncations", "lengths", "episode_ids")
FORMAT = 1


def cache_dir(dataset: Any, parts: dict[str, Any]) -> Path | None:
    """Cache folder for ``dataset`` and the reading options ``parts`` (``None`` if it has no local file)."""
    data_path = getattr(getattr(dataset, "storage", None), "data_path", None)
    if data_path is None:
        return None
    files = sorted(p for p in Path(data_path).iterdir() if p.is_file())
    stamp = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    key = hashlib.sha1(json.dumps({"format": FORMAT, "files": stamp, **parts}, sort_keys=True).encode()).hexdigest()
    return Path(data_path).parent / "diffagents_cache" / key[:16]


def load_cached(path: Path | None) -> tuple[dict[str, np.ndarray], list[tuple[int, str]]] | None:
    """Arrays and dropped-episode list from ``path``, or ``None`` when absent or unreadable."""
    if path is None or not (path / "done.json").is_file():
        return None
    try:
        arrays = {name: np.load(path / f"{name}.npy", allow_pickle=False) for name in ARRAYS}
        with open(path / "done.json") as f:
            dropped = [(int(i), str(m)) for i, m in json.load(f)["dropped"]]
    except (OSError, ValueError, KeyError):
        return None
    return arrays, dropped


def save_cached(path: Path | None, arrays: dict[str, np.ndarray], dropped: list[tuple[int, str]]) -> None:
    """Write the cache atomically (a private temporary folder renamed into place, under an inter-process lock, so
    concurrent writers of the same key write it once and readers never see half of it); errors are ignored."""
    if path is None:
        return
    from diffagents.data.locking import lock_for

    tmp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with lock_for(path.parent, path.name):
            if (path / "done.json").is_file():  # another process wrote this key meanwhile
                return
            tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=".tmp-"))
            for name in ARRAYS:
                np.save(tmp / f"{name}.npy", arrays[name], allow_pickle=False)
            with open(tmp / "done.json", "w") as f:
                json.dump({"dropped": dropped}, f)
            shutil.rmtree(path, ignore_errors=True)  # an incomplete folder of a killed writer
            os.replace(tmp, path)
            tmp = None
    except OSError:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
