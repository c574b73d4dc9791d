"""The cert agent: rotation at half-life, blocking (real expiry), unblock, forced re-issue.

Real CA, real files, real thread; TTLs of one to two seconds keep each test short.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from chaos.experiment import Setup
from chaos.platforms.base import EventKind
from chaos.platforms.local.certagent import (
    CertAgent,
    IdentityStatus,
    init_identity,
    issue_for_at_least,
)
from chaos.platforms.local.events import EventLog
from chaos.platforms.shared.layout import spiffe_id
from chaos.platforms.shared.pki import CertificateAuthority, read_certificate

SPIFFE = spiffe_id(Setup.MESH, "checkout")
TTL = dt.timedelta(seconds=2)
#: How long a test waits for the agent's thread to do what is due; only a limit on
#: waiting (a loaded machine wakes threads late), never a bound a result is judged by:
#: when the agent acted is read from its own record (its schedule and its events).
WAIT_S = 10.0


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority.create()


@pytest.fixture
def log() -> EventLog:
    return EventLog()


@pytest.fixture
def agent(ca: CertificateAuthority, log: EventLog) -> Iterator[CertAgent]:
    with CertAgent(ca, events=log.append) as running:
        yield running
    assert not [t for t in threading.enumerate() if t.name == "cert-agent"]


def serial_of(directory: Path) -> int:
    return read_certificate(directory).serial_number


def wait_for_serial_change(directory: Path, old: int, timeout_s: float) -> float | None:
    """Poll the installed file (what Envoy would see); the monotonic time it changed."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if serial_of(directory) != old:
            return time.monotonic()
        time.sleep(0.01)
    return None


def wait_until_expired(status: IdentityStatus, timeout_s: float = 2.0) -> None:
    """Sleep until the certificate's notAfter has passed (it ends on a whole second)."""
    left = (status.not_after - dt.datetime.now(dt.UTC)).total_seconds()
    assert left < timeout_s, f"certificate would only expire in {left:.2f}s"
    time.sleep(max(0.0, left) + 0.02)


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def test_issue_lives_at_least_its_ttl(ca: CertificateAuthority) -> None:
    for ttl_s in (0.3, 1.0, 1.5, 2.0):
        before = utc_now()
        issued = issue_for_at_least(ca, SPIFFE, dt.timedelta(seconds=ttl_s))
        after = utc_now()
        not_after = x509.load_pem_x509_certificate(issued.cert_pem).not_valid_after_utc
        assert not_after == issued.not_after  # a whole second: nothing cut off
        assert before + dt.timedelta(seconds=ttl_s) <= not_after
        assert not_after < after + dt.timedelta(seconds=ttl_s + 1)


def test_init_identity_is_the_sidecar_init_step(ca: CertificateAuthority, tmp_path: Path) -> None:
    directory = tmp_path / "frontend-0" / "certs"
    issued = init_identity(ca, directory, SPIFFE, dt.timedelta(minutes=5))
    cert = read_certificate(directory)
    assert cert.serial_number == issued.serial
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [SPIFFE]
    again = init_identity(ca, directory, SPIFFE, dt.timedelta(minutes=5))
    assert serial_of(directory) == again.serial != issued.serial


def test_register_issues_at_once(agent: CertAgent, log: EventLog, tmp_path: Path) -> None:
    directory = tmp_path / "checkout-0" / "certs"
    before, before_utc = time.monotonic(), utc_now()
    status = agent.register(directory, SPIFFE, dt.timedelta(minutes=10))
    after, after_utc = time.monotonic(), utc_now()
    assert serial_of(directory) == status.serial
    assert status.subject == "checkout-0" and status.spiffe_id == SPIFFE and not status.blocked
    # lives at least its TTL, cut to the next whole second
    assert before_utc + dt.timedelta(seconds=600) <= status.not_after
    assert status.not_after < after_utc + dt.timedelta(seconds=601)
    assert before + 300 <= status.next_rotation <= after + 300  # half of the TTL
    (event,) = log.events(EventKind.CERT_ISSUED, "checkout-0")
    assert f"serial={status.serial:x}" in event.detail
    assert agent.status() == [agent.status_of(directory)]
    with pytest.raises(ValueError, match="already registered"):
        agent.register(directory, SPIFFE, TTL)


