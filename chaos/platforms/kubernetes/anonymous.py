"""``security.anonymous`` on a cluster: token-less requests at the front door, from inside.

The local stream sends token-less requests through the ingress: a caller that reaches
the first proxy the way the load does, but carries no token. On a cluster the load's
front door is where the Locust workers send (:func:`~.manifests.locust.target_host`):
their own client sidecar (plain sidecar: ``127.0.0.1:15001``, which gives the request
the workers' mTLS identity and sends it to frontend's Service) or frontend's Service
(mesh: the workers' injected sidecar; ambient: ztunnel). So the stream runs *in a
Locust worker* of the setup: one bounded exec of :data:`ANONYMOUS_SCRIPT` in its
``locust`` container (the bypass probe's script and bounds, :mod:`.bypass`, to that one
target, with no ``Authorization`` header), records ``kind: anonymous`` in the window's
``.anonymous.jsonl``, as the local stream's.

Why not from the Locust master, as the bypass probe: the master is outside every data
plane, so its plaintext would be refused by mTLS (STRICT, or the sidecar's TLS
listener) before any token check: that is the bypass measurement again, not what an
anonymous caller with a network identity meets. What to expect: the plain sidecar's
``jwt_authn`` requires a token at every hop (401: *denied*); mesh and ambient deny it
by the ``require-jwt`` AuthorizationPolicy at frontend (403: *denied*); *served* would
be a fail open.
"""

from __future__ import annotations

import urllib.parse

from chaos.errors import PlatformError
from chaos.platforms.kubernetes import names
from chaos.platforms.kubernetes.bypass import PROBE_SCRIPT, KubeBypassProbe
from chaos.platforms.kubernetes.manifests.locust import SETUP_LABEL, WORKER_ROLE, target_host

#: The bypass probe's script, marked as the anonymous stream's (the same bounds and outcomes).
ANONYMOUS_SCRIPT = "# sidecar-chaos: security.anonymous\n" + PROBE_SCRIPT


def front_door(setup: names.Setup, traffic_host: str | None) -> tuple[str, int]:
    """Where the workers send the load: host and port of the team's URL or the demo's."""
    url = urllib.parse.urlsplit(traffic_host or target_host(setup))
    if not url.hostname:
        raise PlatformError(f"anonymous stream: {traffic_host!r} has no host")
    return url.hostname, url.port or (443 if url.scheme == "https" else 80)


class KubeAnonymousStream(KubeBypassProbe):
    """One window's anonymous stream, from a Locust worker (see the module docstring)."""

    script = ANONYMOUS_SCRIPT
    kind = "anonymous"
    #: The team's in-cluster URL (``traffic.host``), or None: the demo's front door.
    traffic_host: str | None = None

    def targets(self) -> list[tuple[str, str, str, int]]:
        host, port = front_door(self.setup, self.traffic_host)
        return [(names.TRAFFIC_NAMESPACE, "frontend", host, port)]

    def _master(self) -> str:  # where the exec runs: a ready worker, not the master
        labels = {names.LABEL_TRAFFIC_ROLE: WORKER_ROLE, SETUP_LABEL: self.setup.value}
        pods = [p for p in self.api.list_pods(names.TRAFFIC_NAMESPACE, labels) if p.ready]
        if not pods:
            raise PlatformError("anonymous stream: no ready Locust worker to run it from")
        return str(sorted(p.name for p in pods)[0])


__all__ = ["ANONYMOUS_SCRIPT", "KubeAnonymousStream", "front_door"]
