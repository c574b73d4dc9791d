"""Push a finished run's results to a Prometheus Pushgateway (``--pushgateway URL``).

The push happens after every local output is written, and never decides the
run's fate: a gateway that is down, slow or answers an error is retried briefly
(three attempts) and then reported as one warning line; the run keeps its
results, report and exit code.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import push_to_gateway
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_fixed

from chaos.errors import InputError
from chaos.report.prometheus import PUSH_JOB, RunIdentity, RunResults


def check_gateway_url(url: str, option: str = "--pushgateway") -> str:
    """``url`` if it is an http(s) URL with a host, else an :class:`InputError`."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError(f"{option}: {url!r} is not an http(s) URL like http://127.0.0.1:9091")
    try:
        parts.port  # noqa: B018 -- raises ValueError on a bad port
    except ValueError as exc:
        raise InputError(f"{option}: {url!r} has a bad port") from exc
    return url.rstrip("/")


@dataclass(frozen=True)
class PushOutcome:
    """What happened to a push: ``warning`` is None when the gateway took it."""

    identity: RunIdentity | None
    warning: str | None


def push_results(
    run_dir: Path, gateway: str, *, timeout_s: float = 5.0, attempts: int = 3, wait_s: float = 0.5
) -> PushOutcome:
    """Push the results in ``run_dir`` under the job ``sidecar_chaos`` and the run's key.

    Never raises for the gateway's sake: failures come back as ``warning``.
    """
    try:
        results = RunResults(run_dir)
    except InputError as exc:
        return PushOutcome(None, f"nothing pushed to {gateway}: {exc}")
    identity = results.identity
    registry = results.registry()
    try:
        for attempt in Retrying(
            stop=stop_after_attempt(attempts),
            wait=wait_fixed(wait_s),
            retry=retry_if_exception_type(OSError),
            reraise=True,
        ):
            with attempt:
                push_to_gateway(
                    gateway,
                    job=PUSH_JOB,
                    registry=registry,
                    grouping_key=identity.grouping_key(),
                    timeout=timeout_s,
                )
    except (OSError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return PushOutcome(
            identity,
            f"push to Pushgateway {gateway} failed after {attempts} attempts ({reason}); "
            f"the results are kept in {run_dir}",
        )
    return PushOutcome(identity, None)
