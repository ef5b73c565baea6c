"""One exception type for every problem a user can fix, and the stage wrapper that prints it."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path


class DeepnormalError(Exception):
    """A problem with the user's params, data or environment, explained in one message."""


# Ctrl-C during a tracked stage (train, evaluate), and during the tune stage's search.
INTERRUPTED = ("interrupted: the MLflow run is marked KILLED; nothing half-written is in place, "
               "and `dvc repro` starts this stage again")
SEARCH_INTERRUPTED = ("interrupted: the search is saved (the trial that was running is marked "
                      "failed); rerun `dvc repro` (or this stage) to resume it where it stopped")


def first_line(error: BaseException, limit: int | None = None) -> str:
    """The first line of a library's error message (or its repr when it has none), for a
    one-line DeepnormalError that wraps it."""
    return (str(error).strip().splitlines() or [repr(error)])[0][:limit]


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's main(); a DeepnormalError becomes one readable line and exit code 2.
    Under `dvc repro` the line also says how to get the stage's earlier outputs back: DVC
    removed them before the stage ran, and they are in its cache (restore_hint).

    Anything else is a bug and keeps its traceback.
    """
    try:
        main()
    except DeepnormalError as error:
        print(f"error: {error}{restore_hint()}", file=sys.stderr)
        sys.exit(2)


def restore_hint() -> str:
    """'; `dvc checkout train` restores ...' when DVC runs this stage (it exports DVC_STAGE and
    DVC_ROOT) and dvc.lock records earlier outputs of it; else nothing."""
    stage, root = os.environ.get("DVC_STAGE"), os.environ.get("DVC_ROOT")
    if not stage or not root:
        return ""
    try:
        import yaml

        locked = yaml.safe_load((Path(root) / "dvc.lock").read_text()) or {}
        if not locked.get("stages", {}).get(stage, {}).get("outs"):
            return ""
    except (OSError, ValueError, AttributeError):
        return ""
    return f"; `dvc checkout {stage}` restores this stage's earlier outputs"
