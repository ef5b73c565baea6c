"""Writing a stage's outputs so that a failure never leaves them half-replaced.

dvc.yaml marks every output `persist: true`, so DVC no longer deletes the previous outputs
before it runs a stage; a stage then writes into a scratch folder beside the real one and
moves the files into place only once all of its work has succeeded. A wrong param, a bad
data file or a diverging run therefore leaves the earlier results exactly as they were.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from deepnormal.processes import process_alive

SCRATCH_PREFIX = ".partial-"  # git-ignored: .partial-<output>-<pid>-<random>


def remove_abandoned_scratch(directory: Path) -> None:
    """Delete scratch folders that a killed stage (SIGKILL, power cut) left behind: those
    whose owning process no longer exists."""
    for scratch in directory.parent.glob(f"{SCRATCH_PREFIX}{directory.name}-*"):
        pid = scratch.name.removeprefix(f"{SCRATCH_PREFIX}{directory.name}-").split("-")[0]
        if pid.isdigit() and not process_alive(int(pid)):
            shutil.rmtree(scratch, ignore_errors=True)


@contextmanager
def staged(directory: Path) -> Iterator[Path]:
    """Yield a scratch folder; on success move everything in it into `directory`."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    remove_abandoned_scratch(directory)
    scratch = Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{directory.name}-{os.getpid()}-",
                                    dir=directory.parent))
    try:
        yield scratch
        directory.mkdir(exist_ok=True)
        for item in scratch.iterdir():
            target = directory / item.name
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(item, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
