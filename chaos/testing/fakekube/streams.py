"""Exec and port-forward as the API server serves them: websockets, channel-prefixed frames.

The unmodified client's ``kubernetes.stream`` connects with the ``v5.channel.k8s.io`` and
``v4.channel.k8s.io`` sub-protocols; the fake answers ``v4.channel.k8s.io`` (the API
server's own channel protocol, which it negotiates with clients that offer no newer one):

* exec (``GET .../pods/NAME/exec?command=...&container=...``): the command's stdout on
  channel 1, stderr on 2, then one ``Status`` on the error channel 3 (``Success``, or
  ``Failure`` / ``NonZeroExitCode`` with the exit code in ``details.causes``, as the
  kubelet reports it), then the close. A command that took its own session down (a
  proxy killed by the exec) closes with no status, as a real session does.
* port-forward (``GET .../pods/NAME/portforward?ports=N``): the two first frames name
  the port on the data channel 0 and the error channel 1; the client's bytes on channel 0
  are one HTTP request, the pod's answer goes back on channel 0; a refused connection is
  text on channel 1 (what the kubelet sends).

A missing pod is 404 and a container the pod does not have is 400, before the upgrade,
as the API server answers. The commands and the pods' ports are played by a
:class:`PodStreams` (:class:`~.podexec.FakePodExec`), in a thread pool, so REST calls,
watches and several streams are served at the same time.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Protocol

from aiohttp import WSMsgType, web

from chaos.errors import PlatformError
from chaos.testing.fakekube.rules import ApiError, Obj
from chaos.testing.fakekube.store import FakeCluster

PROTOCOL = "v4.channel.k8s.io"
STDOUT, STDERR, ERROR = 1, 2, 3


@dataclass(frozen=True)
class ExecResult:
    """What a command in a container did; ``exit_code`` None: the session was cut."""

    stdout: str
    stderr: str
    exit_code: int | None


class PortRefused(PlatformError):
    """Nothing listens on the pod's port (the kubelet's ``connection refused``)."""


class PodStreams(Protocol):
    """What runs behind exec and port-forward: the pods' processes and ports."""

    def run(self, namespace: str, pod: str, container: str, command: Sequence[str]) -> ExecResult:
        """Run ``command`` in the container, until it ends."""
        ...

    def forward(self, namespace: str, pod: str, port: int, method: str, path: str) -> bytes:
        """One HTTP request to the pod's port: the raw HTTP response (or PortRefused)."""
        ...


def _containers(pod: Obj) -> set[str]:
    spec = pod.get("spec") or {}
    return {
        str(c.get("name"))
        for field in ("containers", "initContainers", "ephemeralContainers")
        for c in spec.get(field) or []
    }


def exit_status(command: Sequence[str], code: int) -> Obj:
    """The error channel's ``Status`` for an exit code (what the kubelet sends)."""
    if code == 0:
        return {"metadata": {}, "status": "Success"}
    return {
        "metadata": {},
        "status": "Failure",
        "message": (
            f"command terminated with non-zero exit code: error executing command "
            f"{list(command)}: exit status {code}"
        ),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
    }


async def serve_exec(
    request: web.Request,
    cluster: FakeCluster,
    pods: PodStreams,
    pool: Executor,
    namespace: str,
    name: str,
) -> web.StreamResponse:
    pod = cluster.get(cluster.resources[("v1", "pods")], namespace, name)
    command = request.query.getall("command", [])
    container = request.query.get("container", "")
    if not command:
        raise ApiError(400, "BadRequest", "you must specify at least 1 command")
    if container not in _containers(pod):
        raise ApiError(400, "BadRequest", f"container {container} is not valid for pod {name}")
    ws = web.WebSocketResponse(protocols=(PROTOCOL,))
    await ws.prepare(request)
    loop = asyncio.get_running_loop()
    result = await loop.run_in_executor(pool, pods.run, namespace, name, container, command)
    try:
        if result.stdout:
            await ws.send_bytes(bytes([STDOUT]) + result.stdout.encode())
        if result.stderr:
            await ws.send_bytes(bytes([STDERR]) + result.stderr.encode())
        if result.exit_code is not None:
            status = json.dumps(exit_status(command, result.exit_code))
            await ws.send_bytes(bytes([ERROR]) + status.encode())
    except ConnectionError:
        pass  # the client went away first
    await ws.close()
    return ws


async def serve_portforward(
    request: web.Request,
    cluster: FakeCluster,
    pods: PodStreams,
    pool: Executor,
    namespace: str,
    name: str,
) -> web.StreamResponse:
    cluster.get(cluster.resources[("v1", "pods")], namespace, name)
    ports = [p for p in request.query.get("ports", "").split(",") if p]
    if len(ports) != 1 or not ports[0].isdigit():
        raise ApiError(400, "BadRequest", "the fake forwards exactly one port per session")
    port = int(ports[0])
    ws = web.WebSocketResponse(protocols=(PROTOCOL,))
    await ws.prepare(request)
    number = port.to_bytes(2, "little")
    await ws.send_bytes(b"\x00" + number)
    await ws.send_bytes(b"\x01" + number)
    received = b""
    async for message in ws:
        if message.type != WSMsgType.BINARY or not message.data:
            continue
        if message.data[0] == 0:
            received += message.data[1:]
        if b"\r\n\r\n" in received:
            break
    head = received.split(b"\r\n", 1)[0].decode(errors="replace").split(" ")
    if len(head) < 2:
        await ws.close()
        return ws
    loop = asyncio.get_running_loop()
    try:
        method, path = head[0], head[1]
        answer = await loop.run_in_executor(pool, pods.forward, namespace, name, port, method, path)
    except PortRefused as exc:
        text = f"error forwarding port {port} to pod {name}: {exc}"
        await ws.send_bytes(b"\x01" + text.encode())
    else:
        await ws.send_bytes(b"\x00" + answer)
    await ws.close()
    return ws


def http_response(status: int, body: bytes, reason: str = "") -> bytes:
    """A raw HTTP/1.1 response (what a pod's server writes on the forwarded port)."""
    reason = reason or {200: "OK", 404: "Not Found", 503: "Service Unavailable"}.get(status, "")
    head = f"HTTP/1.1 {status} {reason}\r\ncontent-length: {len(body)}\r\nconnection: close\r\n"
    return head.encode() + b"\r\n" + body


__all__ = [
    "PROTOCOL",
    "ExecResult",
    "PodStreams",
    "PortRefused",
    "exit_status",
    "http_response",
    "serve_exec",
    "serve_portforward",
]
