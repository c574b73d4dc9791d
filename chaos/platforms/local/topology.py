"""A running local topology: the demo chain of one setup, on real Envoy processes.

:class:`LocalTopology` is the composition root of the local platform. Entering
it checks the input (Envoy binary, free addresses), creates the CA and the
identity provider, runs the init step (identities, key sets, Envoy configs),
starts every process under the :class:`~.supervisor.Supervisor` and waits for
readiness; leaving it tears everything down in reverse order, through an
``ExitStack``, whatever happened in between.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from chaos.errors import InputError, StartupError
from chaos.experiment import Setup
from chaos.platforms.base import Event, EventKind, utc_now
from chaos.platforms.local import registry
from chaos.platforms.local.backoff import BackoffPolicy
from chaos.platforms.local.certagent import CertAgent, init_identity
from chaos.platforms.local.controlplane import KeySetPoller, MeshControlPlane
from chaos.platforms.local.envoy_config import (
    ProxyConfig,
    ProxyOptions,
    envoy_binary,
    proxy_configs,
    sidecar_jwks_path,
)
from chaos.platforms.local.events import EventLog
from chaos.platforms.local.probes import HttpProbe
from chaos.platforms.local.processes import ProcessSpec
from chaos.platforms.local.restartfetch import RestartFetch
from chaos.platforms.local.startcheck import (
    check_addresses_free,
    explain_startup_failure,
    free_port,
)
from chaos.platforms.local.supervisor import Supervisor
from chaos.platforms.local.topology_status import RunLabel, topology_status
from chaos.platforms.shared.dataplane import SetupDataPlane
from chaos.platforms.shared.idp import IdentityProvider, IdpServer
from chaos.platforms.shared.layout import (
    DEFAULT_SLOT,
    JWT_AUDIENCE,
    PROCESS_LEDGER,
    SERVICES,
    Pod,
    Port,
    TopologyLayout,
    build_layout,
    default_ingress_port,
    spiffe_id,
)
from chaos.platforms.shared.pki import CertificateAuthority

#: Events after which ``status`` is worth rewriting.
_STATUS_EVENTS = frozenset(
    {EventKind.READY, EventKind.UNREADY, EventKind.CRASHED, EventKind.RESTARTED, EventKind.STOPPED}
)


@dataclass(frozen=True)
class TopologyOptions:
    """What a caller may choose about a local topology."""

    setup: Setup
    run_dir: Path | None = None
    slot: int | None = None
    #: None: 18000 + slot; 0: a free port picked at start.
    ingress_port: int | None = None
    backoff: BackoffPolicy = field(default_factory=BackoffPolicy)
    #: Lifetime of workload certificates (None: the setup's data plane, Istio's 24 h).
    cert_ttl: dt.timedelta | None = None
    proxy: ProxyOptions = field(default_factory=ProxyOptions)
    ready_timeout_s: float = 30.0
    #: Record the topology for ``status``/``down`` (off in tests that run many at once).
    publish: bool = True
    registry_dir: Path | None = None
    #: A run's topology (when not ``publish``): recorded as the run's, unclaimed,
    #: so that several runs of one setup (in other slots) are listed side by side.
    run_label: RunLabel | None = None
    #: Put into every child's environment; ``clean`` kills only processes carrying it.
    marker: str = ""
    #: Request headers the apps count as a credential reaching them (``x-chaos-auth``).
    sensitive_headers: tuple[str, ...] = ("authorization",)

    @classmethod
    def for_setup(
        cls,
        setup: str,
        *,
        run_dir: Path | None = None,
        slot: int | None = None,
        ingress_port: int | None = None,
    ) -> TopologyOptions:
        return cls(setup=Setup(setup), run_dir=run_dir, slot=slot, ingress_port=ingress_port)


class LocalTopology:
    """The demo chain of one setup, up while the context is entered."""

    def __init__(self, options: TopologyOptions) -> None:
        self.options = options
        slot = options.slot if options.slot is not None else DEFAULT_SLOT[options.setup]
        if not 1 <= slot <= 254:
            raise InputError(f"--slot must be within 1..254, got {slot}")
        port = options.ingress_port
        if port is None:
            port = default_ingress_port(slot)
        elif not 0 <= port <= 65535:
            raise InputError(f"--ingress-port must be within 0..65535, got {port}")
        elif port == 0:
            port = free_port("127.0.0.1")
        if options.run_dir is None:
            self._owned_dir: tempfile.TemporaryDirectory[str] | None = tempfile.TemporaryDirectory(
                prefix=f"sidecar-chaos-{options.setup.value}-"
            )
            run_dir = Path(self._owned_dir.name)
        else:
            self._owned_dir = None
            run_dir = options.run_dir
        self.layout: TopologyLayout = build_layout(
            options.setup, run_dir.resolve(), slot=slot, ingress_port=port
        )
        self.events = EventLog()
        self.supervisor = Supervisor(
            options.backoff,
            self.events,
            marker=options.marker,
            ledger=self.layout.dir / PROCESS_LEDGER if options.marker else None,
        )
        self.ca = CertificateAuthority.create(f"sidecar-chaos {options.setup.value} CA")
        try:
            # The identity provider writes its keys at once: the run directory must be usable.
            self.layout.dir.mkdir(parents=True, exist_ok=True)
            self.idp = IdentityProvider(
                self.layout.jwt_issuer, JWT_AUDIENCE, key_dir=self.layout.dir / "idp"
            )
        except OSError as exc:
            self._cleanup_dir()
            raise InputError(f"cannot use {run_dir} as run directory: {exc.strerror}") from exc
        self.cert_agent: CertAgent | None = None
        self.control_plane: MeshControlPlane | None = None
        self._fetch = RestartFetch(self)
        self.idp_server: IdpServer | None = None
        self.startup_s = 0.0
        self._stack = contextlib.ExitStack()
        self._status_lock = threading.Lock()
        self._started_utc = ""
        #: Whether the registry may show this topology (off from the start of teardown).
        self._listed = False

    # -- lifecycle -----------------------------------------------------------------

    def __enter__(self) -> LocalTopology:
        started = time.monotonic()
        try:
            self._start()
        except BaseException:
            self._stack.close()
            self._cleanup_dir()
            raise
        self.startup_s = time.monotonic() - started
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Tear everything down (idempotent)."""
        self._stack.close()
        self._cleanup_dir()

    def _cleanup_dir(self) -> None:
        if self._owned_dir is not None:
            self._owned_dir.cleanup()
            self._owned_dir = None

    def _start(self) -> None:
        layout = self.layout
        envoy = envoy_binary()
        if self.options.publish:
            # Claimed before anything starts and released last, so that a second
            # runner of this setup fails at once even while this one is starting.
            claim = registry.claim(layout.setup.value, self.options.registry_dir)
            self._stack.callback(claim.release)
        check_addresses_free(layout.bound_addresses())
        self._started_utc = utc_now()
        layout.dir.mkdir(parents=True, exist_ok=True)
        self._stack.callback(self.events.close)
        self.ca.save(layout.ca_dir)

        self.idp_server = IdpServer(self.idp, layout.idp_address, int(Port.IDP)).start()
        self._stack.callback(self.idp_server.close)

        self._init_identities()
        specs = self._process_specs(envoy)
        self._stack.callback(self.supervisor.close)
        for spec in specs:
            self.supervisor.add(spec)
        self.supervisor.start_all()
        try:
            self.supervisor.wait_ready(timeout_s=self.options.ready_timeout_s)
        except StartupError as exc:
            raise explain_startup_failure(exc, layout.dir) from exc
        if self.options.publish or self._run_label is not None:
            self._listed = True
            self._publish()
            # Unlisted before the processes stop (the stack unwinds in reverse): a run's
            # runner lives on, and must never be shown with a topology that is gone.
            self._stack.callback(self._withdraw)
            self._stack.callback(self.events.subscribe(self._on_event))

    # -- init step -------------------------------------------------------------------

    def _record(self, kind: str, subject: str, detail: str) -> None:
        self.events.append(EventKind(kind), subject, detail)

    def _init_identities(self) -> None:
        """Write every identity, key set and Envoy config the processes need."""
        layout = self.layout
        ttl = self.cert_ttl
        if layout.setup is Setup.BASELINE:
            return  # plaintext, no token check: no identity to write
        if layout.setup is Setup.SIDECAR:
            # The init container's job: written once, never rotated.
            for pod in layout.pods:
                self.idp.write_jwks(sidecar_jwks_path(pod))
                init_identity(self.ca, pod.certs_dir, pod.identity, ttl)
                self._record("cert_issued", pod.name, "init step")
            init_identity(
                self.ca, layout.ingress.dir / "certs", spiffe_id(layout.setup, "ingress"), ttl
            )
            return
        certs = self.policy.identity
        agent = CertAgent(
            self.ca,
            events=self._record,
            backoff=certs.ca_backoff,
            rotation_ratio=certs.rotation_ratio or 0.5,
            rotation_jitter=certs.rotation_jitter,
        )
        self.cert_agent = agent
        for directory, identity in self._agent_identities():
            agent.register(directory, identity, ttl)
        agent.start()
        self._stack.callback(agent.close)
        if layout.setup is Setup.MESH:
            control_plane = MeshControlPlane(
                layout, self.options.proxy, events=self._record, jwks_json=self.idp.jwks_json()
            )
            self.control_plane = control_plane
            # istiod re-reads the key set on its refresh interval, not when the key changes.
            poller = KeySetPoller(
                self.idp.jwks_json, control_plane.push_jwks, self.policy.control.jwks_refresh_s
            )
            poller.start()
            self._stack.callback(poller.close)
            self._stack.callback(control_plane.close)
            if self.policy.control.crash_unready:  # a crashed istio-proxy: pod NotReady
                self._stack.callback(self.events.subscribe(self._endpoint_readiness))

    def _endpoint_readiness(self, event: Event) -> None:
        """A mesh proxy that crashed leaves its service's endpoints; back when ready."""
        control_plane = self.control_plane
        if control_plane is None or event.kind not in (EventKind.CRASHED, EventKind.READY):
            return
        pod = next((p for p in self.layout.pods if (p.proxy_name or p.name) == event.subject), None)
        if pod is not None:
            control_plane.set_endpoint_ready(pod.name, event.kind is EventKind.READY)

    @property
    def policy(self) -> SetupDataPlane:
        """This topology's data plane (the table, with the experiment's deviations)."""
        return self.options.proxy.policy(self.layout.setup)

    @property
    def cert_ttl(self) -> dt.timedelta:
        """The lifetime of workload certificates: the option's, or the data plane's."""
        if self.options.cert_ttl is not None:
            return self.options.cert_ttl
        return dt.timedelta(seconds=self.policy.identity.cert_ttl_s)

    def _agent_identities(self) -> list[tuple[Path, str]]:
        layout = self.layout
        found: list[tuple[Path, str]] = [
            (layout.ingress.dir / "certs", spiffe_id(layout.setup, "ingress"))
        ]
        if layout.setup is Setup.MESH:
            found += [(pod.certs_dir, pod.identity) for pod in layout.pods]
        else:
            # The node proxy holds the certificates of every pod on its node.
            for proxy in layout.node_proxies:
                for name in proxy.pods:
                    pod = layout.pod(name)
                    found.append((proxy.dir / "certs" / pod.name, pod.identity))
            found += [(w.dir / "certs", w.identity) for w in layout.waypoints]
        return found

    # -- processes -------------------------------------------------------------------

    def _process_specs(self, envoy: Path) -> list[ProcessSpec]:
        layout = self.layout
        peer_names = self._peer_names()
        specs = [self._app_spec(pod, peer_names) for pod in layout.pods]
        specs += [self._proxy_spec(envoy, c) for c in proxy_configs(layout, self.options.proxy)]
        return specs

    def _peer_names(self) -> dict[str, str]:
        names = {p.address: p.proxy_name or p.name for p in self.layout.pods}
        names |= {n.address: n.name for n in self.layout.node_proxies}
        names |= {w.address: w.name for w in self.layout.waypoints}
        names[self.layout.ingress.admin_address] = "ingress"
        return names

    def _app_spec(self, pod: Pod, peer_names: dict[str, str]) -> ProcessSpec:
        argv = [
            sys.executable,
            "-m",
            "chaos.platforms.shared.demo_service",
            "--service",
            pod.service,
            "--replica",
            str(pod.replica),
            "--pod",
            pod.name,
            "--node",
            pod.node,
            "--listen",
            f"{pod.address}:{pod.app_port}",
            "--peer-names",
            json.dumps(peer_names),
        ]
        if pod.upstream_url and pod.upstream_host:
            urls = pod.upstream_apps or (pod.upstream_url,)
            for url in urls:
                argv += ["--upstream-url", url]
            argv += ["--upstream-host", pod.upstream_host]
        if pod.service == "payments":
            argv += ["--writes-file", str(pod.dir / "writes.jsonl")]
        argv += ["--sensitive-headers", ",".join(self.options.sensitive_headers)]
        token = self.options.proxy.policy(self.layout.setup).token
        if token.requires(first=pod.service == SERVICES[0]):
            argv.append("--expects-token")  # its proxy refuses a request without a token
        return ProcessSpec(
            name=f"{pod.name}.app",
            argv=argv,
            cwd=pod.dir,
            log_path=pod.dir / "app.log",
            probe=HttpProbe(f"{pod.app_url}/healthz"),
            group=pod.name,
        )

    def _proxy_spec(self, envoy: Path, config: ProxyConfig) -> ProcessSpec:
        config.write()
        return ProcessSpec(
            name=config.name,
            argv=config.argv(envoy),
            cwd=config.dir,
            log_path=config.dir / "envoy.stdout.log",
            probe=HttpProbe(config.ready_url),
            group=config.group,
            restart_gate=self._restart_gate(config),
        )

    def _restart_gate(self, config: ProxyConfig) -> Callable[[], str | None] | None:
        """A restarted proxy serves only after fetching its certificate and config
        (:mod:`~chaos.platforms.local.restartfetch`); None where it reads static files."""
        if not self.policy.control.restart_fetches:
            return None
        dirs = [d for d, _ in self._agent_identities() if d.is_relative_to(config.dir)]
        pod = next((p.name for p in self.layout.pods if p.proxy_name == config.name), None)
        return self._fetch.gate(config.name, dirs, pod)

    # -- status ----------------------------------------------------------------------

    def status(self) -> registry.TopologyStatus:
        """What ``status`` shows: every pod, node proxy, waypoint and the ingress."""
        return topology_status(self.layout, self.supervisor, self._started_utc, self._run_label)

    @property
    def _run_label(self) -> RunLabel | None:
        """The run this topology is listed under; None for ``up``'s (or an unlisted one)."""
        return None if self.options.publish else self.options.run_label

    def _publish(self) -> None:
        with self._status_lock:
            if not self._listed:
                return
            status = self.status()
            if self._run_label is None:
                registry.publish(status, self.options.registry_dir)
                return
            # A run goes on without its record (a read-only state directory, no /proc):
            # being listed by `status` serves the people watching, not the run.
            with contextlib.suppress(OSError, ValueError):
                registry.publish_run(status, self.options.registry_dir)

    def _withdraw(self) -> None:
        with self._status_lock:
            self._listed = False
            if self._run_label is None:
                registry.withdraw(self.layout.setup.value, os.getpid(), self.options.registry_dir)
            else:
                with contextlib.suppress(OSError):
                    registry.withdraw_run(self.status(), self.options.registry_dir)

    def _on_event(self, event: Event) -> None:
        if event.kind in _STATUS_EVENTS:
            self._publish()


def wait_until(predicate: Callable[[], bool], timeout_s: float, interval_s: float = 0.02) -> bool:
    """Poll ``predicate`` until it holds or ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return predicate()


__all__ = ["LocalTopology", "RunLabel", "TopologyOptions", "wait_until"]
