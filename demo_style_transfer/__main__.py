"""``python -m demo_style_transfer``: see ``demo_style_transfer.app``."""
import os
import sys

from demo_style_transfer import startup
from demo_style_transfer.app import main

code = main()
if startup.pending():
    # NOTE: 'q' while a kernel compiles: the compile cannot be interrupted, and letting the
    # interpreter finalize under a thread inside LLVM can crash it; leave at once instead
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
raise SystemExit(code)
