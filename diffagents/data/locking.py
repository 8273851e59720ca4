"""Process-safe writes of on-disk datasets and caches (README, "Security and reliability").

Every dataset or cache the package writes goes through :func:`build_dataset_once`: an inter-process lock
(``filelock``: ``flock`` on POSIX, released by the OS when its holder dies, so a killed builder leaves no stale
lock), a build into a private temporary folder beside the destination, and an atomic ``rename`` into place.
Readers that take the same lock never see a half-written dataset; a failed or killed build removes only its own
temporary folder (a later call removes the folders of builders that are no longer alive). Under DDP every rank
may call it: the first builds, the others wait on the lock and then read what it wrote.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from filelock import FileLock

from diffagents.procs import pid_alive

LOCKS = ".locks"
BUILDING = ".building"


def datasets_root() -> Path:
    """The Minari datasets folder (``MINARI_DATASETS_PATH`` or ``~/.minari/datasets``)."""
    from minari.storage import get_dataset_path

    return Path(get_dataset_path(""))


def _safe(name: str) -> str:
    return name.replace("/", "__").replace(os.sep, "__")


def lock_for(root: Path, name: str, timeout: float = -1) -> FileLock:
    """The inter-process lock of ``name`` under ``root`` (``root/.locks/<name>.lock``)."""
    (root / LOCKS).mkdir(parents=True, exist_ok=True)
    return FileLock(str(root / LOCKS / f"{_safe(name)}.lock"), timeout=timeout)


def _remove_dead_builds(root: Path, name: str) -> None:
    """Temporary folders of builds of ``name`` whose process is gone (called with the lock held)."""
    for tmp in (root / BUILDING).glob(f"{_safe(name)}.*"):
        try:
            pid = int(tmp.name.rsplit(".", 2)[1])
        except (IndexError, ValueError):
            continue
        if pid != os.getpid() and not pid_alive(pid):
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def _minari_root(path: Path) -> Iterator[None]:
    """Point Minari's dataset root at ``path`` while a dataset is created there (restored afterwards)."""
    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(path)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = old


def build_dataset_once(dataset_id: str, ready: Callable[[Path], bool], create: Callable[[], Any], *,
                       replace: bool = False) -> Path:
    """Make sure Minari dataset ``dataset_id`` exists, built at most once across processes.

    Args:
        dataset_id: the full Minari id (its folder is ``<root>/<dataset_id>``).
        ready: ``ready(folder)`` says whether an existing folder is the wanted dataset (checked with the lock
            held); when it returns True nothing is built.
        create: builds the dataset with Minari (``minari.create_dataset_from_buffers(dataset_id, ...)`` plus any
            metadata update); it runs with Minari's root pointed at a private temporary folder.
        replace: build even when ``ready`` says the existing folder is fine (``force``).

    Returns:
        The dataset's folder.
    """
    root = datasets_root()
    final = root / dataset_id
    with lock_for(root, dataset_id):
        _remove_dead_builds(root, dataset_id)
        if final.is_dir() and not replace and ready(final):
            return final
        tmp_root = root / BUILDING / f"{_safe(dataset_id)}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        tmp_root.mkdir(parents=True)
        try:
            with _minari_root(tmp_root):
                create()
            built = tmp_root / dataset_id
            final.parent.mkdir(parents=True, exist_ok=True)
            for meta in tmp_root.rglob("namespace_metadata.json"):  # Minari's namespace files, if new here
                dest = root / meta.relative_to(tmp_root)
                if not dest.exists():
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(meta, dest)
            if final.exists():  # an outdated copy (checked or forced above): moved aside, then removed
                os.replace(final, tmp_root / "replaced")
            os.replace(built, final)
        finally:
            shutil.rmtree(tmp_root, ignore_errors=True)
    return final
