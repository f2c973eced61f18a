from oms.cli import main

raise SystemExit(main())
