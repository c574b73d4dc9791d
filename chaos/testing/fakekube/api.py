"""A fake Kubernetes API server on loopback, for tests and dry runs without a cluster.

It speaks the real HTTP API (the unmodified official client talks to it through a
kubeconfig this module writes) for what the platform uses:

* namespaces, pods (with status), secrets, configmaps, services, deployments
  (and their ``/scale``), daemonsets, jobs, and custom objects of registered
  groups (Istio's VirtualService, RequestAuthentication, ... by default);
* get, list with ``labelSelector`` (``=``, ``==``, ``!=``, ``in``, ``notin``,
  exists, ``!``) and ``fieldSelector`` (``metadata.name``, ``metadata.namespace``,
  ``spec.nodeName``, ``status.phase``), watch (chunked JSON lines, from a
  ``resourceVersion`` or with the current objects first, ended after
  ``timeoutSeconds``, or sooner with ``max_watch_s``), create, replace, delete,
  merge patch (RFC 7386; a strategic merge patch is treated as one), JSON patch
  (RFC 6902), ``/status``;
* a ``resourceVersion`` per write, 409 ``Conflict`` on a stale one (in a PUT body
  or a patch's ``metadata``), 409 ``AlreadyExists``, 404 ``NotFound`` and 401 in
  the real ``Status`` format;
* the workload controllers: a Deployment rolls through ReplicaSets (maxSurge,
  maxUnavailable, readiness, status as the real controller reports it:
  :mod:`.deployments`), a deleted pod of a ReplicaSet or a DaemonSet comes back under
  a new name, a Job starts one pod, deleting an owner
  deletes its pods by ``propagationPolicy`` (a Job orphans them without one, as
  batch/v1 does), and :meth:`FakeCluster.restart_container`
  plays the kubelet restarting a container (its ``restartCount`` rises).

* exec and port-forward over websockets (:mod:`.streams`), played by a
  :class:`~.streams.PodStreams` (:class:`~.podexec.FakePodExec` by default), served
  while REST calls and watches are, from any number of client threads.

Not modelled: defaulting beyond a pod's status, strategic-merge list semantics, field
managers (server-side apply).
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp import web

from chaos.testing.fakekube.podexec import FakePodExec
from chaos.testing.fakekube.resourcemetrics import FakeResourceMetrics, serve_node_proxy
from chaos.testing.fakekube.rules import (
    ApiError,
    Obj,
    field_matches,
    json_patch,
    label_matches,
    merge_patch,
)
from chaos.testing.fakekube.store import FakeCluster, Resource, selected
from chaos.testing.fakekube.streams import PodStreams, serve_exec, serve_portforward

TOKEN = "sidecar-chaos-fake-token"

# -- HTTP --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    resource: Resource
    namespace: str | None  # None: all namespaces (a list) or cluster-scoped
    name: str | None
    sub: str | None


def _at(parts: list[str], index: int) -> str | None:
    return parts[index] if index < len(parts) else None


def _route(cluster: FakeCluster, path: str) -> Route:
    parts = [p for p in path.split("/") if p]
    if parts[:1] == ["api"] and len(parts) >= 3:
        prefix, rest = parts[1], parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 4:
        prefix, rest = f"{parts[1]}/{parts[2]}", parts[3:]
    else:
        raise ApiError(404, "NotFound", "the server could not find the requested resource")
    if (
        len(rest) >= 3
        and rest[0] == "namespaces"
        and (prefix, rest[2]) in cluster.resources
        and cluster.resources[(prefix, rest[2])].namespaced
    ):
        resource = cluster.resource(prefix, rest[2])
        tail = rest[3:]
        return Route(resource, rest[1], _at(tail, 0), _at(tail, 1))
    resource = cluster.resource(prefix, rest[0])
    name, sub = _at(rest, 1), _at(rest, 2)
    if resource.namespaced and name is not None:
        raise ApiError(404, "NotFound", "the server could not find the requested resource")
    return Route(resource, None, name, sub)


def _scale_of(deployment: Obj) -> Obj:
    meta = deployment["metadata"]
    selector = (deployment.get("spec") or {}).get("selector", {}).get("matchLabels") or {}
    return {
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {
            "name": meta["name"],
            "namespace": meta.get("namespace", ""),
            "uid": meta.get("uid", ""),
            "resourceVersion": meta.get("resourceVersion", ""),
            "creationTimestamp": meta.get("creationTimestamp"),
        },
        "spec": {"replicas": int((deployment.get("spec") or {}).get("replicas", 1))},
        "status": {
            "replicas": int((deployment.get("status") or {}).get("replicas", 0)),
            "selector": ",".join(f"{k}={v}" for k, v in sorted(selector.items())),
        },
    }


class FakeApiServer:
    """The fake on ``127.0.0.1`` and an ephemeral port, in a thread of its own.

    A context manager: ``with FakeApiServer() as server: server.write_kubeconfig(path)``.

    ``max_watch_s`` ends every watch after at most that long, as a real API server may
    end one at any time (a client watches again from its last ``resourceVersion``).
    Tests use it so that a client closing its watcher does not wait out ``timeoutSeconds``
    (whole seconds).
    """

    def __init__(
        self,
        cluster: FakeCluster | None = None,
        *,
        version: str = "v1.34.0",
        max_watch_s: float | None = None,
        pods: PodStreams | None = None,
    ) -> None:
        self.cluster = cluster or FakeCluster()
        #: What exec and port-forward reach (:class:`~.podexec.FakePodExec` by default).
        self.pods: PodStreams = pods or FakePodExec(self.cluster)
        #: The kubelets' ``/metrics/resource`` behind each node's proxy (:mod:`.resourcemetrics`).
        self.resource_metrics = FakeResourceMetrics(self.cluster)
        self._pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="fake-kube-stream")
        self.version = version
        self.max_watch_s = max_watch_s
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._serve, name="fake-kube-api", daemon=True)
        self._started = threading.Event()
        self._stopping: asyncio.Event | None = None
        self._runner: web.AppRunner | None = None

    @property
    def port(self) -> int:
        if self._sock is None:
            raise RuntimeError("the fake API server is not started")
        return int(self._sock.getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def write_kubeconfig(self, path: Path, context: str = "kind-sidecar-chaos") -> Path:
        """A kubeconfig whose ``context`` points at this server (bearer token auth)."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake", "user": {"token": TOKEN}}],
            "contexts": [{"name": context, "context": {"cluster": "fake", "user": "fake"}}],
            "current-context": context,
        }
        path.write_text(json.dumps(config, indent=2), encoding="utf-8")
        return path

    # -- lifecycle -----------------------------------------------------------------------

    def __enter__(self) -> FakeApiServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._loop = asyncio.new_event_loop()
        self._thread.start()
        if not self._started.wait(10.0):
            raise RuntimeError("the fake API server did not start")

    def stop(self) -> None:
        if self._loop is not None and self._stopping is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stopping.set)
            self._thread.join(timeout=10.0)
        if self._sock is not None:
            self._sock.close()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _serve(self) -> None:
        loop = self._loop
        assert loop is not None  # set by start()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._main())
        finally:
            loop.close()

    async def _main(self) -> None:
        self._stopping = asyncio.Event()
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        assert self._sock is not None
        await web.SockSite(self._runner, self._sock).start()
        self._started.set()
        await self._stopping.wait()
        await self._runner.cleanup()

    # -- requests ------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.cluster.calls.append(
            (request.method, request.path_qs, request.headers.get("Content-Type", ""))
        )
        try:
            if request.headers.get("Authorization") != f"Bearer {TOKEN}":
                raise ApiError(401, "Unauthorized", "Unauthorized")
            self.cluster.tick()  # the kubelet's readiness reports due by now
            return await self._dispatch(request)
        except ApiError as err:
            return web.json_response(err.status(), status=err.code)
        except (ValueError, KeyError, TypeError) as exc:
            bad = ApiError(400, "BadRequest", f"bad request: {exc}")
            return web.json_response(bad.status(), status=400)

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if path == "/version":
            major, minor = self.version.lstrip("v").split(".")[:2]
            return web.json_response(
                {"major": major, "minor": minor, "gitVersion": self.version, "platform": "fake"}
            )
        route = _route(self.cluster, path)
        query = request.query
        method = request.method
        cluster = self.cluster
        namespace = route.namespace or ""
        if route.name is None:
            if method == "GET":
                if query.get("watch") in ("true", "1"):
                    return await self._watch(request, route)
                items = cluster.select(
                    route.resource,
                    route.namespace,
                    query.get("labelSelector"),
                    query.get("fieldSelector"),
                )
                for item in items:
                    item.pop("apiVersion", None)
                    item.pop("kind", None)
                return web.json_response(
                    {
                        "apiVersion": route.resource.prefix,
                        "kind": f"{route.resource.kind}List",
                        "metadata": {"resourceVersion": str(cluster.resource_version)},
                        "items": items,
                    }
                )
            if method == "POST":
                body = await request.json()
                return web.json_response(
                    cluster.create(route.resource, namespace, body), status=201
                )
            raise ApiError(405, "MethodNotAllowed", f"{method} is not allowed on a collection")
        name = route.name
        if route.sub == "scale":
            if route.resource.kind != "Deployment":
                raise ApiError(404, "NotFound", "no scale subresource")
            return await self._scale(request, route)
        if route.resource.kind == "Pod" and route.sub in ("exec", "portforward"):
            serve = serve_exec if route.sub == "exec" else serve_portforward
            return await serve(request, cluster, self.pods, self._pool, namespace, name)
        if route.resource.kind == "Node" and route.sub == "proxy" and method == "GET":
            return serve_node_proxy(self.resource_metrics, name, path)
        if route.sub not in (None, "status"):
            raise ApiError(404, "NotFound", f"no subresource {route.sub}")
        status_only = route.sub == "status"
        if method == "GET":
            return web.json_response(cluster.get(route.resource, namespace, name))
        if method == "PUT":
            body = await request.json()
            return web.json_response(
                cluster.replace(route.resource, namespace, name, body, status_only=status_only)
            )
        if method == "PATCH":
            patched = self._patched(
                cluster.get(route.resource, namespace, name),
                await request.json(),
                request.headers.get("Content-Type", ""),
            )
            return web.json_response(
                cluster.replace(route.resource, namespace, name, patched, status_only=status_only)
            )
        if method == "DELETE":
            options = await request.json() if request.can_read_body else {}
            policy = query.get("propagationPolicy") or (options or {}).get("propagationPolicy")
            return web.json_response(cluster.delete(route.resource, namespace, name, policy))
        raise ApiError(405, "MethodNotAllowed", f"{method} is not allowed")

    @staticmethod
    def _patched(current: Obj, patch: Any, content_type: str) -> Obj:
        """``current`` with ``patch`` applied; a ``resourceVersion`` in a merge patch is checked."""
        media = content_type.split(";")[0].strip()
        if media == "application/json-patch+json":
            if not isinstance(patch, list):
                raise ApiError(400, "BadRequest", "a JSON patch is a list of operations")
            result = json_patch(current, patch)
            result.setdefault("metadata", {})["resourceVersion"] = current["metadata"][
                "resourceVersion"
            ]
            return dict(result)
        if media in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
            if not isinstance(patch, dict):
                raise ApiError(400, "BadRequest", "a merge patch is an object")
            # A resourceVersion in the patch is a precondition (kept by the merge);
            # without one the write is unconditional (the current version is used).
            result = merge_patch(current, patch)
            if not (patch.get("metadata") or {}).get("resourceVersion"):
                result["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            return dict(result)
        raise ApiError(
            415,
            "UnsupportedMediaType",
            f"the body of the request was in an unknown "
            f"format - accepted media types include: application/json-patch+json, "
            f"application/merge-patch+json ({media!r})",
        )

    async def _scale(self, request: web.Request, route: Route) -> web.StreamResponse:
        cluster = self.cluster
        namespace, name = route.namespace or "", route.name or ""
        deployment = cluster.get(route.resource, namespace, name)
        if request.method == "GET":
            return web.json_response(_scale_of(deployment))
        if request.method == "PUT":
            scale = await request.json()
        elif request.method == "PATCH":
            scale = self._patched(
                _scale_of(deployment),
                await request.json(),
                request.headers.get("Content-Type", ""),
            )
        else:
            raise ApiError(405, "MethodNotAllowed", f"{request.method} is not allowed")
        replicas = (scale.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or replicas < 0:
            raise ApiError(422, "Invalid", "spec.replicas: must be a non-negative integer")
        deployment.setdefault("spec", {})["replicas"] = replicas
        deployment["metadata"]["resourceVersion"] = (scale.get("metadata") or {}).get(
            "resourceVersion"
        ) or deployment["metadata"]["resourceVersion"]
        stored = cluster.replace(route.resource, namespace, name, deployment, status_only=False)
        return web.json_response(_scale_of(stored))

    async def _watch(self, request: web.Request, route: Route) -> web.StreamResponse:
        cluster = self.cluster
        query = request.query
        labels, fields = query.get("labelSelector"), query.get("fieldSelector")
        timeout = min(float(query.get("timeoutSeconds", "1800")), 1800.0)
        if self.max_watch_s is not None:
            timeout = min(timeout, self.max_watch_s)
        since = query.get("resourceVersion", "")
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)

        async def send(type_: str, obj: Obj) -> None:
            line = json.dumps({"type": type_, "object": obj}) + "\n"
            await response.write(line.encode())

        if since in ("", "0"):
            rv = cluster.resource_version
            for obj in cluster.select(route.resource, route.namespace, labels, fields):
                await send("ADDED", obj)
        else:
            rv = int(since)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        stopping = self._stopping
        try:
            while loop.time() < deadline and not (stopping and stopping.is_set()):
                cluster.tick()
                for change in cluster.changes_since(rv):
                    rv = change.rv
                    if change.resource != route.resource:
                        continue
                    if route.namespace is not None and change.namespace != route.namespace:
                        continue
                    if selected(change.obj, labels, fields):
                        await send(change.type, change.obj)
                await asyncio.sleep(0.05)
            await response.write_eof()
        except ConnectionError:
            pass  # the client went away: the watch is over
        return response


def iter_objects(cluster: FakeCluster, prefix: str, plural: str) -> Iterator[Obj]:
    """Every object of one resource, all namespaces."""
    yield from cluster.select(cluster.resource(prefix, plural), None)


__all__ = [
    "TOKEN",
    "ApiError",
    "FakeApiServer",
    "FakeCluster",
    "field_matches",
    "iter_objects",
    "json_patch",
    "label_matches",
    "merge_patch",
]
