"""Identity intents on Kubernetes: certificate expiry, control-plane outage, key rotation.

See :mod:`.faultops` for the table of mechanisms per setup.
"""

from __future__ import annotations

import base64
import time
from datetime import timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from chaos.errors import FaultError
from chaos.platforms.base import (
    ControlPlaneState,
    Mechanism,
    Pod,
)
from chaos.platforms.kubernetes import builders, names, rollout
from chaos.platforms.kubernetes.changes import Change
from chaos.platforms.kubernetes.kinds import (
    CONFIGMAP,
    DAEMONSET,
    DEPLOYMENT,
    REQUEST_AUTHENTICATION,
    SECRET,
)
from chaos.platforms.kubernetes.opsbase import (
    AMBIENT,
    CA_KEY_FILE,
    CA_SECRET,
    CONFIG_SOURCE,
    DENIED_SUFFIXES,
    GATEWAY_NAME_LABEL,
    ISTIOD,
    MESH,
    ROLE_LABEL,
    SIDECAR,
    TLS_SUFFIXES,
    XDS_CLUSTER,
    ZTUNNEL,
    OpsBase,
)
from chaos.platforms.shared.pki import CA_FILE, CERT_FILE, KEY_FILE, CertificateAuthority


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


#: Where istiod at 0 reaches: every namespace whose proxies it feeds.
MESH_NAMESPACES = (
    names.namespace_of(MESH),
    names.namespace_of(AMBIENT),
    names.TRAFFIC_NAMESPACE,
)


