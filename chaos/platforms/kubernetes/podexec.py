"""Exec and port-forward: commands in a container and HTTP to a pod's port, through the API
server's websocket sub-protocols.

:class:`PodExec` is the port; :class:`KubePodExec` is the real one, over the official
client (tested against the fake API server, :mod:`chaos.testing.fakekube.api`, which speaks
the exec and port-forward websocket sub-protocols). Its foreign errors stop here as
:class:`~chaos.errors.PlatformError` (:class:`ExecInterrupted` when the session closes early).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Sequence
from typing import Any, Protocol, cast

from kubernetes import stream as kube_stream
from kubernetes.client import ApiClient, CoreV1Api
from kubernetes.client.exceptions import ApiException
from kubernetes.stream.ws_client import ERROR_CHANNEL
from websocket import WebSocketConnectionClosedException, WebSocketException

from chaos.errors import PlatformError


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

    Every stream gets an ``ApiClient`` of its own, built from the adapter's configuration
    and closed after: the client's ``stream()`` swaps ``api_client.call_api`` for a
    websocket call while it runs (kubernetes-client/python#928), so a shared client sends
    the REST calls and watches other threads make meanwhile down the websocket path, and
    two streams at once on one client leave it swapped for good.

    An exec answers the command's output; a command that exits non-zero (the error
    channel's ``NonZeroExitCode`` status) is a :class:`~chaos.errors.PlatformError`
    naming the code and its stderr, and a session that closes without a status (the
    command killed its own exec) is :class:`ExecInterrupted`.
    """

    def __init__(self, api: HoldsApiClient) -> None:
        # The stubs describe an older ApiClient (no configuration attribute).
        raw: Any = api.api_client
        self._configuration = raw.configuration

    def _client(self) -> Any:
        # Any: the stubs describe an older ApiClient (no close()).
        return ApiClient(self._configuration)

    def exec(
        self, namespace: str, pod: str, container: str, command: Sequence[str], timeout_s: float
    ) -> str:
        where = f"exec in {namespace}/{pod}/{container}"
        client = self._client()
        try:
            session: Any = kube_stream.stream(
                CoreV1Api(client).connect_get_namespaced_pod_exec,
                pod,
                namespace,
                container=container,
                command=list(command),
                stderr=True,
                stdin=False,
                stdout=True,
                tty=False,
                _preload_content=False,
            )
            try:
                session.run_forever(timeout=timeout_s)
                if session.is_open():
                    raise PlatformError(
                        f"{where}: {command[0]} still running after {timeout_s:g} s"
                    )
                stdout = str(session.read_stdout() or "")
                stderr = str(session.read_stderr() or "")
                status = str(session.read_channel(ERROR_CHANNEL) or "")
            finally:
                session.close()
                # websocket-client's close() returns early once the server has closed
                # (what every exec ends with) and leaves the socket open: shut it here.
                if session.sock is not None:
                    session.sock.shutdown()
        except WebSocketConnectionClosedException as exc:
            raise ExecInterrupted(f"{where}: {exc}") from exc
        except (ApiException, OSError, ValueError, WebSocketException) as exc:
            raise PlatformError(f"{where} failed: {exc}") from exc
        finally:
            client.close()
        exit_code = exit_status(status, where)
        if exit_code != 0:
            said = stderr.strip().splitlines()[-1:] or stdout.strip().splitlines()[-1:]
            raise PlatformError(
                f"{where}: {' '.join(command)[:80]} exited {exit_code}"
                + (f": {said[0][:200]}" if said else "")
            )
        return stdout

    def http(
        self, namespace: str, pod: str, port: int, method: str, path: str, timeout_s: float
    ) -> bytes:
        client = self._client()
        try:
            forward: Any = kube_stream.portforward(
                CoreV1Api(client).connect_get_namespaced_pod_portforward,
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
            refused = forward.error(port)
            # Closed by the server: websocket-client's close() then leaves the socket open.
            if not forward.websocket.connected:
                forward.websocket.shutdown()
        except (ApiException, OSError, ValueError, WebSocketException) as exc:
            raise PlatformError(f"port-forward to {namespace}/{pod}:{port} failed: {exc}") from exc
        finally:
            client.close()
        if refused and not chunks:
            raise PlatformError(f"port-forward to {namespace}/{pod}:{port}: {refused.strip()}")
        return _http_body(b"".join(chunks), f"{namespace}/{pod}:{port}{path}")


def exit_status(status: str, where: str) -> int:
    """The exit code in an exec's error-channel ``Status`` (0: Success).

    No status at all: the session closed before the command ended.
    """
    if not status.strip():
        raise ExecInterrupted(f"{where}: the session closed before the command ended")
    try:
        answer = json.loads(status)
    except ValueError as exc:
        raise PlatformError(f"{where}: not a Status on the error channel: {status[:80]!r}") from exc
    if not isinstance(answer, dict):
        raise PlatformError(f"{where}: not a Status on the error channel: {status[:80]!r}")
    if answer.get("status") == "Success":
        return 0
    if answer.get("reason") == "NonZeroExitCode":
        for cause in (answer.get("details") or {}).get("causes") or []:
            if cause.get("reason") == "ExitCode" and str(cause.get("message", "")).isdigit():
                return int(cause["message"])
    raise PlatformError(f"{where}: {answer.get('message') or answer.get('reason') or status[:80]}")


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
