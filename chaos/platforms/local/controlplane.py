"""The mesh's local control plane (istiod's config role): xDS as files the proxies watch.

For each mesh pod it renders the listeners, clusters and route configs
(:func:`~chaos.platforms.local.envoy_mesh.mesh_resources`) and writes them as
discovery responses into the pod's watched directories (write a temporary
file, then rename it in: Envoy reloads on the rename and never sees half a
file). See :mod:`chaos.platforms.local.envoy_mesh` for the paths.

* :meth:`MeshControlPlane.push_fault` rewrites one route config (no listener
  drain); :meth:`MeshControlPlane.push_jwks` rewrites every proxy's ``jwt_authn``
  filter config (ECDS, no drain either).
* :meth:`MeshControlPlane.pause` simulates an outage: pushes are recorded and
  only written on :meth:`MeshControlPlane.resume` (the latest state wins).
* :meth:`MeshControlPlane.wait_applied` polls a proxy's ``/config_dump`` until it
  runs the version the control plane wrote: the push-to-effect propagation time.

Every written push emits ``config_pushed`` (subject: the proxy name, detail:
what and which version) through the ``events`` callback. The ingress is a client too,
for its ``frontend`` cluster only (CDS, as istiod feeds a gateway). When a pod leaves
or re-enters its callers' endpoints (:meth:`MeshControlPlane.set_endpoint_ready`, after
the debounce) it emits ``endpoints_removed`` / ``endpoints_restored`` (subject: the pod).
:meth:`MeshControlPlane.full_push` writes everything a restarted proxy fetches.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, replace

from chaos.errors import PlatformError
from chaos.experiment import Setup
from chaos.platforms.local.envoy_mesh import (
    ROUTE_NAMES,
    MeshState,
    mesh_resources,
    mesh_xds_paths,
)
from chaos.platforms.local.envoy_process import write_json_atomically
from chaos.platforms.local.envoy_sidecar import ingress_cds_path, ingress_cluster
from chaos.platforms.shared.envoy_common import (
    TYPE_CLUSTER,
    Direction,
    ProxyOptions,
    discovery_response,
)
from chaos.platforms.shared.envoy_faults import FaultConfig
from chaos.platforms.shared.layout import Pod, TopologyLayout

#: ``events(kind, subject, detail)``; ``EventLog.append`` fits.
EventSink = Callable[[str, str, str], object]
CONFIG_PUSHED = "config_pushed"
ENDPOINTS_REMOVED = "endpoints_removed"
ENDPOINTS_RESTORED = "endpoints_restored"
#: The ingress, as a client of the control plane (its ``frontend`` cluster by CDS).
INGRESS = "ingress"


@dataclass(frozen=True)
class PushResult:
    """What a push wrote: the proxy, the resource and its new version (None while paused)."""

    proxy: str
    resource: str
    version: str | None
    written_at: float | None


class MeshControlPlane:
    """Renders and writes the xDS files of every mesh proxy of a topology."""

    def __init__(
        self,
        layout: TopologyLayout,
        opts: ProxyOptions | None = None,
        *,
        events: EventSink | None = None,
        jwks_json: str | None = None,
    ) -> None:
        if layout.setup is not Setup.MESH:
            raise ValueError(f"the mesh control plane serves the mesh setup, not {layout.setup}")
        self.layout = layout
        self.opts = opts or ProxyOptions()
        self._events = events
        self._lock = threading.Lock()
        self._paused = False
        self._state: dict[str, MeshState] = {}
        self._versions: dict[tuple[str, str], int] = {}
        self._pending: set[tuple[str, str]] = set()
        control = self.opts.policy(Setup.MESH).control
        self.debounce_s = control.endpoint_debounce_s
        self.debounce_max_s = control.endpoint_debounce_max_s or 10.0
        self._want_unready: frozenset[str] = frozenset()
        self._debounce_first: float | None = None
        self._timer: threading.Timer | None = None
        self._debounce_lock = threading.Lock()
        for pod in layout.pods:
            state = MeshState() if jwks_json is None else MeshState(jwks_json=jwks_json)
            self._state[pod.name] = state
            for resource in ("cds", "jwt", "lds", *ROUTE_NAMES):
                self._write(pod, resource, emit=False)
        self._unready: frozenset[str] = frozenset()
        self._ingress_version = 0
        self._write_ingress(emit=False)

    # -- pushes ------------------------------------------------------------------------

    def push_fault(
        self, pod_name: str, direction: Direction, fault: FaultConfig | None
    ) -> PushResult:
        """Set (or clear, with None) the fault of one direction of one proxy."""
        pod = self.layout.pod(pod_name)
        with self._lock:
            state = self._state[pod.name]
            faults = dict(state.faults)
            faults[direction] = fault
            self._state[pod.name] = replace(state, faults=faults)
            return self._push(pod, ROUTE_NAMES[direction])

    def push_jwks(self, jwks_json: str) -> list[PushResult]:
        """Give every proxy this key set (rewrites their ``jwt_authn`` filter config)."""
        json.loads(jwks_json)  # a malformed set must fail here, not in six proxies
        with self._lock:
            results = []
            for pod in self.layout.pods:
                self._state[pod.name] = replace(self._state[pod.name], jwks_json=jwks_json)
                results.append(self._push(pod, "jwt"))
            return results

    def set_endpoint_ready(self, pod_name: str, ready: bool) -> None:
        """A pod's readiness changed: its callers' endpoints follow after the debounce.

        As istiod does (PILOT_DEBOUNCE_AFTER 100 ms, PILOT_DEBOUNCE_MAX 10 s): the push
        waits until events have been quiet for the debounce, at most the maximum.
        """
        if self.debounce_s is None:
            return
        # Its own lock: this is called from event subscribers (under the event log's lock),
        # and the control plane's lock is held while pushes emit events.
        with self._debounce_lock:
            self._want_unready = (
                self._want_unready - {pod_name} if ready else self._want_unready | {pod_name}
            )
            now = time.monotonic()
            if self._debounce_first is None:
                self._debounce_first = now
            if self._timer is not None:
                self._timer.cancel()
            waited = now - self._debounce_first
            wait = max(0.0, min(self.debounce_s, self.debounce_max_s - waited))
            self._timer = threading.Timer(wait, self._push_endpoints)
            self._timer.daemon = True
            self._timer.start()

    def _push_endpoints(self) -> None:
        with self._debounce_lock:
            self._timer, self._debounce_first = None, None
            unready = frozenset(self._want_unready)
        with self._lock:
            before, self._unready = self._unready, unready
            for pod in self.layout.pods:
                state = self._state[pod.name]
                if state.unready != unready:
                    self._state[pod.name] = replace(state, unready=unready)
                    self._push(pod, "cds")
            # The ingress has one cluster, frontend: it changes with a frontend pod only.
            if any(self.layout.pod(n).service == "frontend" for n in before ^ unready):
                if self._paused:
                    self._pending.add((INGRESS, "cds"))
                else:
                    self._write_ingress(emit=True)
        if self._events is not None:
            after = f"after the {self.debounce_s or 0:g} s debounce"
            for name in sorted(unready - before):
                self._events(ENDPOINTS_REMOVED, name, f"not ready: out of the endpoints {after}")
            for name in sorted(before - unready):
                self._events(ENDPOINTS_RESTORED, name, f"ready: back in the endpoints {after}")

    def full_push(self, pod_name: str) -> list[PushResult]:
        """Everything a (re)connecting proxy fetches: all its resources, written afresh.

        None while paused (a restart is held then: it cannot fetch its config).
        """
        pod = self.layout.pod(pod_name)
        with self._lock:
            return [self._push(pod, resource) for resource in ("cds", "jwt", "lds", *ROUTE_NAMES)]

    def _write_ingress(self, *, emit: bool) -> PushResult:
        self._ingress_version += 1
        version = str(self._ingress_version)
        cluster = ingress_cluster(self.layout, self.opts, self._unready)
        write_json_atomically(
            ingress_cds_path(self.layout),
            discovery_response([{"@type": TYPE_CLUSTER, **cluster}], version),
        )
        if emit and self._events is not None:
            self._events(CONFIG_PUSHED, INGRESS, f"cds version {version}")
        return PushResult(INGRESS, "cds", version, time.monotonic())

    def close(self) -> None:
        """Stop a pending endpoint push."""
        with self._debounce_lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    def pause(self) -> None:
        """Control-plane outage: from now on pushes queue up until :meth:`resume`."""
        with self._lock:
            self._paused = True

    def resume(self) -> list[PushResult]:
        """End the outage and write everything that was pushed meanwhile."""
        with self._lock:
            self._paused = False
            pending = sorted(self._pending)
            self._pending.clear()
            return [
                self._write_ingress(emit=True)
                if pod == INGRESS
                else self._write(self.layout.pod(pod), res, emit=True)
                for pod, res in pending
            ]

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def pending(self) -> int:
        """Pushes queued by an outage, waiting for :meth:`resume`."""
        with self._lock:
            return len(self._pending)

    def state(self, pod_name: str) -> MeshState:
        """What the control plane wants ``pod_name`` to run (pushed or queued)."""
        with self._lock:
            return self._state[pod_name]

    def version(self, pod_name: str, resource: str) -> str:
        """The last written version of ``resource`` (``lds``, ``cds``, ``jwt``, ``inbound``...)."""
        with self._lock:
            return str(self._versions[(pod_name, resource)])

    # -- propagation -------------------------------------------------------------------

    def wait_applied(
        self,
        pod_name: str,
        direction: Direction,
        *,
        since: float | None = None,
        timeout_s: float = 5.0,
        interval_s: float = 0.005,
    ) -> float:
        """Seconds until the proxy reports the route config version last written.

        Measured from ``since`` (a ``time.monotonic()`` value such as
        :attr:`PushResult.written_at`), else from the call. Raises
        :class:`PlatformError` when the proxy does not catch up within ``timeout_s``.
        """
        pod = self.layout.pod(pod_name)
        want = self.version(pod.name, ROUTE_NAMES[direction])
        started = time.monotonic() if since is None else since
        deadline = time.monotonic() + timeout_s
        seen: str | None = None
        while True:
            seen = route_config_version(pod, ROUTE_NAMES[direction])
            if seen == want:
                return time.monotonic() - started
            if time.monotonic() >= deadline:
                raise PlatformError(
                    f"{pod.proxy_name} still runs route config {ROUTE_NAMES[direction]!r} "
                    f"version {seen} after {timeout_s} s (want {want})"
                )
            time.sleep(interval_s)

    # -- internals ---------------------------------------------------------------------

    def _push(self, pod: Pod, resource: str) -> PushResult:
        if self._paused:
            self._pending.add((pod.name, resource))
            return PushResult(pod.proxy_name or pod.name, resource, None, None)
        return self._write(pod, resource, emit=True)

    def _write(self, pod: Pod, resource: str, *, emit: bool) -> PushResult:
        version = self._versions.get((pod.name, resource), 0) + 1
        self._versions[(pod.name, resource)] = version
        rendered = mesh_resources(self.layout, pod, self.opts, self._state[pod.name])
        paths = mesh_xds_paths(pod)
        if resource == "lds":
            write_json_atomically(paths.lds, discovery_response(rendered.listeners, str(version)))
        elif resource == "jwt":
            write_json_atomically(paths.jwt, discovery_response([rendered.jwt], str(version)))
        elif resource == "cds":
            write_json_atomically(paths.cds, discovery_response(rendered.clusters, str(version)))
        else:
            direction: Direction = "inbound" if resource == ROUTE_NAMES["inbound"] else "outbound"
            write_json_atomically(
                paths.rds[direction],
                discovery_response([rendered.routes[direction]], str(version)),
            )
        written_at = time.monotonic()
        name = pod.proxy_name or pod.name
        if emit and self._events is not None:
            self._events(CONFIG_PUSHED, name, f"{resource} version {version}")
        return PushResult(name, resource, str(version), written_at)


def route_config_version(pod: Pod, route_name: str, timeout_s: float = 1.0) -> str | None:
    """The version of ``route_name`` a running proxy reports (None when unknown/unreachable)."""
    url = f"{pod.admin_url}/config_dump?resource=dynamic_route_configs"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as answer:
            dump = json.loads(answer.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None
    for entry in dump.get("configs", []):
        config = entry.get("route_config", {})
        if config.get("name") == route_name:
            version = entry.get("version_info")
            return str(version) if version is not None else None
    return None


class KeySetPoller:
    """istiod's ``jwksUri`` fetch: the key set is read every ``refresh_s``, from the start.

    A key the identity provider publishes reaches the proxies at the first fetch after
    it (istiod's PILOT_JWT_PUB_KEY_REFRESH_INTERVAL, 20 min by default), not at once.
    ``refresh_s`` None: never re-read.
    """

    def __init__(
        self, fetch: Callable[[], str], push: Callable[[str], object], refresh_s: float | None
    ) -> None:
        self._fetch = fetch
        self._push = push
        self.refresh_s = refresh_s
        self._seen = fetch()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> KeySetPoller:
        if self.refresh_s is not None and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="jwks-poller", daemon=True)
            self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def poll(self) -> bool:
        """One fetch: push the key set if it changed since the last; whether it did."""
        current = self._fetch()
        if current == self._seen:
            return False
        self._seen = current
        self._push(current)
        return True

    def _run(self) -> None:
        assert self.refresh_s is not None
        while not self._stop.wait(self.refresh_s):
            self.poll()