class IdentityOps(OpsBase):
    """Certificates, the control plane and token validation of one setup's namespace."""

    # -- identities ----------------------------------------------------------------------

    def expiry_mechanism(self, pod: Pod, ttl_s: float) -> Mechanism:
        istiod = f"PUT {DEPLOYMENT.path(self.istio_namespace, ISTIOD, 'scale')} replicas 0"
        if self._setup == SIDECAR:
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
        if self._setup == MESH:
            action = (
                f"PUT {DEPLOYMENT.path(self.namespace, pod.name)} (pod template annotation "
                f"{builders.PROXY_CONFIG_ANNOTATION}: SECRET_TTL={ttl_s:g}s; the new pod gets "
                f"a short-lived certificate); after every target's rollout, once, {istiod} "
                "(rotation blocked)"
            )
        else:
            action = (
                f"PUT {DAEMONSET.path(self.istio_namespace, ZTUNNEL)} (env SECRET_TTL="
                f"{ttl_s:g}s: ztunnel re-fetches short-lived certificates for every pod); "
                "wait for its rollout (maxSurge 1, maxUnavailable 0: every node's ztunnel "
                f"restarts, every pod of every node is touched); then, once, {istiod} "
                "(rotation blocked)"
            )
        return Mechanism(
            subject=f"{pod.name} identity",
            action=action,
            undo="PUT istiod/scale back to the recorded replica count; PUT the TTL back as read",
        )

    def expire_identity(self, pod: Pod, ttl_s: float) -> float:
        changes = self._identity_changes.setdefault(pod.name, [])
        if self._setup == SIDECAR:
            return self._expire_sidecar_cert(pod, ttl_s, changes)
        # Only the TTL here: istiod goes once, after every target (block_rotation). Scaled
        # down now, the next pod's rollout would need the sidecar injector, whose webhook
        # fails closed while istiod has no ready pod.
        if self._setup == MESH:
            self._with_secret_ttl(pod, ttl_s, changes)
        else:
            self._ztunnel_secret_ttl(ttl_s, changes)
        return time.time() + ttl_s

    def block_rotation(self) -> None:
        """Scale istiod to 0, once, after every target's short TTL is in place."""
        if self._setup == SIDECAR or not self._identity_changes:
            return
        self._track(self._rotation_changes, self.writer.scale(self.istio_namespace, ISTIOD, 0))

    def _unblock_rotation(self) -> None:
        changes, self._rotation_changes = self._rotation_changes, []
        for change in reversed(changes):
            self.writer.undo(change)
        if changes and not self.planning:  # its webhooks answer only once it is Ready
            rollout.wait_deployment(
                self.writer.api.get, self.istio_namespace, ISTIOD, self.rollout_timeout_s
            )

    def _wait_ztunnel_rollout(self) -> None:
        """Until every node runs a ztunnel of the new template, Ready (maxUnavailable 0).

        A new ztunnel is Ready only after its first xDS answer: istiod must still be up.
        """
        deadline = time.monotonic() + self.rollout_timeout_s
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            found = self.writer.api.get(DAEMONSET, self.istio_namespace, ZTUNNEL) or {}
            status = found.get("status") or {}
            generation = (found.get("metadata") or {}).get("generation", 0)
            desired = status.get("desiredNumberScheduled")
            if (
                status.get("observedGeneration", 0) >= generation
                and desired is not None
                and status.get("updatedNumberScheduled") == desired
                and status.get("numberAvailable") == desired
            ):
                return
            time.sleep(0.2)
        raise FaultError(
            f"DaemonSet {self.istio_namespace}/{ZTUNNEL}: rollout not done within "
            f"{self.rollout_timeout_s:g} s ({status.get('updatedNumberScheduled')} of "
            f"{status.get('desiredNumberScheduled')} updated, {status.get('numberAvailable')} "
            "available)"
        )

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
        """The CA that signed the sidecars' certificates: a Secret, else ``ca_dir``'s files."""
        found = self.writer.api.get(SECRET, self.namespace, CA_SECRET)
        data = (found or {}).get("data") or {}
        if CA_FILE in data and CA_KEY_FILE in data:
            where = f"Secret {self.namespace}/{CA_SECRET}"
            cert_pem = base64.b64decode(data[CA_FILE])
            key_pem = base64.b64decode(data[CA_KEY_FILE])
        elif self.ca_dir is not None and (self.ca_dir / CA_KEY_FILE).is_file():
            where = str(self.ca_dir)
            try:
                cert_pem = (self.ca_dir / CA_FILE).read_bytes()
                key_pem = (self.ca_dir / CA_KEY_FILE).read_bytes()
            except OSError as exc:
                raise FaultError(f"{where}: cannot read the CA: {exc}") from exc
        else:
            raise FaultError(
                f"no CA to issue a short-lived certificate: neither Secret {self.namespace}/"
                f"{CA_SECRET} nor {CA_FILE} and {CA_KEY_FILE} in {self.ca_dir or 'a CA directory'}"
                " (cluster up keeps them in its state directory)"
            )
        key = serialization.load_pem_private_key(key_pem, None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise FaultError(f"{where}: the CA key is not an EC key")
        return CertificateAuthority(key, x509.load_pem_x509_certificate(cert_pem))

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
        if not self.planning:  # the rollout, not the first new pod: the old one may still serve
            rollout.wait_deployment(
                self.writer.api.get, self.namespace, pod.name, self.rollout_timeout_s
            )
            self._wait_new_pod(pod, old)

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
        if not self.planning:
            self._wait_ztunnel_rollout()

    def restore_identity(self, pod: Pod) -> None:
        # istiod first: the pods rolled back to the normal TTL need the injector and certs.
        self._unblock_rotation()
        changes = self._identity_changes.pop(pod.name, [])
        for change in reversed(changes):
            self.writer.undo(change)
        if changes and self._setup == SIDECAR:
            self._recreate(pod)  # the init step copies the original certificate again
        elif changes and not self.planning:  # restored once the rollout back is done
            if self._setup == MESH:
                rollout.wait_deployment(
                    self.writer.api.get, self.namespace, pod.name, self.rollout_timeout_s
                )
            else:
                self._wait_ztunnel_rollout()

    def tls_failures(self) -> dict[str, int]:
        # Not the proxies' own xDS connection to istiod (down during the fault): the data path.
        found = self._counts(self._namespace_pods(), TLS_SUFFIXES)
        return {k: v for k, v in found.items() if XDS_CLUSTER not in k}

    # -- control plane -------------------------------------------------------------------

    def _config_sources(self) -> list[str]:
        if self.planning:
            return []
        found = self.writer.api.list_objects(
            DEPLOYMENT, self.namespace, {ROLE_LABEL: CONFIG_SOURCE}
        )
        return [d["metadata"]["name"] for d in found]

    def control_plane_mechanisms(self, cert_ttl_s: float | None) -> list[Mechanism]:
        if self._setup == SIDECAR:
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
                "(no certificates issued, no config pushed, to every namespace of the mesh: "
                f"{', '.join(MESH_NAMESPACES)}; its webhooks refuse injected pods and Istio "
                "objects until it is back)",
                "PUT the scale back to the replica count read before (journaled)",
            )
        ]
        if cert_ttl_s:
            target = (
                f"every Deployment of {self.namespace} (pod template annotation SECRET_TTL)"
                if self._setup == MESH
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
        if self._setup == SIDECAR:
            for name in self._config_sources():
                self._track(self._outage_changes, self.writer.scale(self.namespace, name, 0))
            return
        if cert_ttl_s:
            if self._setup == MESH:
                for pod in self._workload.pods:
                    self._with_secret_ttl(pod, cert_ttl_s, self._outage_changes)
                    self._outage_certs.setdefault(pod.name, (time.time(), cert_ttl_s))
            else:
                self._ztunnel_secret_ttl(cert_ttl_s, self._outage_changes)
                for pod in self._workload.pods:
                    self._outage_certs.setdefault(pod.name, (time.time(), cert_ttl_s))
        self._track(self._outage_changes, self.writer.scale(self.istio_namespace, ISTIOD, 0))

    def start_control_plane(self) -> None:
        changes, self._outage_changes = self._outage_changes, []
        self._outage_certs = {}
        # The control plane first: pods rolled back to the normal TTL need it for certs.
        for change in sorted(changes, key=lambda c: c.action != "scale"):
            self.writer.undo(change)

    def control_plane_state(self) -> ControlPlaneState:
        if self._setup == SIDECAR:
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
        # From the recorded issue times: pilot-agent and ztunnel rotate a certificate at half
        # its lifetime (SECRET_GRACE_PERIOD_RATIO 0.5); with istiod down that rotation is
        # missed, and at its end the certificate expires.
        now = time.time()
        missed = sum(1 for at, ttl in self._outage_certs.values() if at + ttl / 2 <= now)
        expired = sum(1 for at, ttl in self._outage_certs.values() if at + ttl <= now)
        return ControlPlaneState(
            stopped=replicas == 0 and not pods,
            rotations_missed=missed,
            certs_expired=expired,
            pushes_blocked=cut_off,
            detail=(
                f"istiod replicas {replicas}, pods {len(pods)}; "
                f"{cut_off} of {len(states)} proxies disconnected from it"
            ),
        )

    # -- token validation ----------------------------------------------------------------

    def _request_authentications(self) -> list[str]:
        if self.planning:
            return ["jwt"] if self._setup == MESH else []
        found = self.writer.api.list_objects(REQUEST_AUTHENTICATION, self.namespace)
        return [r["metadata"]["name"] for r in found]

    def validates_tokens(self) -> bool:
        if self._setup == SIDECAR:
            return True
        return bool(self._request_authentications())

    def key_rotation_mechanism(self) -> Mechanism:
        if self._setup == SIDECAR:
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
        if self._setup == SIDECAR:

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
        if changes and self._setup == SIDECAR:
            self._recreate_all()

    def key_set_updates(self) -> int:
        """Not measured on Kubernetes (Istio does not count JWKS deliveries per proxy).

        ``verify`` of policy-desync relies on the token denials here.
        """
        return 0

    def token_denials(self) -> dict[str, int]:
        pods = self._namespace_pods()
        if self._setup == AMBIENT:
            pods = [p for p in pods if GATEWAY_NAME_LABEL in p.labels]
        return self._counts(pods, DENIED_SUFFIXES)


__all__ = ["IdentityOps"]
