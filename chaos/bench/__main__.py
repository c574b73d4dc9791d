"""``python -m chaos.bench`` (``make bench``)."""

from chaos.bench.main import main

raise SystemExit(main())
