"""The client side of a Dask cluster: a ``LocalCluster`` on 127.0.0.1 (processes, or threads of
this process for one worker) or an existing scheduler (``tcp://HOST:8786``), and the workers a
command chose by name. Every failure to reach or use the cluster is an ``InputError`` naming the
address, before any work is scheduled.
"""
from __future__ import annotations

import contextlib
import logging
from typing import Iterator

from mobile_engine.errors import InputError

CONNECT_TIMEOUT_S = 10
LOOPBACK = "127.0.0.1"
EXTRA_HINT = "pip install 'mobile-engine[video]' (dask distributed and PyAV)"


def import_distributed():
    """The ``distributed`` module, or an InputError saying which extra installs it."""
    try:
        import distributed
    except ImportError:
        raise InputError(f"this command needs dask distributed: {EXTRA_HINT}") from None
    return distributed


@contextlib.contextmanager
def cluster_client(address: str | None = None, workers: int = 1) -> Iterator:
    """A ``distributed.Client``: on ``address`` (an existing scheduler), else on a LocalCluster
    of ``workers`` single-thread worker processes bound to 127.0.0.1 (no dashboard), or of one
    worker thread in this process when ``workers`` is 1. Closed (and the cluster stopped) on
    exit."""
    distributed = import_distributed()
    if address is not None:
        try:
            client = distributed.Client(address, timeout=CONNECT_TIMEOUT_S,
                                        set_as_default=False)
        except (OSError, TimeoutError, ValueError) as exc:
            raise InputError(f"--cluster {address}: no Dask scheduler answers there "
                             f"({_first_line(exc)}); start one with `dask scheduler`") from None
        with client:
            yield client
        return
    # NOTE: one worker runs as threads of this process on the in-process transport (no socket);
    # processes listen on loopback only
    where = {"processes": True, "host": LOOPBACK} if workers > 1 else {"processes": False}
    cluster = distributed.LocalCluster(
        n_workers=workers, threads_per_worker=1, dashboard_address=None,
        worker_dashboard_address=None, silence_logs=logging.ERROR, **where)
    with cluster, distributed.Client(cluster, set_as_default=False) as client:
        yield client


def worker_names(client) -> dict[str, str]:
    """{worker address: its name} of the workers connected now."""
    info = client.scheduler_info(n_workers=-1)["workers"]
    return {address: str(w.get("name", address)) for address, w in info.items()}


def choose_workers(client, wanted: list[str] | None) -> dict[str, str]:
    """{address: name} of the workers ``wanted`` (names or addresses; None: all), in the order
    given; InputError naming any that is not connected."""
    connected = worker_names(client)
    if not connected:
        raise InputError(f"the scheduler {client.scheduler.address} has no workers: start "
                         f"`dask worker {client.scheduler.address} --name NAME` on each machine")
    if not wanted:
        return dict(sorted(connected.items(), key=lambda item: item[1]))
    by_name = {name: address for address, name in connected.items()}
    chosen = {}
    for w in wanted:
        address = w if w in connected else by_name.get(w)
        if address is None:
            raise InputError(f"--workers {w}: no such worker; connected: "
                             f"{', '.join(sorted(by_name))}")
        chosen[address] = connected[address]
    return chosen


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
