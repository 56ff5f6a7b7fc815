from vilbert_lite.cli import main

raise SystemExit(main())
