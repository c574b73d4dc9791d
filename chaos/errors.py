"""The one exception tree of sidecar-chaos.

::

    ChaosError                      base; carries the exit code the CLI uses
    ├── InputError (2)              bad input: experiment file, CLI option, environment
    │   ├── SpecError               an experiment file is invalid (path, field, line)
    │   ├── AddressInUseError       an address or port the topology needs is taken
    │   └── EnvoyNotFoundError      no Envoy binary could be found
    ├── PlatformError (1)           a platform failed to do what was asked
    │   ├── StartupError            a topology did not become ready in time
    │   └── ProcessError            a child process could not be started or stopped
    │       └── TrafficError        the load generator died or could not record its samples
    ├── FaultError (1)              a fault could not be applied, verified or reverted
    ├── OutputError (5)             an output file could not be written (a full disk)
    └── AbortedError (3)            a run was ended by a stop condition or a signal
        └── RunDirectoryError       the run directory cannot be written (disk full, ...)

Foreign errors (``subprocess``, ``httpx``, ``OSError``, the kubernetes client's
``ApiException``) are translated into these at the boundary that sees them, with
``raise ... from exc``; the CLI turns a ``ChaosError`` into one line and its exit code.
"""

from __future__ import annotations

from pathlib import Path


class ChaosError(Exception):
    """Base of every error sidecar-chaos raises on purpose."""

    exit_code = 1


class InputError(ChaosError):
    """Bad input from the user: a file, an option, the environment."""

    exit_code = 2


class SpecError(InputError):
    """An experiment file is invalid.

    ``file``, ``field`` and ``line`` locate the problem where they are known.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        field: str | None = None,
        line: int | None = None,
    ) -> None:
        self.file = file
        self.field = field
        self.line = line
        self.message = message
        super().__init__(self._render())

    def _render(self) -> str:
        where = self.file or "<experiment>"
        if self.line is not None:
            where = f"{where}:{self.line}"
        if self.field:
            return f"{where}: {self.field}: {self.message}"
        return f"{where}: {self.message}"


class AddressInUseError(InputError):
    """An address or port the topology needs is already taken."""


class EnvoyNotFoundError(InputError):
    """No Envoy binary could be found."""


class PlatformError(ChaosError):
    """A platform could not do what was asked."""


class StartupError(PlatformError):
    """A topology did not become ready in time."""


class ProcessError(PlatformError):
    """A child process could not be started or stopped."""


class UsageError(ProcessError):
    """A measured process exited or restarted mid-measurement: that cost window is broken."""


class TrafficError(ProcessError):
    """The load generator died during a window or could not record its samples."""


class FaultError(ChaosError):
    """A fault could not be applied, verified or reverted."""


class OutputError(ChaosError):
    """An output file could not be written (a full disk, a file-size limit, ...).

    ``path`` is the file meant to be written; nothing partial is left at it.
    """

    exit_code = 5

    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"cannot write {path}: {reason}")


class AbortedError(ChaosError):
    """A run was ended early by a stop condition or a signal."""

    exit_code = 3


class RunDirectoryError(AbortedError):
    """The run directory cannot be written (a full disk): the run cannot go on."""
