"""Worker: load and run each damaged plan given on the command line; print one verdict per file.

Run in a subprocess by tests/test_fuzz.py so that a crash (segfault) or a hang is caught as such.
Verdicts: ``<file> engine-error <class>``, ``<file> LOADED`` (a damaged plan ran: a bug),
``<file> OTHER <class>: <message>`` (a non-engine exception: a bug).
"""
import sys

import numpy as np

import mobile_engine as me


def main(paths: list[str]) -> int:
    for path in paths:
        try:
            sess = me.Session(path, threads=1)
            feeds = {i.name: np.zeros(i.shape, np.float32) for i in sess.get_inputs()}
            sess.run(None, feeds)
            verdict = "LOADED"
        except me.EngineError as exc:
            verdict = f"engine-error {type(exc).__name__}"
        except Exception as exc:  # noqa: BLE001 - the point is to report anything else
            verdict = f"OTHER {type(exc).__name__}: {str(exc)[:200]}"
        print(f"{path} {verdict}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
