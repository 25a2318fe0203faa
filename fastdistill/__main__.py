from fastdistill.cli import main

raise SystemExit(main())
