"""Which process is this, and is another one still there? Used to tell leftovers of a killed
stage from live work, and Lightning's extra DDP processes from the stage itself."""

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


# Where Lightning (lightning_fabric.utilities.rank_zero) reads a process's rank; the first
# one set wins. Read here without importing torch.
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")


def is_extra_ddp_process() -> bool:
    """True in the processes Lightning starts for the second and later devices of a DDP run
    (it passes their rank in the environment), before torch is imported."""
    for name in RANK_VARIABLES:
        value = os.environ.get(name)
        if value is not None:
            return value.strip() not in ("", "0")
    return False
