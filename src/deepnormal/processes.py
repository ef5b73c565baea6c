"""Is a process still there? Used to tell leftovers of a killed stage from live work."""

from __future__ import annotations

import os


def process_alive(pid: int) -> bool:
    """True while a process with this id exists on this host (ids are reused eventually,
    so a long-dead owner may rarely look alive: its leftovers then wait one more run)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True
