"""Writing a stage's outputs so that a failure never leaves them half-written.

A stage writes into a scratch folder beside the real one and moves the files into place only
once all of its work has succeeded. Under `dvc repro`, DVC removes a stage's earlier outputs
before it runs the stage (they stay in DVC's cache, and `dvc checkout STAGE`, which a failed
stage's error line names, brings them back); run directly, a failed stage leaves them as
they were. Either way no half-written checkpoint or table is ever presented as a result.
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
