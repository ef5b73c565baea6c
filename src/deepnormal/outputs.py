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

SCRATCH_PREFIX = ".partial-"  # git-ignored; a killed stage may leave one behind


@contextmanager
def staged(directory: Path) -> Iterator[Path]:
    """Yield a scratch folder; on success move everything in it into `directory`."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{directory.name}-",
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
