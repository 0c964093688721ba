from mobile_engine.cli import main

raise SystemExit(main())
