"""Who holds a job's lease: a worker is named ``host:pid``, so a worker on the same host can tell
that the holder's process is gone and take its jobs back at once instead of waiting for the lease
to expire. Holders on other hosts, or whose process may be alive, keep their leases until expiry.

Limits: a pid can be reused by another process after its worker died (then the lease simply runs
out), and containers that share a hostname but not a pid namespace could see each other's workers
as dead; a job taken back from a live worker is still stored once, as ``complete_job`` refuses the
worker that lost its lease.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable
from pathlib import Path


def default_owner() -> str:
    """host:pid, so a lease names the process that holds it."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _zombie(pid: int) -> bool:
    """Whether ``pid`` has exited but not been reaped yet (Linux ``/proc``; False where unknown)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2 :].startswith(("Z", "X"))


def owner_is_dead(owner: str, host: str | None = None) -> bool:
    """True only when ``owner`` is ``host:pid`` on this host and no such process is running."""
    name, sep, pid_text = owner.rpartition(":")
    if os.name != "posix" or not sep or not pid_text.isdigit() or name != (host or socket.gethostname()):
        return False  # another host, or not a worker's name (e.g. "import"): its lease decides
    pid = int(pid_text)
    if pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return True
    except OSError:  # PermissionError: it exists, under another user
        return False
    return _zombie(pid)


def dead_owners(owners: Iterable[str]) -> set[str]:
    """The owners among ``owners`` that are dead processes on this host."""
    host = socket.gethostname()
    return {o for o in owners if owner_is_dead(o, host)}
