from uploadsvc.cli import main

raise SystemExit(main())
