"""``python -m chaos.cli``: the same CLI as ``sidecar-chaos``."""

from chaos.cli.app import main

main()
