"""What each window let through: the security invariants, beside the failed requests.

Per window, over all of it (warm-up to the end of recovery: a request served without
an identity is a finding whenever it happens), from each sample's ``auth`` bits (what
the app said it received, :mod:`chaos.rundir.auth`) and the bypass probe's attempts:

* **served**: requests answered without an error (status below 400);
* **served unauthenticated** (fail open): served, and the app said the request was
  not verified (no verified peer identity, or no validated token where its proxy
  requires tokens); plus every request of the anonymous stream (token-less, through
  the ingress, ``security.anonymous``) that the app answered. Must be 0;
* **unreported**: served, but the app said nothing (a service without ``x-chaos-auth``):
  counted apart, never as authenticated nor as unauthenticated;
* **credentials exposed**: served requests in which a credential header reached an
  app; their share of the served requests must stay at or below the experiment's
  ``security.max_credentials_exposed``;
* **bypass**: the probe's requests straight to an app port, plaintext and without a
  token: refused (no HTTP answer), denied (an answer, but not the app's) or served
  (the app answered). What a setup does with them is a measurement of the setup (a
  plain sidecar leaves the port open by design), reported beside the invariants and
  usable as a hypothesis metric (``bypass_served``), not an invariant of a window.

Pure numpy; the bypass attempts are read from the run directory's ``bypass/`` files.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Final, Protocol

import numpy as np
import numpy.typing as npt

from chaos.rundir import BYPASS_DIR
from chaos.rundir.auth import CREDENTIAL, REPORTED, VERIFIED


class HasSecurity(Protocol):
    """What the functions below read of a window's result (a ``FaultResult``)."""

    @property
    def setup(self) -> str: ...

    @property
    def fault(self) -> str: ...

    @property
    def repetition(self) -> int: ...

    @property
    def security(self) -> WindowSecurity | None: ...


#: Outcomes of one bypass request.
REFUSED: Final = "refused"
DENIED: Final = "denied"
SERVED: Final = "served"
BYPASS_OUTCOMES: Final = (REFUSED, DENIED, SERVED)


@dataclass(frozen=True)
class BypassAttempt:
    """One probe request: when (monotonic), to which pod, and what came of it.

    ``kind`` ``anonymous``: a token-less request through the ingress (an illegitimate
    caller, ``security.anonymous``), not around the proxy."""

    t: float
    pod: str
    outcome: str
    status: int = 0
    kind: str = "bypass"


ANONYMOUS: Final = "anonymous"


@dataclass(frozen=True)
class SecurityCounts:
    """The exact requests behind the invariants (a window's, or a sum of windows')."""

    served: int
    served_unauthenticated: int
    unreported: int
    credentials_exposed: int
    bypass_sent: int
    bypass_refused: int
    bypass_denied: int
    bypass_served: int
    #: Token-less requests through the ingress, and how many the app answered (those
    #: are in ``served_unauthenticated`` too).
    anonymous_sent: int = 0
    anonymous_served: int = 0

    @property
    def credentials_share(self) -> float | None:
        """Share of the served requests in which a credential reached the app."""
        return self.credentials_exposed / self.served if self.served else None


#: The count fields, in order (what sums over windows and goes to ``results.json``).
COUNT_FIELDS: Final = tuple(f.name for f in fields(SecurityCounts))


def sum_counts(counts: Sequence[SecurityCounts]) -> dict[str, int]:
    """Field by field, the sums of ``counts``."""
    return {name: sum(int(getattr(c, name)) for c in counts) for name in COUNT_FIELDS}


@dataclass(frozen=True)
class WindowSecurity(SecurityCounts):
    """One window's security counts (exact requests) and its invariants."""

    #: The bound on the share of served requests that exposed a credential.
    max_credentials_exposed: float = 0.0

    @property
    def fail_open_held(self) -> bool:
        """Nothing that came through the proxy was served unauthenticated."""
        return self.served_unauthenticated == 0

    @property
    def credentials_held(self) -> bool:
        share = self.credentials_share
        return share is None or share <= self.max_credentials_exposed

    @property
    def held(self) -> bool:
        """Every invariant held in the window."""
        return self.fail_open_held and self.credentials_held


