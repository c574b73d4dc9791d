"""``python -m chaos.bench``."""

from chaos.bench.startup import main

raise SystemExit(main())
