"""What a restarted mesh or ambient proxy waits for: its certificate and its config.

In Istio (1.28.0) a sidecar's Envoy that exits takes pilot-agent with it; the container
restarts, and the new Envoy serves only after the agent got a certificate from the CA
(a fresh CSR, ``pkg/istio-agent``) and istiod answered its first xDS requests (a full
push to a new connection). A ztunnel that restarts fetches a certificate for every pod
on its node the same way. During a control-plane outage neither can happen, so the proxy
does not come back.

:class:`RestartFetch` gives each proxy a supervisor restart gate
(:attr:`~chaos.platforms.local.processes.ProcessSpec.restart_gate`) that does exactly
that, as a real dependency: while the CA or the control plane is out it holds the
restart (with the reason); once both answer it re-issues the proxy's certificates
through the cert agent (journaled ``cert_issued``) and has the mesh control plane
write all of its xDS resources (``config_pushed``) on a worker thread, and lets the
restart through only when both are done. The restart latency is therefore the
backoff plus the certificate and config fetch, and the journal shows each step. An
identity whose rotation a fault blocked keeps its certificate (the CA does not issue
for it), as a restarted proxy would reuse nothing else.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from chaos.platforms.local.certagent import CertAgent
from chaos.platforms.local.controlplane import MeshControlPlane

#: The reason a restart is held while its fetch runs.
FETCHING = "fetching certificate and config"


@dataclass
class _Fetch:
    thread: threading.Thread | None = None
    error: str | None = None
    done: threading.Event = field(default_factory=threading.Event)


class Dependencies(Protocol):
    """Where a restarted proxy fetches from (a topology: read when a gate is asked)."""

    @property
    def cert_agent(self) -> CertAgent | None: ...

    @property
    def control_plane(self) -> MeshControlPlane | None: ...

    @property
    def cert_ttl(self) -> dt.timedelta: ...


class RestartFetch:
    """Restart gates that fetch a proxy's certificate and config before it starts again.

    The cert agent and control plane of ``deps`` are read when a gate is asked (a
    topology creates them after its process specs); ``cert_ttl`` is the lifetime issued.
    """

    def __init__(self, deps: Dependencies) -> None:
        self._deps = deps
        self._lock = threading.Lock()
        self._fetches: dict[str, _Fetch] = {}

    def gate(
        self, proxy: str, identity_dirs: Sequence[Path], pod: str | None = None
    ) -> Callable[[], str | None]:
        """The restart gate of ``proxy``: ``identity_dirs`` are its certificates, ``pod``
        the mesh pod whose config the control plane serves it (None: no xDS client)."""
        return lambda: self._ask(proxy, tuple(identity_dirs), pod)

    def _unreachable(self) -> str | None:
        agent, control_plane = self._deps.cert_agent, self._deps.control_plane
        if agent is not None and not agent.ca_reachable:
            return "CA unreachable (certificate fetch)"
        if control_plane is not None and control_plane.paused:
            return "control plane unreachable (config fetch)"
        return None

    def _ask(self, proxy: str, dirs: tuple[Path, ...], pod: str | None) -> str | None:
        with self._lock:
            fetch = self._fetches.get(proxy)
            if fetch is None:
                reason = self._unreachable()
                if reason is not None:
                    return reason
                fetch = _Fetch()
                fetch.thread = threading.Thread(
                    target=self._run,
                    args=(fetch, dirs, pod),
                    name=f"restart-fetch-{proxy}",
                    daemon=True,
                )
                self._fetches[proxy] = fetch
                fetch.thread.start()
                return FETCHING
            if not fetch.done.is_set():
                return FETCHING
            del self._fetches[proxy]  # the next crash fetches again
            if fetch.error is not None:
                return f"fetch failed: {fetch.error}"
            return None

    def _run(self, fetch: _Fetch, dirs: tuple[Path, ...], pod: str | None) -> None:
        try:
            agent = self._deps.cert_agent
            if agent is not None:
                blocked = {s.dir for s in agent.status() if s.blocked}
                for directory in dirs:
                    if directory not in blocked:
                        agent.issue_now(directory, self._deps.cert_ttl)
            control_plane = self._deps.control_plane
            if control_plane is not None and pod is not None:
                control_plane.full_push(pod)
        except Exception as exc:  # reported as the held reason; retried
            fetch.error = str(exc) or type(exc).__name__
        finally:
            fetch.done.set()

    def close(self) -> None:
        """Wait briefly for fetches still running (they only write files)."""
        with self._lock:
            threads = [f.thread for f in self._fetches.values() if f.thread is not None]
        for thread in threads:
            thread.join(timeout=5.0)
