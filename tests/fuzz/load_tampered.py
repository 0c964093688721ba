"""Worker: load and run each edited (re-checksummed) plan listed in a file; one verdict per plan.

Run in a subprocess by tests/test_plan_tampering.py so that a crash (segfault) or a hang is
caught as such. The worker prints ``start <plan>`` before each plan, then one verdict line:

- ``<plan> engine-error <class>: <message>``: refused (or failed) with an EngineError
- ``<plan> ran``: ran to the end; outputs have the manifest's shapes/dtypes and the arena's guard
  zones are intact
- ``<plan> BADOUT <why>``: ran, but an output has the wrong shape/dtype or a kernel wrote outside
  the arena (into the guard zones around it)
- ``<plan> OTHER <class>: <message>``: a non-engine exception (a bug)

The arena is allocated with guard zones of a known byte pattern on both sides (the worker
replaces ``runtime.session._arena``); a kernel that writes past either end of the arena
changes them. With ``NUMBA_BOUNDSCHECK=1`` in the environment every Numba index is checked, so
an out-of-bounds read or write becomes an IndexError (``OTHER IndexError``) instead of silence.
"""
import sys

import numpy as np

import mobile_engine as me
from mobile_engine.planning.arena import ALIGN
from mobile_engine.runtime import session as session_mod

GUARD = 1 << 16
PATTERN = 0xA5
_arenas: list[tuple[np.ndarray, int, int]] = []


def _guarded_arena(nbytes: int) -> np.ndarray:
    raw = np.full(nbytes + 2 * GUARD + ALIGN, PATTERN, np.uint8)
    start = GUARD + (-(raw.ctypes.data + GUARD) % ALIGN)
    raw[start:start + nbytes] = 0
    _arenas.append((raw, start, nbytes))
    return raw[start:start + nbytes]


def _guards_intact() -> str | None:
    for raw, start, nbytes in _arenas:
        if not (raw[:start] == PATTERN).all():
            return f"wrote before the arena ({start} guard bytes)"
        if not (raw[start + nbytes:] == PATTERN).all():
            return "wrote past the end of the arena"
    return None


def _feeds(sess) -> dict:
    rng = np.random.default_rng(0)
    feeds = {}
    for a, spec in zip(sess.get_inputs(), sess.plan.inputs):
        dtype = np.dtype(spec["dtype"])
        if dtype.kind == "f":
            feeds[a.name] = rng.standard_normal(a.shape).astype(dtype)
        else:                       # small non-negative integers: valid gather indices too
            feeds[a.name] = rng.integers(0, 2, a.shape).astype(dtype)
    return feeds


def _one_line(exc: BaseException) -> str:
    # NOTE: long enough for a refusal's file, step, kernel and field (tests match on them)
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:1000]}"


def check(path: str) -> str:
    _arenas.clear()
    try:
        sess = me.Session(path, threads=1)
        outs = sess.run(None, _feeds(sess))
    except me.EngineError as exc:
        return f"engine-error {_one_line(exc)}"
    except Exception as exc:  # noqa: BLE001 - the point is to report anything else
        return f"OTHER {_one_line(exc)}"
    for out, spec in zip(outs, sess.plan.outputs):
        if list(out.shape) != list(spec["shape"]) or out.dtype.name != spec["dtype"]:
            return f"BADOUT output {spec['name']!r} is {out.dtype} {list(out.shape)}, the " \
                   f"manifest says {spec['dtype']} {spec['shape']}"
    damage = _guards_intact()
    return f"BADOUT {damage}" if damage else "ran"


def main(list_file: str) -> int:
    session_mod._arena = _guarded_arena
    with open(list_file) as f:
        paths = [line.strip() for line in f if line.strip()]
    for path in paths:
        print(f"start {path}", flush=True)
        print(f"{path} {check(path)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
