"""Exec and port-forward: commands in a container and HTTP to a pod's port, through the API
server's websocket sub-protocols.

:class:`PodExec` is the port (tests use :mod:`chaos.testing.fakekube.podexec`, because
no fake API server speaks the websocket sub-protocols); :class:`KubePodExec` is the real
one, over the official client. Its foreign errors stop here as
:class:`~chaos.errors.PlatformError` (:class:`ExecInterrupted` when the session closes early).
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, cast

from kubernetes import stream as kube_stream
from kubernetes.client import CoreV1Api
from kubernetes.client.exceptions import ApiException
from websocket import WebSocketConnectionClosedException, WebSocketException

from chaos.errors import PlatformError

if TYPE_CHECKING:
    from kubernetes.client import ApiClient


class HoldsApiClient(Protocol):
    """What :class:`KubePodExec` needs of the API adapter (``KubeApi``): its client."""

    @property
    def api_client(self) -> ApiClient: ...


class ExecInterrupted(PlatformError):
    """The exec session closed before the command ended (a kill takes its own exec along)."""


class PodExec(Protocol):
    """Commands in a container and HTTP to a pod's port: what the websocket APIs give."""

    def exec(
        self, namespace: str, pod: str, container: str, command: Sequence[str], timeout_s: float
    ) -> str:
        """Run ``command`` in the container; its output. A failure is a PlatformError."""
        ...

    def http(
        self, namespace: str, pod: str, port: int, method: str, path: str, timeout_s: float
    ) -> bytes:
        """One HTTP request to ``port`` of the pod (a port-forward); the response body."""
        ...


class KubePodExec:
    """:class:`PodExec` through the API server's exec and port-forward (websockets).

    Proven only against a real cluster (``make e2e-kind``): no fake API server here
    speaks the websocket sub-protocols.
    """

    def __init__(self, api: HoldsApiClient) -> None:
        self._core = CoreV1Api(api.api_client)

    def exec(
        self, namespace: str, pod: str, container: str, command: Sequence[str], timeout_s: float
    ) -> str:
        try:
            output = kube_stream.stream(
                self._core.connect_get_namespaced_pod_exec,
                pod,
                namespace,
                container=container,
                command=list(command),
                stderr=True,
                stdin=False,
                stdout=True,
                tty=False,
                _request_timeout=timeout_s,
            )
        except WebSocketConnectionClosedException as exc:
            raise ExecInterrupted(f"exec in {namespace}/{pod}/{container}: {exc}") from exc
        except (ApiException, OSError, ValueError, WebSocketException) as exc:
            raise PlatformError(f"exec in {namespace}/{pod}/{container} failed: {exc}") from exc
        return str(output)

    def http(
        self, namespace: str, pod: str, port: int, method: str, path: str, timeout_s: float
    ) -> bytes:
        try:
            forward: Any = kube_stream.portforward(
                self._core.connect_get_namespaced_pod_portforward,
                pod,
                namespace,
                ports=str(port),
            )
            sock = cast(socket.socket, forward.socket(port))
            sock.settimeout(timeout_s)
            request = f"{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
            sock.sendall(request.encode())
            chunks: list[bytes] = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
            sock.close()
        except (ApiException, OSError, ValueError, WebSocketException) as exc:
            raise PlatformError(f"port-forward to {namespace}/{pod}:{port} failed: {exc}") from exc
        return _http_body(b"".join(chunks), f"{namespace}/{pod}:{port}{path}")


def _http_body(raw: bytes, where: str) -> bytes:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].decode(errors="replace")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise PlatformError(f"{where}: not an HTTP answer: {status_line[:80]!r}")
    if not 200 <= int(parts[1]) <= 299:
        raise PlatformError(f"{where}: {status_line}")
    if b"transfer-encoding: chunked" in head.lower():
        body = _dechunk(body)
    return body


def _dechunk(body: bytes) -> bytes:
    out = bytearray()
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out += rest[:size]
        body = rest[size + 2 :]
    return bytes(out)
