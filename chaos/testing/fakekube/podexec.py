"""A :class:`~chaos.platforms.kubernetes.podexec.PodExec` for a :class:`~.api.FakeCluster`.

Exec and port-forward, faked.

Each pod's proxy is modelled as much as the platform reads and writes of it:

* its admin API: ``POST /runtime_modify`` sets (an empty value removes) runtime
  keys, ``GET /stats?format=json`` answers its counters: an Istio proxy (sidecar or
  waypoint) only those its stats matcher includes (:meth:`FakePodExec.stats_matcher`:
  Istio's defaults unless the mesh config names more), as a real one creates no others;
* its fault filter: :meth:`FakePodExec.serve` passes requests through the pod and
  counts the delays and aborts the runtime keys ask for (Envoy's
  ``http.<prefix>.fault.delays_injected`` / ``aborts_injected``), so a counter rises
  only if the fault was really switched on through the admin API;
* the kill commands the platform uses (``kill -TERM 1``, ``pilot-agent request POST
  quitquitquit``): the fake kubelet restarts the container (``restartCount`` + 1 in
  the pod's status, so a watch sees it) and the restarted proxy forgets its runtime
  overrides, as Envoy does;
* the bypass probe's exec (:mod:`.bypassexec`): Istio's outcome per target; the
  anonymous stream's (:mod:`.anonexec`): the data plane's answer to a token-less caller;
* the demo app's ``GET /writes`` (the writes ``payments`` accepted), from
  :attr:`FakePodExec.app_writes`.

Anything else (another command, a pod that does not exist) fails as the real
exec or port-forward would: a :class:`~chaos.errors.PlatformError` (an unknown command
exits 127, a port nothing listens on is :class:`~.streams.PortRefused`).

It is also what the fake API server's exec and port-forward websockets reach
(:meth:`FakePodExec.run`, :meth:`FakePodExec.forward`), so the real ``KubePodExec``
can be tested against it.
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Callable, Sequence
from typing import Any

import yaml

from chaos.errors import PlatformError
from chaos.platforms.kubernetes import names
from chaos.platforms.kubernetes.podexec import ExecInterrupted
from chaos.platforms.kubernetes.statsmatcher import StatsMatcher, proxy_matcher
from chaos.platforms.shared.envoy_faults import FAULT_KEYS
from chaos.testing.fakekube import anonexec, bypassexec
from chaos.testing.fakekube.rules import ApiError
from chaos.testing.fakekube.store import FakeCluster
from chaos.testing.fakekube.streams import ExecResult, PortRefused, http_response

KILL_COMMANDS = (
    ("/bin/sh", "-c", "kill -TERM 1"),
    ("pilot-agent", "request", "POST", "quitquitquit"),
)
ADMIN_PORT = 15000
WAYPOINT_LABEL = "gateway.networking.k8s.io/gateway-name"

#: ``(namespace, pod, container, command, timeout_s)`` -> the output, or None: not mine.
ExecHandler = Callable[[str, str, str, Sequence[str], float], str | None]


class CommandFailed(PlatformError):
    """A command that ran and exited non-zero (``code``), with what it said on stderr."""

    def __init__(self, code: int, stderr: str) -> None:
        super().__init__(stderr.strip())
        self.code = code
        self.stderr = stderr


class FakePodExec:
    """Exec and port-forward into the pods of a fake cluster."""

    def __init__(
        self,
        cluster: FakeCluster,
        *,
        kills_close_the_session: bool = False,
        handler: ExecHandler | None = None,
    ) -> None:
        self.cluster = cluster
        #: Asked first for every exec (a fake kubelet running real processes for some
        #: pods); its None leaves the command to the fakes here.
        self.handler = handler
        #: As on a real cluster, a kill may end the exec session before it answers.
        self.kills_close_the_session = kills_close_the_session
        self._lock = threading.Lock()
        #: Held while counters change (what :mod:`.istio` counts takes it too).
        self.lock = self._lock
        self.runtime: dict[tuple[str, str], dict[str, str]] = {}
        self.counters: dict[tuple[str, str], dict[str, int]] = {}
        #: The writes each demo app accepted (its ``GET /writes`` on the app port); a pod
        #: missing here refuses the connection, as an app that is down does.
        self.app_writes: dict[tuple[str, str], list[str]] = {}
        #: Every call: ("exec", ns, pod, container, command) or ("http", ns, pod, method, path).
        self.calls: list[tuple[str, ...]] = []

    def count(self, namespace: str, pod: str, name: str) -> None:
        """Add 1 to counter ``name`` of a pod's proxy."""
        with self._lock:
            counters = self.counters.setdefault((namespace, pod), {})
            counters[name] = counters.get(name, 0) + 1

    def _pod(self, namespace: str, pod: str) -> dict[str, Any]:
        try:
            return self.cluster.get(self.cluster.resources[("v1", "pods")], namespace, pod)
        except ApiError as exc:
            raise PlatformError(f"{namespace}/{pod}: {exc.message}") from exc

    def stats_matcher(self, pod: dict[str, Any]) -> StatsMatcher | None:
        """What an Istio proxy's bootstrap includes (None: not Istio's, every stat exists).

        An Istio proxy is a pod with an ``istio-proxy`` container (sidecar) or a waypoint
        (its Gateway's label); its matcher is Istio's defaults plus the mesh config's
        ``defaultConfig.proxyStatsMatcher`` (ConfigMap ``istio-system/istio``, key ``mesh``,
        where ``istioctl install`` puts ``meshConfig``).
        """
        spec = pod.get("spec") or {}
        containers = [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]
        labels = (pod.get("metadata") or {}).get("labels") or {}
        istio = any(c.get("name") == names.ISTIO_PROXY_CONTAINER for c in containers)
        if not istio and WAYPOINT_LABEL not in labels:
            return None
        try:
            mesh_map = self.cluster.get(
                self.cluster.resources[("v1", "configmaps")], names.ISTIO_NAMESPACE, "istio"
            )
            mesh = yaml.safe_load((mesh_map.get("data") or {}).get("mesh") or "") or {}
        except ApiError:
            mesh = {}
        default = (mesh.get("defaultConfig") or {}) if isinstance(mesh, dict) else {}
        return proxy_matcher(default.get("proxyStatsMatcher"))

    def exec(
        self, namespace: str, pod: str, container: str, command: Sequence[str], timeout_s: float
    ) -> str:
        with self._lock:
            self.calls.append(("exec", namespace, pod, container, " ".join(command)))
        self._pod(namespace, pod)
        if self.handler is not None:
            answer = self.handler(namespace, pod, container, command, timeout_s)
            if answer is not None:
                return answer
        probed = bypassexec.answer(self.cluster, command)
        probed = (
            probed
            if probed is not None
            else anonexec.answer(self.cluster, namespace, pod, command, self.count)
        )
        if probed is not None:
            return probed
        if tuple(command) not in KILL_COMMANDS:
            raise CommandFailed(127, f"sh: {command[0]}: not found (fake exec: no fake for it)\n")
        try:
            self.cluster.restart_container(namespace, pod, container)
        except ApiError as exc:
            raise PlatformError(f"exec in {namespace}/{pod}/{container}: {exc.message}") from exc
        with self._lock:
            self.runtime.pop((namespace, pod), None)
        if self.kills_close_the_session:
            raise ExecInterrupted(f"exec in {namespace}/{pod}/{container}: connection closed")
        return ""

    def http(
        self, namespace: str, pod: str, port: int, method: str, path: str, timeout_s: float
    ) -> bytes:
        with self._lock:
            self.calls.append(("http", namespace, pod, method, path))
        live = self._pod(namespace, pod)
        if port == names.APP_PORT and method == "GET" and path == "/writes":
            with self._lock:
                ids = self.app_writes.get((namespace, pod))
                if ids is not None:
                    return json.dumps({"pod": pod, "count": len(ids), "ids": ids}).encode()
        if port != ADMIN_PORT:
            raise PortRefused(f"port-forward to {namespace}/{pod}:{port}: connection refused")
        url = urllib.parse.urlsplit(path)
        key = (namespace, pod)
        with self._lock:
            if method == "POST" and url.path == "/runtime_modify":
                runtime = self.runtime.setdefault(key, {})
                for name, value in urllib.parse.parse_qsl(url.query, keep_blank_values=True):
                    if value == "":
                        runtime.pop(name, None)
                    else:
                        runtime[name] = value
                return b"OK\n"
            if method == "GET" and url.path == "/stats":
                matcher = self.stats_matcher(live)
                stats = [
                    {"name": k, "value": v}
                    for k, v in sorted(self.counters.get(key, {}).items())
                    if matcher is None or matcher.exports(k)
                ]
                return json.dumps({"stats": stats}).encode()
        raise PlatformError(f"{namespace}/{pod}:{port}{path}: 404 Not Found")

    # -- what the fake API server's websockets reach ------------------------------------

    def run(self, namespace: str, pod: str, container: str, command: Sequence[str]) -> ExecResult:
        """:meth:`exec` as the kubelet reports it: output, stderr and the exit status."""
        try:
            output = self.exec(namespace, pod, container, command, 60.0)
        except ExecInterrupted:
            return ExecResult("", "", None)
        except CommandFailed as exc:
            return ExecResult("", exc.stderr, exc.code)
        except PlatformError as exc:
            return ExecResult("", f"{exc}\n", 1)
        return ExecResult(output, "", 0)

    def forward(self, namespace: str, pod: str, port: int, method: str, path: str) -> bytes:
        """:meth:`http` as the pod's server answers it on the wire (PortRefused: nothing there)."""
        try:
            body = self.http(namespace, pod, port, method, path, 5.0)
        except PortRefused:
            raise
        except PlatformError as exc:
            return http_response(404, f"{exc}\n".encode())
        return http_response(200, body)

    def serve(self, namespace: str, pod: str, requests: int) -> None:
        """``requests`` requests through the pod's proxy, both directions: the filter acts."""
        key = (namespace, pod)
        with self._lock:
            runtime = self.runtime.get(key, {})
            counters = self.counters.setdefault(key, {})
            for direction, keys in FAULT_KEYS.items():
                delayed = int(runtime.get(keys.delay_percent, "0") or 0) * requests // 100
                aborted = int(runtime.get(keys.abort_percent, "0") or 0) * requests // 100
                for counter, rise in (("delays_injected", delayed), ("aborts_injected", aborted)):
                    name = f"http.{direction}.fault.{counter}"
                    counters[name] = counters.get(name, 0) + rise


__all__ = ["KILL_COMMANDS", "CommandFailed", "ExecHandler", "FakePodExec"]
