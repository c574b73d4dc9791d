"""The fault mechanisms on Kubernetes; the faults (``chaos.faults``) keep the policy.

Per setup (the issue's table):

* HTTP fault: sidecar, the fault filter's admin ``/runtime_modify`` through a
  port-forward; mesh, the service's VirtualService ``http`` list (the client-side
  proxies apply it); ambient, the same VirtualService, served by the waypoint.
* crash: sidecar, exec ``kill -TERM 1`` in ``envoy-sidecar``; mesh, exec
  ``pilot-agent request POST quitquitquit`` in ``istio-proxy``; ambient, DELETE the
  ztunnel pod of the node (every pod on it is hit).
* cert expiry: sidecar, the certs Secret swapped for a short-lived certificate and
  the pod re-created (its init step copies it); mesh, ``SECRET_TTL`` on the pod
  template and istiod scaled to 0; ambient, ``SECRET_TTL`` on ztunnel and istiod
  scaled to 0.
* control plane: sidecar, Deployments labelled ``sidecar-chaos.dev/role=config-source``
  scaled to 0 (the demo has none: static config); mesh and ambient, istiod scaled
  to 0, then back to the recorded count.
* policy desync: sidecar, ConfigMap ``jwks`` swapped and the pods re-created (they
  read it once at start); mesh and ambient, the RequestAuthentication ``jwks``
  swapped for a key set without the signing key (where one exists).

Every write goes through :class:`~.changes.ClusterWriter` (recorded before it is
made, undone exactly). Counters come from the proxies' admin ``/stats`` through
:class:`~.api.PodExec`. A mesh HTTP fault on one replica reaches every replica of
the service (a VirtualService route has no per-endpoint fault): the site's
``affects`` says so, and the blast radius follows it.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from chaos.errors import FaultError, PlatformError
from chaos.platforms.base import (
    ControlPlaneState,
    Direction,
    HttpFault,
    HttpFaultSite,
    Mechanism,
    Pod,
    ProxyTarget,
    Workload,
)
from chaos.platforms.kubernetes import builders, names
from chaos.platforms.kubernetes.api import (
    CONFIGMAP,
    DAEMONSET,
    DEPLOYMENT,
    POD,
    REQUEST_AUTHENTICATION,
    SECRET,
    VIRTUAL_SERVICE,
    PodState,
)
from chaos.platforms.kubernetes.changes import Change, ClusterWriter
from chaos.platforms.local.envoy_faults import FaultConfig, fault_runtime_values
from chaos.platforms.local.pki import CA_FILE, CERT_FILE, KEY_FILE, CertificateAuthority
from chaos.spec import Setup as SpecSetup

#: Istio's control plane Deployment and node proxy DaemonSet (in ``istio-system``).
ISTIOD = "istiod"
ZTUNNEL = "ztunnel"
#: Deployments of a plain-sidecar namespace that feed its proxies config (scaled to 0 by
#: control-plane-outage). The demo's sidecars have static config: none there.
ROLE_LABEL = "sidecar-chaos.dev/role"
CONFIG_SOURCE = "config-source"
#: The Secret holding the CA that signed the plain sidecars' certificates (``ca.pem`` and
#: ``ca-key.pem``), needed to issue a short-lived one for cert-expiry.
CA_SECRET = "sidecar-chaos-ca"
CA_KEY_FILE = "ca-key.pem"
#: Waypoint pods carry the name of their Gateway in this label.
GATEWAY_NAME_LABEL = "gateway.networking.k8s.io/gateway-name"

_FAULT_SUFFIXES = (".fault.delays_injected", ".fault.aborts_injected")
_TLS_SUFFIXES = (".ssl.fail_verify_error", ".ssl.connection_error", ".upstream_cx_connect_fail")
_DENIED_SUFFIXES = (".jwt_authn.denied", ".rbac.denied")

_SIDECAR = names.Setup.SIDECAR
_MESH = names.Setup.MESH
_AMBIENT = names.Setup.AMBIENT


def demo_workload(setup: names.Setup) -> Workload:
    """The pods of the demo workload in ``setup``: one per Deployment ``<service>-<replica>``."""
    pods = tuple(
        Pod(
            name=names.deployment_name(service, replica),
            service=service,
            node=names.node_of_replica(replica),
            replica=replica,
        )
        for service in names.SERVICES
        for replica in range(names.REPLICAS)
    )
    return Workload(setup=SpecSetup(setup.value), pods=pods)


@dataclass(frozen=True)
class _Site:
    """What an :class:`HttpFaultSite` changes: a proxy's runtime or a VirtualService."""

    via: str  # "runtime" or "vs"
    pod: Pod | None = None
    service: str = ""
    source_labels: tuple[tuple[str, str], ...] | None = None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class KubeFaultOps:
    """:class:`~chaos.platforms.base.FaultOps` on one setup's namespace of a cluster."""

    def __init__(
        self,
        setup: names.Setup,
        workload: Workload,
        writer: ClusterWriter,
        *,
        namespace: str | None = None,
        istio_namespace: str = names.ISTIO_NAMESPACE,
        rollout_timeout_s: float = 120.0,
    ) -> None:
        self._setup = setup
        self._workload = workload
        self.writer = writer
        self.namespace = namespace or names.namespace_of(setup)
        self.istio_namespace = istio_namespace
        self.rollout_timeout_s = rollout_timeout_s
        self._sites: dict[str, _Site] = {}
        self._site_changes: dict[str, list[Change]] = {}
        self._identity_changes: dict[str, list[Change]] = {}
        self._outage_changes: list[Change] = []
        self._key_changes: list[Change] = []
        self._ztunnel_uids: dict[str, set[str]] = {}
        self._desync_jwks: str | None = None

    @property
    def setup(self) -> Any:
        return self._setup

    @property
    def workload(self) -> Workload:
        return self._workload

    @property
    def planning(self) -> bool:
        return self.writer.dry_run

    # -- pods ----------------------------------------------------------------------------

    def proxy_container(self) -> str:
        return names.SIDECAR_CONTAINER if self._setup == _SIDECAR else names.ISTIO_PROXY_CONTAINER

    def live(self, pod: Pod) -> PodState:
        """The running pod of a workload pod (its Deployment's one pod)."""
        labels = {names.LABEL_APP: pod.service, names.LABEL_REPLICA: str(pod.replica)}
        found = [p for p in self.writer.api.list_pods(self.namespace, labels) if not p.deleting]
        if not found:
            raise FaultError(f"no pod of {self.namespace}/{pod.name} is running")
        return sorted(found, key=lambda p: (not p.ready, p.name))[0]

    def _namespace_pods(self) -> list[PodState]:
        return [p for p in self.writer.api.list_pods(self.namespace) if not p.deleting]

    def stats(self, pod: PodState, suffixes: tuple[str, ...]) -> dict[str, int]:
        """Counters of a pod's Envoy (admin port) whose names end with one of ``suffixes``."""
        body = self.writer.pod_exec.http(
            pod.namespace, pod.name, names.ADMIN_PORT, "GET", "/stats?format=json", 3.0
        )
        found: dict[str, int] = {}
        for stat in json.loads(body).get("stats", []):
            name = stat.get("name", "")
            if isinstance(name, str) and name.endswith(suffixes) and "value" in stat:
                found[name] = int(stat["value"])
        return found

    def _counts(self, pods: Sequence[PodState], suffixes: tuple[str, ...]) -> dict[str, int]:
        """Matching counters of every reachable pod, keyed by pod and counter."""
        found: dict[str, int] = {}
        for pod in pods:
            try:
                stats = self.stats(pod, suffixes)
            except (PlatformError, ValueError):
                continue  # restarting or not an Envoy: no reading now
            found |= {f"{pod.name} {name}": value for name, value in stats.items()}
        return found

    # -- HTTP faults ---------------------------------------------------------------------

    def http_fault_sites(self, pods: Sequence[Pod], direction: Direction) -> list[HttpFaultSite]:
        if self._setup == _SIDECAR:
            return [self._runtime_site(p, direction) for p in pods]
        if direction == "inbound":
            services = list(dict.fromkeys(p.service for p in pods))
            return [self._vs_site(s, None, direction) for s in services]
        sites = []
        for pod in pods:
            called = names.CALLS.get(pod.service)
            if called is not None:
                sites.append(self._vs_site(called, pod, direction))
        return sites

    def _runtime_site(self, pod: Pod, direction: Direction) -> HttpFaultSite:
        proxy = f"{pod.name}/{names.SIDECAR_CONTAINER}"
        self._sites[proxy] = _Site("runtime", pod=pod)
        return HttpFaultSite(
            proxy=proxy,
            direction=direction,
            affects=(pod.name,),
            mechanism=(
                f"GET {POD.path(self.namespace, f'<pod of {pod.name}>', 'portforward')}"
                f"?ports={names.ADMIN_PORT}, then POST /runtime_modify ({direction} fault "
                "filter keys) to the sidecar's admin"
            ),
            undo="POST /runtime_modify clearing the same keys (the filter is back at 0 %)",
        )

    def _vs_site(self, service: str, source: Pod | None, direction: Direction) -> HttpFaultSite:
        labels = (
            None
            if source is None
            else ((names.LABEL_APP, source.service), (names.LABEL_REPLICA, str(source.replica)))
        )
        vs = f"VirtualService {self.namespace}/{service}"
        proxy = vs if source is None else f"{vs} from {source.name}"
        self._sites[proxy] = _Site("vs", service=service, source_labels=labels)
        if source is None:
            affects = tuple(p.name for p in self._workload.pods if p.service == service)
            where = "every route of spec.http"
        else:
            affects = (source.name,)
            where = f"a first route of spec.http matching sourceLabels of {source.name}"
        applied_by = (
            f"the {names.waypoint_name(service)} waypoint"
            if self._setup == _AMBIENT
            else "the client-side istio-proxy sidecars"
        )
        return HttpFaultSite(
            proxy=proxy,
            direction=direction,
            affects=affects,
            mechanism=(
                f"PUT {VIRTUAL_SERVICE.path(self.namespace, service)} with the whole spec.http "
                f"list as read plus a fault on {where} (applied by {applied_by})"
            ),
            undo="PUT spec.http back exactly as read before the fault",
        )

    def _site(self, site: HttpFaultSite) -> _Site:
        if site.proxy not in self._sites:
            for direction in ("inbound", "outbound"):
                self.http_fault_sites(self._workload.pods, direction)
        found = self._sites.get(site.proxy)
        if found is None:
            raise FaultError(f"unknown HTTP fault site {site.proxy!r}")
        return found

    def set_http_fault(self, site: HttpFaultSite, fault: HttpFault) -> None:
        target = self._site(site)
        changes = self._site_changes.setdefault(site.proxy, [])
        if target.via == "runtime":
            assert target.pod is not None
            config = FaultConfig(
                delay_percent=fault.percent if fault.delay_ms is not None else 0,
                delay_ms=fault.delay_ms or 1,
                abort_percent=fault.percent if fault.abort_status is not None else 0,
                abort_status=fault.abort_status or 503,
            )
            values = fault_runtime_values(site.direction, config)
            undo = fault_runtime_values(site.direction, None)
            pod_name = target.pod.name if self.planning else self.live(target.pod).name
            change = self.writer.runtime(
                self.namespace, pod_name, names.SIDECAR_CONTAINER, names.ADMIN_PORT, values, undo
            )
        else:
            istio = builders.istio_fault(
                fault.percent, delay_ms=fault.delay_ms, abort_status=fault.abort_status
            )
            change = self._vs_fault(target, istio)
        if change is not None and change not in changes:
            changes.append(change)

    def _vs_fault(self, target: _Site, fault: dict[str, Any]) -> Change | None:
        labels = dict(target.source_labels) if target.source_labels is not None else None
        host = names.service_host(target.service, self._setup)

        def build(before: Any) -> list[dict[str, Any]]:
            routes = before if isinstance(before, list) and before else []
            routes = routes or [builders.default_route(host, names.APP_PORT)]
            return builders.http_with_fault(routes, fault, source_labels=labels)

        exists = (
            True
            if self.planning
            else self.writer.api.get(VIRTUAL_SERVICE, self.namespace, target.service) is not None
        )
        if exists:
            return self.writer.set_field(
                VIRTUAL_SERVICE,
                self.namespace,
                target.service,
                ("spec", "http"),
                build,
                detail=f"fault {json.dumps(fault, sort_keys=True)}",
            )
        # No VirtualService for the host (a team's own workload): one of our own.
        manifest = {
            "apiVersion": VIRTUAL_SERVICE.api_version,
            "kind": VIRTUAL_SERVICE.kind,
            "metadata": {"name": f"sc-fault-{target.service}", "namespace": self.namespace},
            "spec": {"hosts": [host], "http": build(None)},
        }
        return self.writer.create(manifest, detail="an HTTP fault")

    def clear_http_fault(self, site: HttpFaultSite) -> None:
        changes = self._site_changes.pop(site.proxy, [])
        for change in reversed(changes):
            self.writer.undo(change)
        if not changes and self.planning:
            self._site(site)

    def http_faults_injected(self, site: HttpFaultSite) -> int:
        target = self._site(site)
        if target.via == "runtime":
            assert target.pod is not None
            pods = [self.live(target.pod)]
            prefix = f"http.{site.direction}."
            counts = self._counts(pods, _FAULT_SUFFIXES)
            return sum(v for k, v in counts.items() if k.split(" ", 1)[1].startswith(prefix))
        if self._setup == _AMBIENT:
            gateway = names.waypoint_name(target.service)
            pods = self.writer.api.list_pods(self.namespace, {GATEWAY_NAME_LABEL: gateway})
        else:
            pods = self._namespace_pods()
        return sum(self._counts(pods, _FAULT_SUFFIXES).values())

    # -- crashes -------------------------------------------------------------------------

    def crash_targets(self, pods: Sequence[Pod], node: str | None) -> list[ProxyTarget]:
        if self._setup == _AMBIENT:
            nodes = sorted({node} if node else {p.node for p in pods})
            return [
                ProxyTarget(
                    name=f"{ZTUNNEL}/{n}",
                    affects=tuple(p.name for p in self._workload.pods if p.node == n),
                    mechanism=(
                        f"DELETE {POD.path(self.istio_namespace, f'<{ZTUNNEL} pod>')} of node "
                        f"{names.NODE_HOSTNAMES.get(n, n)} (app={ZTUNNEL}): every pod on the "
                        "node loses its data path"
                    ),
                    undo=f"none: the {ZTUNNEL} DaemonSet creates a new pod",
                )
                for n in nodes
            ]
        container = self.proxy_container()
        if self._setup == _SIDECAR:
            command = "kill -TERM 1 (a container's PID 1 ignores a SIGKILL sent from inside it)"
        else:
            command = "pilot-agent request POST quitquitquit"
        return [
            ProxyTarget(
                name=f"{p.name}/{container}",
                affects=(p.name,),
                mechanism=(
                    f"POST {POD.path(self.namespace, f'<pod of {p.name}>', 'exec')}"
                    f"?container={container}: {command}"
                ),
                undo="none: the kubelet restarts the container (CrashLoopBackOff from the second)",
            )
            for p in pods
        ]

    def _pod_of_target(self, target: ProxyTarget) -> Pod:
        name = target.name.split("/", 1)[0]
        for pod in self._workload.pods:
            if pod.name == name:
                return pod
        raise FaultError(f"unknown crash target {target.name!r}")

    def _ztunnels(self, node: str) -> list[PodState]:
        hostname = names.NODE_HOSTNAMES.get(node, node)
        found = self.writer.api.pods_on_node(self.istio_namespace, hostname, {"app": ZTUNNEL})
        return [p for p in found if not p.deleting]

    def kill_proxy(self, target: ProxyTarget) -> None:
        if target.name.startswith(f"{ZTUNNEL}/"):
            node = target.name.split("/", 1)[1]
            if self.planning:
                self.writer.delete_pod(self.istio_namespace, f"<{ZTUNNEL} on {node}>", detail=node)
                return
            pods = self._ztunnels(node)
            if not pods:
                raise FaultError(f"no {ZTUNNEL} pod runs on {node}")
            seen = self._ztunnel_uids.setdefault(node, set())
            for ztunnel in pods:
                seen.add(ztunnel.uid)
                self.writer.delete_pod(self.istio_namespace, ztunnel.name, detail=target.name)
            return
        pod = self._pod_of_target(target)
        container = self.proxy_container()
        if self._setup == _SIDECAR:
            command = ["/bin/sh", "-c", "kill -TERM 1"]
        else:
            command = ["pilot-agent", "request", "POST", "quitquitquit"]
        name = pod.name if self.planning else self.live(pod).name
        self.writer.exec(self.namespace, name, container, command)

    def proxy_restarts(self, target: ProxyTarget) -> int:
        if target.name.startswith(f"{ZTUNNEL}/"):
            node = target.name.split("/", 1)[1]
            pods = self._ztunnels(node)
            seen = self._ztunnel_uids.setdefault(node, set())
            seen.update(p.uid for p in pods)
            # Each pod that replaced a deleted one is a restart of the node's proxy.
            return max(0, len(seen) - 1) + sum(p.restarts() for p in pods)
        pod = self._pod_of_target(target)
        return self.live(pod).restarts(self.proxy_container())

    # -- identities ----------------------------------------------------------------------

    def expiry_mechanism(self, pod: Pod, ttl_s: float) -> Mechanism:
        istiod = f"PUT {DEPLOYMENT.path(self.istio_namespace, ISTIOD, 'scale')} replicas 0"
        if self._setup == _SIDECAR:
            secret = names.certs_secret_name(pod.service, pod.replica)
            return Mechanism(
                subject=f"{pod.name} identity",
                action=(
                    f"PUT {SECRET.path(self.namespace, secret)} with a certificate valid "
                    f"{ttl_s:g} s (signed by the CA in Secret {CA_SECRET}); DELETE the pod so "
                    "its init step copies it (sidecar certs are read at start only)"
                ),
                undo="PUT the Secret's data back as read; DELETE the pod again",
            )
        if self._setup == _MESH:
            action = (
                f"PUT {DEPLOYMENT.path(self.namespace, pod.name)} (pod template annotation "
                f"{builders.PROXY_CONFIG_ANNOTATION}: SECRET_TTL={ttl_s:g}s; the new pod gets "
                f"a short-lived certificate); then {istiod} (rotation blocked)"
            )
        else:
            action = (
                f"PUT {DAEMONSET.path(self.istio_namespace, ZTUNNEL)} (env SECRET_TTL="
                f"{ttl_s:g}s: ztunnel re-fetches short-lived certificates for every pod); "
                f"then {istiod} (rotation blocked)"
            )
        return Mechanism(
            subject=f"{pod.name} identity",
            action=action,
            undo="PUT istiod/scale back to the recorded replica count; PUT the TTL back as read",
        )

    def expire_identity(self, pod: Pod, ttl_s: float) -> float:
        changes = self._identity_changes.setdefault(pod.name, [])
        if self._setup == _SIDECAR:
            return self._expire_sidecar_cert(pod, ttl_s, changes)
        if self._setup == _MESH:
            self._with_secret_ttl(pod, ttl_s, changes)
        else:
            self._ztunnel_secret_ttl(ttl_s, changes)
        self._track(changes, self.writer.scale(self.istio_namespace, ISTIOD, 0))
        return time.time() + ttl_s

    def _track(self, changes: list[Change], change: Change | None) -> None:
        if change is not None and change not in changes:
            changes.append(change)

    def _expire_sidecar_cert(self, pod: Pod, ttl_s: float, changes: list[Change]) -> float:
        secret = names.certs_secret_name(pod.service, pod.replica)
        if self.planning:
            self.writer.set_field(SECRET, self.namespace, secret, ("data",), lambda b: b)
            self.writer.delete_pod(self.namespace, pod.name, detail="re-read the certificate")
            return time.time() + ttl_s
        ca = self._load_ca()
        current = self.writer.api.get(SECRET, self.namespace, secret)
        if current is None:
            raise FaultError(f"Secret {self.namespace}/{secret} does not exist")
        data = dict(current.get("data") or {})
        if CERT_FILE not in data:
            raise FaultError(f"Secret {self.namespace}/{secret} has no {CERT_FILE}")
        cert = x509.load_pem_x509_certificate(base64.b64decode(data[CERT_FILE]))
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = sans.get_values_for_type(x509.UniformResourceIdentifier)
        dns = tuple(sans.get_values_for_type(x509.DNSName))
        issued = ca.issue(
            uris[0] if uris else f"spiffe://cluster.local/ns/{self.namespace}/sa/{pod.service}",
            timedelta(seconds=ttl_s),
            dns_names=dns,
        )

        def short_lived(before: Any) -> dict[str, str]:
            return {
                **dict(before or {}),
                CERT_FILE: _b64(issued.cert_pem),
                KEY_FILE: _b64(issued.key_pem),
            }

        self._track(
            changes,
            self.writer.set_field(
                SECRET, self.namespace, secret, ("data",), short_lived, detail="short-lived cert"
            ),
        )
        self._recreate(pod)
        return issued.not_after.timestamp()

    def _load_ca(self) -> CertificateAuthority:
        found = self.writer.api.get(SECRET, self.namespace, CA_SECRET)
        data = (found or {}).get("data") or {}
        if CA_FILE not in data or CA_KEY_FILE not in data:
            raise FaultError(
                f"Secret {self.namespace}/{CA_SECRET} with {CA_FILE} and {CA_KEY_FILE} is needed "
                "to issue a short-lived certificate (cluster up writes it)"
            )
        key = serialization.load_pem_private_key(base64.b64decode(data[CA_KEY_FILE]), None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise FaultError(f"Secret {self.namespace}/{CA_SECRET}: the CA key is not an EC key")
        cert = x509.load_pem_x509_certificate(base64.b64decode(data[CA_FILE]))
        return CertificateAuthority(key, cert)

    def _recreate(self, pod: Pod) -> None:
        """Delete a workload pod and wait for its Deployment's new one to be ready."""
        if self.planning:
            self.writer.delete_pod(self.namespace, pod.name, detail="re-created by its Deployment")
            return
        old = self.live(pod)
        self.writer.delete_pod(self.namespace, old.name, detail=f"{pod.name}: re-read its files")
        self._wait_new_pod(pod, {old.uid})

    def _wait_new_pod(self, pod: Pod, old_uids: set[str]) -> None:
        deadline = time.monotonic() + self.rollout_timeout_s
        labels = {names.LABEL_APP: pod.service, names.LABEL_REPLICA: str(pod.replica)}
        while time.monotonic() < deadline:
            pods = self.writer.api.list_pods(self.namespace, labels)
            if any(p.ready and not p.deleting and p.uid not in old_uids for p in pods):
                return
            time.sleep(0.2)
        raise FaultError(
            f"{self.namespace}/{pod.name}: no new ready pod within {self.rollout_timeout_s:g} s"
        )

    def _with_secret_ttl(self, pod: Pod, ttl_s: float, changes: list[Change]) -> None:
        path = ("spec", "template", "metadata", "annotations", builders.PROXY_CONFIG_ANNOTATION)
        old = set() if self.planning else {p.uid for p in self._pods_of(pod)}

        def with_ttl(before: Any) -> str:
            return builders.proxy_config_with_secret_ttl(
                before if isinstance(before, str) else None, ttl_s
            )

        self._track(
            changes,
            self.writer.set_field(
                DEPLOYMENT, self.namespace, pod.name, path, with_ttl, detail=f"SECRET_TTL {ttl_s}"
            ),
        )
        if not self.planning:
            self._wait_new_pod(pod, old)

    def _pods_of(self, pod: Pod) -> list[PodState]:
        labels = {names.LABEL_APP: pod.service, names.LABEL_REPLICA: str(pod.replica)}
        return self.writer.api.list_pods(self.namespace, labels)

    def _ztunnel_secret_ttl(self, ttl_s: float, changes: list[Change]) -> None:
        def with_env(before: Any) -> list[dict[str, Any]]:
            containers = [dict(c) for c in before or []]
            for container in containers:
                if container.get("name") != "istio-proxy" and len(containers) > 1:
                    continue
                env = [e for e in container.get("env") or [] if e.get("name") != "SECRET_TTL"]
                env.append({"name": "SECRET_TTL", "value": f"{max(1, round(ttl_s))}s"})
                container["env"] = env
            return containers

        self._track(
            changes,
            self.writer.set_field(
                DAEMONSET,
                self.istio_namespace,
                ZTUNNEL,
                ("spec", "template", "spec", "containers"),
                with_env,
                detail=f"SECRET_TTL {ttl_s}",
            ),
        )

    def restore_identity(self, pod: Pod) -> None:
        changes = self._identity_changes.pop(pod.name, [])
        for change in reversed(changes):
            self.writer.undo(change)
        if changes and self._setup == _SIDECAR:
            self._recreate(pod)  # the init step copies the original certificate again

    def tls_failures(self) -> dict[str, int]:
        return self._counts(self._namespace_pods(), _TLS_SUFFIXES)

    # -- control plane -------------------------------------------------------------------

    def _config_sources(self) -> list[str]:
        if self.planning:
            return []
        found = self.writer.api.list_objects(
            DEPLOYMENT, self.namespace, {ROLE_LABEL: CONFIG_SOURCE}
        )
        return [d["metadata"]["name"] for d in found]

    def control_plane_mechanisms(self, cert_ttl_s: float | None) -> list[Mechanism]:
        if self._setup == _SIDECAR:
            return [
                Mechanism(
                    f"Deployment {self.namespace}/{name}",
                    f"PUT {DEPLOYMENT.path(self.namespace, name, 'scale')} replicas 0",
                    "PUT the scale back to the recorded replica count",
                )
                for name in self._config_sources()
            ]
        mechanisms = [
            Mechanism(
                f"Deployment {self.istio_namespace}/{ISTIOD}",
                f"PUT {DEPLOYMENT.path(self.istio_namespace, ISTIOD, 'scale')} replicas 0 "
                "(no certificates issued, no config pushed)",
                "PUT the scale back to the replica count read before (journaled)",
            )
        ]
        if cert_ttl_s:
            target = (
                f"every Deployment of {self.namespace} (pod template annotation SECRET_TTL)"
                if self._setup == _MESH
                else f"DaemonSet {self.istio_namespace}/{ZTUNNEL} (env SECRET_TTL)"
            )
            mechanisms.insert(
                0,
                Mechanism(
                    "all identities",
                    f"PUT {target}={cert_ttl_s:g}s first, so certificates expire during it",
                    "PUT the TTL back as read",
                ),
            )
        return mechanisms

    def stop_control_plane(self, cert_ttl_s: float | None) -> None:
        if self._setup == _SIDECAR:
            for name in self._config_sources():
                self._track(self._outage_changes, self.writer.scale(self.namespace, name, 0))
            return
        if cert_ttl_s:
            if self._setup == _MESH:
                for pod in self._workload.pods:
                    self._with_secret_ttl(pod, cert_ttl_s, self._outage_changes)
            else:
                self._ztunnel_secret_ttl(cert_ttl_s, self._outage_changes)
        self._track(self._outage_changes, self.writer.scale(self.istio_namespace, ISTIOD, 0))

    def start_control_plane(self) -> None:
        changes, self._outage_changes = self._outage_changes, []
        # The control plane first: pods rolled back to the normal TTL need it for certs.
        for change in sorted(changes, key=lambda c: c.action != "scale"):
            self.writer.undo(change)

    def control_plane_state(self) -> ControlPlaneState:
        if self._setup == _SIDECAR:
            sources = self._config_sources()
            if not sources:
                return ControlPlaneState(False, detail="static config: no control plane")
            running = [n for n in sources if self.writer.api.read_scale(self.namespace, n) > 0]
            return ControlPlaneState(not running, detail=f"config sources running: {running}")
        pods = [
            p
            for p in self.writer.api.list_pods(self.istio_namespace, {"app": ISTIOD})
            if not p.deleting
        ]
        replicas = self.writer.api.read_scale(self.istio_namespace, ISTIOD)
        # Envoy's gauge control_plane.connected_state is 0 while its xDS stream is down:
        # every such proxy gets no pushes (and no certificates) until istiod is back.
        states = self._counts(self._namespace_pods(), (".connected_state",))
        cut_off = sum(1 for name, value in states.items() if "control_plane" in name and not value)
        return ControlPlaneState(
            stopped=replicas == 0 and not pods,
            pushes_blocked=cut_off,
            detail=(
                f"istiod replicas {replicas}, pods {len(pods)}; "
                f"{cut_off} of {len(states)} proxies disconnected from it"
            ),
        )

    # -- token validation ----------------------------------------------------------------

    def _request_authentications(self) -> list[str]:
        if self.planning:
            return ["jwt"] if self._setup == _MESH else []
        found = self.writer.api.list_objects(REQUEST_AUTHENTICATION, self.namespace)
        return [r["metadata"]["name"] for r in found]

    def validates_tokens(self) -> bool:
        if self._setup == _SIDECAR:
            return True
        return bool(self._request_authentications())

    def key_rotation_mechanism(self) -> Mechanism:
        if self._setup == _SIDECAR:
            return Mechanism(
                "identity provider keys",
                f"PUT {CONFIGMAP.path(self.namespace, names.JWKS_CONFIGMAP)} with a key set "
                "without the signing key; DELETE every pod of the setup so the sidecars read it "
                "(they read it once at start: pods restart)",
                "PUT the ConfigMap's data back as read; DELETE the pods again",
            )
        objects = ", ".join(
            REQUEST_AUTHENTICATION.path(self.namespace, n) for n in self._request_authentications()
        )
        return Mechanism(
            "identity provider keys",
            f"PUT {objects or 'no RequestAuthentication'}: spec.jwtRules[*].jwks = a key set "
            "without the signing key",
            "PUT spec.jwtRules back exactly as read",
        )

    def _jwks(self) -> str:
        if self._desync_jwks is None:
            self._desync_jwks = builders.jwks_without_signing_key()
        return self._desync_jwks

    def rotate_signing_key(self) -> None:
        jwks = self._jwks()
        if self._setup == _SIDECAR:

            def swapped(before: Any) -> dict[str, str]:
                return dict.fromkeys(dict(before or {"jwks.json": ""}), jwks)

            self._track(
                self._key_changes,
                self.writer.set_field(
                    CONFIGMAP,
                    self.namespace,
                    names.JWKS_CONFIGMAP,
                    ("data",),
                    swapped,
                    detail="a key set without the signing key",
                ),
            )
            self._recreate_all()
            return
        for name in self._request_authentications():
            self._track(
                self._key_changes,
                self.writer.set_field(
                    REQUEST_AUTHENTICATION,
                    self.namespace,
                    name,
                    ("spec", "jwtRules"),
                    lambda before: builders.jwt_rules_with_jwks(before or [], jwks),
                    detail="jwks without the signing key",
                ),
            )

    def _recreate_all(self) -> None:
        for pod in self._workload.pods:
            self._recreate(pod)

    def restore_signing_key(self) -> None:
        changes, self._key_changes = self._key_changes, []
        for change in reversed(changes):
            self.writer.undo(change)
        if changes and self._setup == _SIDECAR:
            self._recreate_all()

    def key_set_updates(self) -> int:
        """Not measured on Kubernetes (Istio does not count JWKS deliveries per proxy).

        ``verify`` of policy-desync relies on the token denials here.
        """
        return 0

    def token_denials(self) -> dict[str, int]:
        pods = self._namespace_pods()
        if self._setup == _AMBIENT:
            pods = [p for p in pods if GATEWAY_NAME_LABEL in p.labels]
        return self._counts(pods, _DENIED_SUFFIXES)


__all__ = ["CA_SECRET", "ISTIOD", "ZTUNNEL", "KubeFaultOps", "demo_workload"]
