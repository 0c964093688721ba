"""Work beyond one machine on Dask distributed: a client on the user's machine, a scheduler, and
one ``dask worker`` per machine (or a ``LocalCluster`` on 127.0.0.1).

    connect.py   the client: a LocalCluster of processes (or threads) on loopback, or an
                 existing scheduler's address; choosing workers by name
    plans.py     plans sent by content hash, loaded once per worker process into Sessions
    fleet.py     one benchmark on every chosen board, one at a time or all at once

Needs the ``video`` extra (``pip install 'mobile-engine[video]'``: dask distributed, PyAV); the
engine itself never imports this package.
"""
