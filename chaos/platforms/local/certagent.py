"""The cert agent (istio-agent's role): keeps workload certificates fresh.

Each registered identity gets a certificate at once and a new one at **half of
its life**, as istio-agent does with its default grace ratio of 0.5. "Life" is
the TTL asked for; the certificate's ``notAfter`` is that TTL after issuance,
rounded *up* to a whole second (X.509 has no fractions), so a certificate never
lives less than its TTL and the rotation at ``ttl / 2`` always leaves at least half
a TTL of margin. The CA's backdating of ``notBefore`` is a clock-skew allowance,
not lifetime, so it is left out. The new certificate is installed with
:func:`~chaos.platforms.shared.pki.write_identity` (an atomic ``..data`` swap), which
Envoy's SDS ``watched_directory`` picks up without a restart.

Rotation can be **blocked** for one identity (the *cert-expiry* fault) or for
all of them (the *control-plane-outage* fault: the CA is down). A blocked
identity keeps its certificate until it really expires. With a ``backoff`` (the
setup's CA retry policy, :class:`~chaos.platforms.shared.dataplane.Backoff`), a
blocked identity that is due is tried and fails (``cert_retry`` event with the
wait), and tried again after the backoff's next wait, as ztunnel and istio-agent
do while the CA is unreachable; when the block ends, it is re-issued at its next
try, not at once. Without a backoff every overdue identity is re-issued at once on
unblock. The renewal point is ``rotation_ratio`` of the life, moved by up to
``rotation_jitter`` of it either way (istio-agent's SECRET_GRACE_PERIOD_RATIO_JITTER).

One daemon thread does the rotations; it sleeps on a condition variable until
the next rotation is due or something changes (register, block, unblock, close).

The *sidecar* setup has no agent: :func:`init_identity` is its init step, run
once before the proxy starts (and again by an operator-style revert).
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from cryptography import x509

from chaos.platforms.base import EventKind
from chaos.platforms.shared.dataplane import Backoff
from chaos.platforms.shared.pki import CertificateAuthority, IssuedCertificate, write_identity

_log = logging.getLogger(__name__)

#: ``events(kind, subject, detail)``; ``EventLog.append`` fits.
EventSink = Callable[[str, str, str], object]
#: Share of a certificate's life after which it is rotated (istio-agent's default).
ROTATION_RATIO = 0.5
#: After a failed rotation (disk full, CA error), try again this much later.
RETRY_AFTER_S = 0.5


def _ceil_second(moment: dt.datetime) -> dt.datetime:
    whole = moment.replace(microsecond=0)
    return whole if whole == moment else whole + dt.timedelta(seconds=1)


def issue_for_at_least(
    ca: CertificateAuthority, spiffe_id: str, ttl: dt.timedelta
) -> IssuedCertificate:
    """A certificate valid from now for ``ttl`` or up to one second more, never less.

    X.509 times have whole seconds and would otherwise cut up to 1 s off the end,
    a large share of a TTL of seconds.
    """
    end = _ceil_second(dt.datetime.now(dt.UTC) + ttl)
    return ca.issue(spiffe_id, ttl, not_before=end - ttl)


def init_identity(
    ca: CertificateAuthority, identity_dir: Path, spiffe_id: str, ttl: dt.timedelta
) -> IssuedCertificate:
    """Issue a certificate for ``spiffe_id`` and install it in ``identity_dir`` (an init step)."""
    issued = issue_for_at_least(ca, spiffe_id, ttl)
    write_identity(identity_dir, issued, ca.ca_pem)
    return issued


@dataclass(frozen=True)
class IdentityStatus:
    """Where one identity stands."""

    dir: Path
    subject: str
    spiffe_id: str
    serial: int
    not_after: dt.datetime
    #: Rotation blocked, for this identity or for all.
    blocked: bool
    #: When the agent will rotate it, on the agent's clock (``time.monotonic`` by default).
    next_rotation: float

    @property
    def expired(self) -> bool:
        return self.not_after <= dt.datetime.now(dt.UTC)


_NEVER = dt.datetime.min.replace(tzinfo=dt.UTC)


@dataclass
class _Identity:
    dir: Path
    subject: str
    spiffe_id: str
    ttl: dt.timedelta
    serial: int = 0
    not_after: dt.datetime = _NEVER
    next_rotation: float = 0.0
    blocked: bool = False
    #: Failed tries in a row while the CA was unreachable (the backoff's count).
    failures: int = 0


def _detail(serial: int, not_after: dt.datetime, note: str = "") -> str:
    text = f"serial={serial:x} not_after={not_after.isoformat()}"
    return f"{text} {note}" if note else text


class CertAgent:
    """Issues and rotates the certificates of registered identities in the background."""

    def __init__(
        self,
        ca: CertificateAuthority,
        *,
        events: EventSink | None = None,
        clock: Callable[[], float] = time.monotonic,
        backoff: Backoff | None = None,
        rotation_ratio: float = ROTATION_RATIO,
        rotation_jitter: float = 0.0,
        rand: Callable[[], float] = random.random,
    ) -> None:
        if not (rotation_ratio - rotation_jitter > 0 and rotation_ratio + rotation_jitter < 1):
            raise ValueError(f"rotation at {rotation_ratio} +- {rotation_jitter} of the life")
        self.ca = ca
        self._events = events
        self._clock = clock
        self.backoff = backoff
        self._ratio = rotation_ratio
        self._jitter = rotation_jitter
        self._rand = rand
        self._lock = threading.RLock()
        self._wake = threading.Condition(self._lock)
        self._identities: dict[Path, _Identity] = {}
        self._all_blocked = False
        self._stopping = False
        self._thread: threading.Thread | None = None

    # -- registration -----------------------------------------------------------

    def register(
        self,
        identity_dir: Path,
        spiffe_id: str,
        ttl: dt.timedelta,
        *,
        subject: str | None = None,
    ) -> IdentityStatus:
        """Issue a certificate for ``spiffe_id`` into ``identity_dir`` now and keep it fresh.

        ``subject`` names the identity in events; by default the pod directory's
        name when ``identity_dir`` is a pod's ``certs`` directory, else its own name.
        """
        if ttl.total_seconds() <= 0:
            raise ValueError("certificate TTL must be positive")
        if subject is None:
            subject = (
                identity_dir.parent.name if identity_dir.name == "certs" else identity_dir.name
            )
        identity = _Identity(identity_dir, subject, spiffe_id, ttl)
        with self._wake:
            if identity_dir in self._identities:
                raise ValueError(f"{identity_dir} is already registered")
            self._identities[identity_dir] = identity
        try:
            self._install(identity, ttl, EventKind.CERT_ISSUED)
        except BaseException:
            # Not half-registered: a failed first issue leaves nothing to rotate.
            with self._wake:
                self._identities.pop(identity_dir, None)
            raise
        return self._status_of(identity)

    def unregister(self, identity_dir: Path) -> None:
        """Stop rotating ``identity_dir`` (its files stay)."""
        with self._wake:
            self._identities.pop(identity_dir, None)
            self._wake.notify_all()

    @property
    def ca_reachable(self) -> bool:
        """False while every identity is blocked (the CA is down)."""
        return not self._all_blocked

    # -- faults and reverts -----------------------------------------------------

    def block(self, identity_dir: Path | None = None) -> None:
        """Stop rotating ``identity_dir``, or every identity when None (the CA is down)."""
        with self._wake:
            if identity_dir is None:
                self._all_blocked = True
            else:
                self._get(identity_dir).blocked = True
            self._wake.notify_all()

    def unblock(self, identity_dir: Path | None = None) -> None:
        """Lift the block of ``identity_dir``, or the block of all when None.

        The two blocks are separate: ``unblock()`` ends an outage but leaves an
        identity blocked by its own fault blocked. Overdue identities are re-issued
        at once, before this returns.
        """
        with self._wake:
            if identity_dir is None:
                self._all_blocked = False
            else:
                self._get(identity_dir).blocked = False
            # With a backoff, the next try comes when it is due (the thread).
            due = [] if self.backoff else [i for i in self._identities.values() if self._due(i)]
        for identity in due:
            self._rotate(identity)
        with self._wake:
            self._wake.notify_all()

    def issue_now(self, identity_dir: Path, ttl: dt.timedelta | None = None) -> IdentityStatus:
        """Re-issue ``identity_dir`` now, blocked or not (a revert); ``ttl`` defaults to its own."""
        identity = self._get(identity_dir)
        self._install(identity, ttl or identity.ttl, EventKind.CERT_ISSUED, "forced")
        return self._status_of(identity)

    def install_short_lived(self, identity_dir: Path, ttl: dt.timedelta) -> IdentityStatus:
        """Install a certificate that expires after ``ttl`` (the cert-expiry fault).

        With the identity blocked it really expires; unblocked, the agent rotates it
        at half of ``ttl`` with a certificate of the identity's usual TTL.
        """
        identity = self._get(identity_dir)
        self._install(
            identity, ttl, EventKind.CERT_ISSUED, f"short-lived ttl={ttl.total_seconds()}s"
        )
        return self._status_of(identity)

    # -- reading ----------------------------------------------------------------

    def status(self) -> list[IdentityStatus]:
        """Every registered identity, in registration order."""
        with self._lock:
            return [self._status_of(i) for i in self._identities.values()]

    def status_of(self, identity_dir: Path) -> IdentityStatus:
        """One registered identity."""
        return self._status_of(self._get(identity_dir))

    # -- the background thread ----------------------------------------------------

    def start(self) -> CertAgent:
        """Start the rotation thread (idempotent)."""
        with self._wake:
            if self._thread is None:
                self._stopping = False
                self._thread = threading.Thread(target=self._run, name="cert-agent", daemon=True)
                self._thread.start()
        return self

    @property
    def native_id(self) -> int | None:
        """The kernel's id of the rotation thread while it runs (its CPU is the agent's)."""
        thread = self._thread
        return thread.native_id if thread is not None and thread.is_alive() else None

    def close(self) -> None:
        """Stop the rotation thread and join it (idempotent)."""
        with self._wake:
            thread, self._thread = self._thread, None
            self._stopping = True
            self._wake.notify_all()
        if thread is not None:
            thread.join(timeout=5.0)

    def __enter__(self) -> CertAgent:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _run(self) -> None:
        while True:
            with self._wake:
                if self._stopping:
                    return
                due = [i for i in self._identities.values() if self._due(i)]
                failing = [i for i in self._identities.values() if self._failing(i)]
                if not due and not failing:
                    self._wake.wait(self._sleep_s())
                    continue
            for identity in failing:
                self._fail(identity)
            for identity in due:
                self._rotate(identity)

    def _sleep_s(self) -> float | None:
        """Seconds until the next rotation or try; None (wait for a change) if none."""
        pending = [
            i.next_rotation
            for i in self._identities.values()
            if self.backoff is not None or not (i.blocked or self._all_blocked)
        ]
        return max(0.0, min(pending) - self._clock()) if pending else None

    def _failing(self, identity: _Identity) -> bool:
        """A due try that cannot reach the CA (only with a backoff)."""
        return (
            self.backoff is not None
            and (identity.blocked or self._all_blocked)
            and identity.next_rotation <= self._clock()
        )

    def _fail(self, identity: _Identity) -> None:
        backoff = self.backoff
        with self._wake:
            if backoff is None or not self._failing(identity):
                return
            identity.failures += 1
            wait = backoff.delay_s(identity.failures)
            wait *= 1 + backoff.jitter * (2 * self._rand() - 1)
            identity.next_rotation = self._clock() + wait
        detail = f"CA unreachable (try {identity.failures}); next try in {wait:.3f}s"
        self._emit(EventKind.CERT_RETRY, identity.subject, detail)

    def _due(self, identity: _Identity) -> bool:
        return (
            not (identity.blocked or self._all_blocked) and identity.next_rotation <= self._clock()
        )

    def _rotate(self, identity: _Identity) -> None:
        with self._wake:
            # Checked and done under the lock: unblock() and the thread may both try,
            # and a block or unregister may have come in since the caller looked.
            if not self._due(identity) or self._identities.get(identity.dir) is not identity:
                return
            try:
                detail = self._issue_locked(identity, identity.ttl)
            except Exception:
                _log.exception("rotation of %s failed; retry in %ss", identity.dir, RETRY_AFTER_S)
                identity.next_rotation = self._clock() + RETRY_AFTER_S
                return
        self._emit(EventKind.CERT_ROTATED, identity.subject, detail)

    # -- helpers ----------------------------------------------------------------

    def _install(
        self, identity: _Identity, ttl: dt.timedelta, kind: EventKind, note: str = ""
    ) -> None:
        with self._wake:
            detail = self._issue_locked(identity, ttl, note)
        self._emit(kind, identity.subject, detail)

    def _issue_locked(self, identity: _Identity, ttl: dt.timedelta, note: str = "") -> str:
        """Issue and install a certificate (the caller holds the lock); the event detail."""
        issued_clock = self._clock()
        # The certificate lives at least ``ttl``, so the rotation at ``ttl / 2``
        # always comes at least half a TTL before it expires.
        issued = issue_for_at_least(self.ca, identity.spiffe_id, ttl)
        write_identity(identity.dir, issued, self.ca.ca_pem)
        identity.serial = issued.serial
        identity.not_after = x509.load_pem_x509_certificate(issued.cert_pem).not_valid_after_utc
        share = self._ratio + self._jitter * (2 * self._rand() - 1) if self._jitter else self._ratio
        identity.next_rotation = issued_clock + ttl.total_seconds() * share
        identity.failures = 0
        self._wake.notify_all()
        return _detail(issued.serial, identity.not_after, note)

    def _emit(self, kind: EventKind, subject: str, detail: str) -> None:
        # Called outside the lock: a subscriber of the event log may read status().
        _log.info("%s %s: %s", kind.value, subject, detail)
        if self._events is not None:
            self._events(kind.value, subject, detail)

    def _get(self, identity_dir: Path) -> _Identity:
        with self._lock:
            try:
                return self._identities[identity_dir]
            except KeyError:
                raise ValueError(f"{identity_dir} is not registered with the cert agent") from None

    def _status_of(self, identity: _Identity) -> IdentityStatus:
        with self._lock:
            return IdentityStatus(
                dir=identity.dir,
                subject=identity.subject,
                spiffe_id=identity.spiffe_id,
                serial=identity.serial,
                not_after=identity.not_after,
                blocked=identity.blocked or self._all_blocked,
                next_rotation=identity.next_rotation,
            )
