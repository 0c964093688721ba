"""Plans (and other files a job needs, e.g. a background picture) cross the network once per
worker, by content: the client scatters each file's bytes under their hash (Dask keeps them in
the workers' memory for the whole job, so a later task never transfers them again), and each
worker process writes a plan to a local file named by its sha256 and loads a ``Session`` once;
its kernels compile (or load from Numba's cache) there, for that worker's own CPU.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from pathlib import Path

from mobile_engine.errors import PlanFormatError

# (sha256 hex, bytes): a future of the bytes on the client, the bytes themselves in a task.
# NOTE: a plain tuple: Dask resolves futures inside tuples and dicts, not inside dataclasses
Shipped = tuple[str, object]


def ship(client, files: dict[str, bytes]) -> dict[str, Shipped]:
    """{role: file bytes} -> {role: (sha256, future)} scattered to every worker now connected
    (a worker that joins later fetches them from a peer when a task needs them)."""
    shipped = {}
    for role, data in files.items():
        (future,) = client.scatter([data], broadcast=True, hash=True)
        shipped[role] = (hashlib.sha256(data).hexdigest(), future)
    return shipped


_sessions: dict[tuple[str, int, int], object] = {}
_lock = threading.Lock()


def plan_folder() -> Path:
    """Where a worker keeps the plans it received (one file per sha256)."""
    return Path(tempfile.gettempdir()) / f"mobile-engine-plans-{os.getuid()}"


def worker_session(plan: Shipped, threads: int):
    """The Session of ``plan`` for this worker thread: loaded at the first task that needs it,
    then kept (a Session runs one frame at a time, so each task thread has its own)."""
    key = (plan[0], threads, threading.get_ident())
    with _lock:
        session = _sessions.get(key)
    if session is None:
        import mobile_engine as me
        session = me.Session(_plan_file(plan), threads=threads)
        with _lock:
            _sessions[key] = session
    return session


def checked_bytes(shipped: Shipped) -> bytes:
    """The bytes of a file received by a task, checked against their sha256."""
    digest, data = shipped
    data = bytes(data)
    if hashlib.sha256(data).hexdigest() != digest:
        raise PlanFormatError(f"file {digest[:12]}: the bytes received do not match their "
                              f"sha256 (damaged in transit)")
    return data


def _plan_file(plan: Shipped) -> Path:
    """The plan's local file, written once (atomically)."""
    path = plan_folder() / f"{plan[0]}.mplan"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_bytes(checked_bytes(plan))
        os.replace(tmp, path)
    return path