def test_rotates_at_half_of_the_lifetime(agent: CertAgent, log: EventLog, tmp_path: Path) -> None:
    directory = tmp_path / "certs-a"
    issued_at = time.monotonic()
    first = agent.register(directory, SPIFFE, TTL)
    registered = time.monotonic()
    # the agent's schedule: half of the 2 s lifetime after it issued the certificate
    assert issued_at + 1.0 <= first.next_rotation <= registered + 1.0
    changed = wait_for_serial_change(directory, first.serial, timeout_s=WAIT_S)
    assert changed is not None, "the agent never rotated"
    rotated = log.wait_for(EventKind.CERT_ROTATED, directory.name, timeout_s=WAIT_S)
    assert rotated is not None
    assert rotated.t >= first.next_rotation, "rotated before its half-life"
    second = agent.status_of(directory)
    assert f"serial={second.serial:x}" in rotated.detail
    assert second.serial == serial_of(directory) != first.serial
    assert second.not_after > first.not_after
    assert rotated.detail.endswith(f"not_after={second.not_after.isoformat()}")
    # And again: rotation keeps going at every half-life of the new certificate.
    assert second.next_rotation >= first.next_rotation + 1.0
    third_at = wait_for_serial_change(directory, second.serial, timeout_s=WAIT_S)
    assert third_at is not None
    third = log.wait_for(EventKind.CERT_ROTATED, directory.name, after=rotated.t, timeout_s=WAIT_S)
    assert third is not None and third.t >= second.next_rotation


def test_each_identity_on_its_own_schedule(agent: CertAgent, tmp_path: Path) -> None:
    short, long_ = tmp_path / "short", tmp_path / "long"
    s0 = agent.register(short, SPIFFE, dt.timedelta(seconds=1)).serial
    l0 = agent.register(long_, SPIFFE, dt.timedelta(seconds=60)).serial
    assert wait_for_serial_change(short, s0, timeout_s=WAIT_S) is not None
    assert serial_of(long_) == l0


def test_block_lets_the_certificate_really_expire(
    agent: CertAgent, log: EventLog, tmp_path: Path
) -> None:
    target, other = tmp_path / "target", tmp_path / "other"
    agent.register(target, SPIFFE, dt.timedelta(seconds=0.5))
    o0 = agent.register(other, SPIFFE, dt.timedelta(seconds=0.5)).serial
    agent.block(target)
    # The certificate as blocked: the agent's thread may have rotated it once before
    # block() on a loaded machine (half-life 0.25 s); from here on it must not.
    blocked = agent.status_of(target)
    rotations = len(log.events(EventKind.CERT_ROTATED, "target"))
    assert blocked.blocked and not agent.status_of(other).blocked
    wait_until_expired(blocked)
    cert = read_certificate(target)
    assert cert.serial_number == blocked.serial, "a blocked identity was rotated"
    assert cert.not_valid_after_utc < utc_now(), "the certificate did not expire"
    assert agent.status_of(target).expired
    assert len(log.events(EventKind.CERT_ROTATED, "target")) == rotations
    rotated = wait_for_serial_change(other, o0, timeout_s=WAIT_S)
    assert rotated is not None, "blocking one identity stopped the others"


def test_unblock_reissues_at_once(ca: CertificateAuthority, log: EventLog, tmp_path: Path) -> None:
    # Re-issued by unblock() itself, before it returns: this agent's thread never runs
    # and its clock is the test's, so nothing else can have rotated it (no race, no sleep).
    now = [1000.0]
    agent = CertAgent(ca, events=log.append, clock=lambda: now[0])
    directory = tmp_path / "certs-b"
    first = agent.register(directory, SPIFFE, dt.timedelta(seconds=1))
    agent.block(directory)
    now[0] += 0.6  # past half-life
    assert serial_of(directory) == first.serial
    agent.unblock(directory)
    assert serial_of(directory) != first.serial
    assert not agent.status_of(directory).blocked
    assert log.events(EventKind.CERT_ROTATED, "certs-b")


def test_unblock_before_half_life_waits_for_it(agent: CertAgent, tmp_path: Path) -> None:
    directory = tmp_path / "certs-c"
    first = agent.register(directory, SPIFFE, TTL)
    agent.block(directory)
    agent.unblock(directory)
    assert serial_of(directory) == first.serial  # not due: nothing to re-issue


def test_block_all_is_a_ca_outage(agent: CertAgent, log: EventLog, tmp_path: Path) -> None:
    dirs = [tmp_path / f"pod-{n}" for n in range(3)]
    firsts = [agent.register(d, SPIFFE, dt.timedelta(seconds=0.5)) for d in dirs]
    serials = [f.serial for f in firsts]
    agent.block()
    assert all(s.blocked for s in agent.status())
    agent.block(dirs[0])  # the target of a cert-expiry fault during the outage
    wait_until_expired(max(firsts, key=lambda f: f.not_after))
    assert [serial_of(d) for d in dirs] == serials
    assert all(s.expired for s in agent.status())
    agent.unblock()  # the outage ends; the cert-expiry block stays
    assert serial_of(dirs[0]) == serials[0]
    assert all(serial_of(d) != s for d, s in zip(dirs[1:], serials[1:], strict=True))
    assert agent.status_of(dirs[0]).blocked
    agent.unblock(dirs[0])
    assert serial_of(dirs[0]) != serials[0]
    assert len(log.events(EventKind.CERT_ROTATED)) == 3


