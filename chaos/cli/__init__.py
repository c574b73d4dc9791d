"""The command line (``sidecar-chaos``): the typer app in :mod:`chaos.cli.app`, and what
only it uses.

Nothing below the command line imports this package: the engine, faults, platforms, traffic,
analysis and report know nothing of typer, the terminal or the process's exit code.
"""
