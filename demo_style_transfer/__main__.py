"""``python -m demo_style_transfer``: see ``demo_style_transfer.app``."""
from demo_style_transfer.app import main

raise SystemExit(main())