def test_install_short_lived_then_issue_now(
    agent: CertAgent, log: EventLog, tmp_path: Path
) -> None:
    directory = tmp_path / "certs-d"
    agent.register(directory, SPIFFE, dt.timedelta(minutes=10))
    agent.block(directory)
    before = utc_now()
    short = agent.install_short_lived(directory, dt.timedelta(seconds=0.3))
    after = utc_now()
    assert before + dt.timedelta(seconds=0.3) <= short.not_after
    assert short.not_after < after + dt.timedelta(seconds=1.3)
    assert read_certificate(directory).serial_number == short.serial
    wait_until_expired(short)
    assert agent.status_of(directory).expired
    assert read_certificate(directory).not_valid_after_utc < utc_now()
    # The revert: force a fresh certificate with the identity's own TTL, even while blocked.
    forced = utc_now()
    fresh = agent.issue_now(directory)
    assert fresh.serial == serial_of(directory) != short.serial
    assert fresh.not_after >= forced + dt.timedelta(minutes=10)
    details = [e.detail for e in log.events(EventKind.CERT_ISSUED, "certs-d")]
    assert len(details) == 3
    assert "short-lived" in details[1] and details[2].endswith("forced")


def test_short_lived_unblocked_is_rotated_at_its_half_life(
    agent: CertAgent, log: EventLog, tmp_path: Path
) -> None:
    directory = tmp_path / "certs-e"
    agent.register(directory, SPIFFE, dt.timedelta(minutes=10))
    installed = time.monotonic()
    short = agent.install_short_lived(directory, dt.timedelta(seconds=1))
    assert installed + 0.5 <= short.next_rotation <= time.monotonic() + 0.5
    changed = wait_for_serial_change(directory, short.serial, timeout_s=WAIT_S)
    assert changed is not None
    rotated = log.wait_for(EventKind.CERT_ROTATED, "certs-e", timeout_s=WAIT_S)
    assert rotated is not None and rotated.t >= short.next_rotation
    # the rotation brings back the identity's own 10-minute TTL
    assert agent.status_of(directory).not_after >= short.not_after + dt.timedelta(minutes=9)


def test_unknown_identity_and_bad_ttl(agent: CertAgent, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not registered"):
        agent.block(tmp_path / "nope")
    with pytest.raises(ValueError, match="positive"):
        agent.register(tmp_path / "x", SPIFFE, dt.timedelta(0))


def test_unregister_stops_rotation(agent: CertAgent, tmp_path: Path) -> None:
    directory = tmp_path / "certs-f"
    first = agent.register(directory, SPIFFE, dt.timedelta(seconds=1)).serial
    agent.unregister(directory)
    time.sleep(0.7)
    assert serial_of(directory) == first
    assert agent.status() == []


def test_no_rotation_before_start_and_none_after_close(
    ca: CertificateAuthority, tmp_path: Path
) -> None:
    directory = tmp_path / "certs-g"
    agent = CertAgent(ca)
    first = agent.register(directory, SPIFFE, dt.timedelta(seconds=1)).serial
    time.sleep(0.6)
    assert serial_of(directory) == first  # no thread yet
    agent.start()
    second_at = wait_for_serial_change(directory, first, timeout_s=WAIT_S)
    assert second_at is not None  # overdue at start: rotated at once
    agent.close()
    agent.close()
    after_close = serial_of(directory)
    time.sleep(0.7)
    assert serial_of(directory) == after_close


def test_idle_agent_sleeps(ca: CertificateAuthority, tmp_path: Path) -> None:
    # A busy loop would burn a core; the thread must sleep on its condition variable.
    with CertAgent(ca) as agent:
        agent.register(tmp_path / "idle", SPIFFE, dt.timedelta(minutes=10))
        cpu_before = time.process_time()
        time.sleep(0.5)
        used = time.process_time() - cpu_before
    assert used < 0.1, f"process used {used:.3f}s CPU in 0.5s while idle"


def test_failed_first_issue_leaves_nothing_registered(agent: CertAgent, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(OSError):
        agent.register(blocker / "certs", SPIFFE, TTL)
    assert agent.status() == []
