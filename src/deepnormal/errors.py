"""One exception type for every problem a user can fix, and the stage wrapper that prints it."""

from __future__ import annotations

import sys
from collections.abc import Callable


class DeepnormalError(Exception):
    """A problem with the user's params, data or environment, explained in one message."""


# Ctrl-C during a tracked stage (train, evaluate), and during the tune stage's search.
INTERRUPTED = ("interrupted: the MLflow run is marked KILLED; earlier outputs are unchanged and "
               "`dvc repro` starts this stage again")
SEARCH_INTERRUPTED = ("interrupted: the search is saved (the trial that was running is marked "
                      "failed); rerun `dvc repro` (or this stage) to resume it where it stopped")


def first_line(error: BaseException, limit: int | None = None) -> str:
    """The first line of a library's error message (or its repr when it has none), for a
    one-line DeepnormalError that wraps it."""
    return (str(error).strip().splitlines() or [repr(error)])[0][:limit]


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's main(); a DeepnormalError becomes one readable line and exit code 2.

    Anything else is a bug and keeps its traceback.
    """
    try:
        main()
    except DeepnormalError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