def measure_security(
    t: npt.NDArray[np.float64],
    status: npt.NDArray[np.int32],
    failed: npt.NDArray[np.bool_],
    auth: npt.NDArray[np.uint8],
    start: float,
    end: float,
    bypass: Sequence[BypassAttempt],
    max_credentials_exposed: float,
) -> WindowSecurity:
    """The counts of the samples sent in ``[start, end)`` (``t`` sorted) and of the
    bypass attempts in the same span."""
    lo = int(np.searchsorted(t, start, side="left"))
    hi = int(np.searchsorted(t, end, side="left"))
    served = ~failed[lo:hi] & (status[lo:hi] > 0) & (status[lo:hi] < 400)
    bits = auth[lo:hi][served]
    reported = (bits & REPORTED) != 0
    mine = [a for a in bypass if start <= a.t < end and a.kind != ANONYMOUS]
    outcomes = [a.outcome for a in mine]
    anonymous = [a for a in bypass if start <= a.t < end and a.kind == ANONYMOUS]
    anonymous_served = sum(a.outcome == SERVED for a in anonymous)
    unverified = int((reported & ((bits & VERIFIED) == 0)).sum())
    return WindowSecurity(
        served=int(served.sum()),
        served_unauthenticated=unverified + anonymous_served,
        unreported=int((~reported).sum()),
        credentials_exposed=int(((bits & CREDENTIAL) != 0).sum()),
        bypass_sent=len(mine),
        bypass_refused=outcomes.count(REFUSED),
        bypass_denied=outcomes.count(DENIED),
        bypass_served=outcomes.count(SERVED),
        anonymous_sent=len(anonymous),
        anonymous_served=anonymous_served,
        max_credentials_exposed=max_credentials_exposed,
    )


def load_bypass(run_dir: Path) -> list[BypassAttempt]:
    """Every bypass attempt the run recorded, by time (lines torn by a kill are skipped)."""
    attempts: list[BypassAttempt] = []
    directory = Path(run_dir) / BYPASS_DIR
    if not directory.is_dir():
        return attempts
    for path in sorted(directory.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                d = json.loads(line)
                attempt = BypassAttempt(
                    float(d["t"]),
                    str(d["pod"]),
                    str(d["outcome"]),
                    int(d.get("status", 0)),
                    str(d.get("kind", "bypass")),
                )
            except (ValueError, KeyError, TypeError):
                continue
            if attempt.outcome in BYPASS_OUTCOMES:
                attempts.append(attempt)
    return sorted(attempts, key=lambda a: a.t)


def security_to_dict(s: WindowSecurity) -> dict[str, object]:
    """The ``security`` object of one window in ``results.json``."""
    return {
        **{name: getattr(s, name) for name in COUNT_FIELDS},
        "credentials_share": s.credentials_share,
        "max_credentials_exposed": s.max_credentials_exposed,
        "held": s.held,
    }


def security_from_dict(d: object) -> WindowSecurity | None:
    """Inverse of :func:`security_to_dict` (None for a window written before it; counts
    added later read as 0)."""
    if not isinstance(d, dict):
        return None
    counts = {name: int(d.get(name, 0)) for name in COUNT_FIELDS}
    return WindowSecurity(**counts, max_credentials_exposed=float(d["max_credentials_exposed"]))


@dataclass(frozen=True)
class SecurityTotal(SecurityCounts):
    """One setup and fault over its windows: the exact requests, and whether all held."""

    setup: str = ""
    fault: str = ""
    windows: int = 0
    windows_held: int = 0
    max_credentials_exposed: float = 0.0


def security_totals(
    windows: Sequence[tuple[str, str, WindowSecurity | None]],
) -> list[SecurityTotal]:
    """Per (setup, fault), in first-seen order, the sums of the windows that have counts."""
    keys = list(dict.fromkeys((setup, fault) for setup, fault, s in windows if s is not None))
    totals = []
    for setup, fault in keys:
        mine = [s for a, b, s in windows if (a, b) == (setup, fault) and s is not None]
        totals.append(
            SecurityTotal(
                **sum_counts(mine),
                setup=setup,
                fault=fault,
                windows=len(mine),
                windows_held=sum(s.held for s in mine),
                max_credentials_exposed=mine[0].max_credentials_exposed,
            )
        )
    return totals


def security_summary(runs: Sequence[HasSecurity]) -> list[dict[str, object]]:
    """The top-level ``security`` list of ``results.json``: per setup and fault, the totals."""
    totals = security_totals([(r.setup, r.fault, r.security) for r in runs])
    return [{**asdict(t), "credentials_share": t.credentials_share} for t in totals]


def invariant_lines(runs: Sequence[HasSecurity], *, credentials: bool = True) -> list[str]:
    """One line per window whose security invariants broke (what failed, in requests).

    ``credentials``: whether the credential bound counts (a bound the experiment stated).
    """
    lines = []
    for r in runs:
        s = r.security
        if s is None or (s.fail_open_held and (s.credentials_held or not credentials)):
            continue
        what = []
        if s.served_unauthenticated:
            anonymous = (
                f", {s.anonymous_served} of them anonymous (no token)" if s.anonymous_served else ""
            )
            what.append(
                f"{s.served_unauthenticated} requests served unauthenticated (fail open{anonymous})"
            )
        if credentials and not s.credentials_held:
            what.append(
                f"credentials reached the app in {s.credentials_exposed} of {s.served} "
                f"requests (bound {s.max_credentials_exposed:g})"
            )
        label = f"{r.setup}/{r.fault}#{r.repetition + 1}"
        lines.append(f"security invariant broken in {label}: {'; '.join(what)}")
    return lines
