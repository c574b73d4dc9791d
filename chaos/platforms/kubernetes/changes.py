"""Every write a fault makes to a cluster, recorded before it is made, undone exactly.

:class:`ChangeLedger` (:mod:`chaos.platforms.kubernetes.ledger`, re-exported here) is a
write-ahead log in the run directory (``kubernetes-changes.jsonl``): a change is written
(and fsynced) *before* the API call that makes it, and marked done once undone. ``clean``
after a dead runner undoes every change not marked done, newest first, from this file alone.

:class:`ClusterWriter` makes the writes. Each kind of write has one undo:

=============  =====================================================  ==========================
action         the write                                              its undo
=============  =====================================================  ==========================
``field``      PUT the object with one field changed (read-modify-    PUT the recorded value back
               write on ``resourceVersion``, 409 re-read and retried) (or remove the field)
``create``     POST an object carrying the ownership label and run    DELETE it, if it still
               annotation                                             carries this run's mark
``scale``      PUT ``/scale``                                         PUT ``/scale`` with the
                                                                      recorded replica count
``runtime``    POST ``/runtime_modify`` on a proxy's admin port        POST the clearing values
``delete``     DELETE a pod (its controller brings a new one)          none needed
``exec``       a command in a container                               none needed
=============  =====================================================  ==========================

Applying the same field change twice records the original value once (the second
apply is built from it, so nothing stacks); undoing twice is harmless; an object
already gone counts as undone. :meth:`ClusterWriter.undo_all` stops at the first undo that
fails (nothing older is undone under a newer change still in place) and names, in one line,
every change it leaves applied for ``clean``. With ``dry_run`` nothing is read or written: every
call and its undo is listed instead (``run --dry-run``).
"""

from __future__ import annotations

import copy
import threading
import urllib.parse
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from chaos.errors import FaultError, PlatformError
from chaos.platforms.kubernetes.api import KubeApi
from chaos.platforms.kubernetes.kinds import DEPLOYMENT, KINDS, POD, KubeObject, ResourceKind
from chaos.platforms.kubernetes.ledger import (
    LEDGER_FILE,
    Change,
    ChangeLedger,
    LedgerHeader,
    ledger_headers,
    mark_done,
    pending_changes,
    read_ledger,
)
from chaos.platforms.kubernetes.names import ANNOTATION_RUN, LABEL_MANAGED_BY, MANAGED_BY
from chaos.platforms.kubernetes.podexec import PodExec

# -- JSON paths --------------------------------------------------------------------------


def get_path(obj: Mapping[str, Any], path: Sequence[str]) -> tuple[bool, Any]:
    node: Any = obj
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return False, None
        node = node[key]
    return True, copy.deepcopy(node)


def set_path(obj: dict[str, Any], path: Sequence[str], value: Any) -> None:
    node = obj
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = copy.deepcopy(value)


def del_path(obj: dict[str, Any], path: Sequence[str]) -> None:
    node: Any = obj
    for key in path[:-1]:
        if not isinstance(node, dict) or key not in node:
            return
        node = node[key]
    if isinstance(node, dict):
        node.pop(path[-1], None)


# -- the writer --------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedCall:
    """A call a dry run would make, and how it would be undone."""

    call: str
    undo: str

    def line(self) -> str:
        return f"{self.call}; undo: {self.undo}"


def _annotations(obj: Mapping[str, Any]) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("annotations") or {})


class ClusterWriter:
    """Makes a run's writes through :class:`KubeApi`, each recorded first; undoes them."""

    def __init__(
        self,
        api: KubeApi | None,
        pod_exec: PodExec | None,
        ledger: ChangeLedger | None,
        run_id: str,
        *,
        dry_run: bool = False,
    ) -> None:
        if not dry_run and (api is None or ledger is None):
            raise ValueError("a writer that writes needs an API and a ledger")
        self._api = api
        self._exec = pod_exec
        self._ledger = ledger
        self.run_id = run_id
        self.dry_run = dry_run
        #: What a dry run would have done, in order.
        self.planned: list[PlannedCall] = []
        self._lock = threading.RLock()

    @property
    def api(self) -> KubeApi:
        if self._api is None:
            raise FaultError("dry run: no cluster to read from")
        return self._api

    @property
    def pod_exec(self) -> PodExec:
        if self._exec is None:
            raise FaultError("no exec/port-forward access to pods here")
        return self._exec

    def active(self) -> list[Change]:
        return self._ledger.active() if self._ledger else []

    def _new(self, **kwargs: Any) -> Change:
        return Change(id=uuid.uuid4().hex[:12], run_id=self.run_id, **kwargs)

    def _plan(self, call: str, undo: str) -> None:
        self.planned.append(PlannedCall(call, undo))

    # -- writes --------------------------------------------------------------------------

    def set_field(
        self,
        kind: ResourceKind,
        namespace: str,
        name: str,
        path: Sequence[str],
        build: Callable[[Any], Any],
        *,
        detail: str = "",
        layer: str = "",
    ) -> Change | None:
        """Set ``path`` of an object to ``build(value as first read)``; None in a dry run.

        A second call for the same field and ``layer`` builds from the value recorded by
        the first, so applying twice does not stack. Another layer's write is a change of
        its own, built from the value as it is then (a fault over the run's data-plane
        deviations keeps them, and its undo goes back to them).
        """
        dotted = ".".join(path)
        target = f"{kind.path(namespace, name)}"
        if self.dry_run:
            self._plan(f"PUT {target} ({dotted}: {detail})", f"PUT {target} ({dotted} as read)")
            return None
        with self._lock:
            change = self._find("field", kind, namespace, name, tuple(path), layer)
            if change is None:
                current = self.api.get(kind, namespace, name)
                if current is None:
                    raise FaultError(f"{kind.kind} {namespace}/{name} does not exist")
                had, before = get_path(current, path)
                missing_from = next(
                    (i for i in range(len(path)) if not get_path(current, path[: i + 1])[0]), -1
                )
                change = self._new(
                    action="field",
                    api_version=kind.api_version,
                    kind=kind.kind,
                    namespace=namespace,
                    name=name,
                    path=tuple(path),
                    before=before,
                    had=had,
                    missing_from=missing_from,
                    annotation_before=_annotations(current).get(ANNOTATION_RUN),
                    detail=detail,
                    layer=layer,
                )
                assert self._ledger is not None
                self._ledger.intend(change)
            wanted = build(copy.deepcopy(change.before) if change.had else None)

            def edit(obj: KubeObject) -> KubeObject:
                set_path(obj, path, wanted)
                obj["metadata"].setdefault("annotations", {})[ANNOTATION_RUN] = self.run_id
                return obj

            if self.api.update(kind, namespace, name, edit) is None:
                raise FaultError(f"{kind.kind} {namespace}/{name} disappeared while changing it")
            return change

    def create(self, manifest: KubeObject, *, detail: str = "") -> Change | None:
        """Create an object marked as this run's; a second call finds it and does nothing."""
        kind = KINDS[(manifest["apiVersion"], manifest["kind"])]
        meta = manifest["metadata"]
        namespace, name = str(meta.get("namespace", "")), str(meta["name"])
        suffix = f": {detail}" if detail else ""
        if self.dry_run:
            self._plan(
                f"POST {kind.path(namespace or None)} ({kind.kind} {name}{suffix})",
                f"DELETE {kind.path(namespace or None, name)} if it still carries this run's mark",
            )
            return None
        with self._lock:
            existing = self._find("create", kind, namespace, name, ())
            if existing is not None:
                return existing
            change = self._new(
                action="create",
                api_version=kind.api_version,
                kind=kind.kind,
                namespace=namespace,
                name=name,
                detail=detail,
            )
            assert self._ledger is not None
            self._ledger.intend(change)
            marked = copy.deepcopy(manifest)
            marked["metadata"].setdefault("labels", {})[LABEL_MANAGED_BY] = MANAGED_BY
            marked["metadata"].setdefault("annotations", {})[ANNOTATION_RUN] = self.run_id
            self.api.create(marked)
            return change

    def scale(self, namespace: str, deployment: str, replicas: int) -> Change | None:
        """Scale a Deployment; the first call records the count to restore."""
        target = DEPLOYMENT.path(namespace, deployment, "scale")
        if self.dry_run:
            self._plan(
                f"PUT {target} (replicas: {replicas})",
                f"PUT {target} (replicas as read before)",
            )
            return None
        with self._lock:
            change = self._find("scale", DEPLOYMENT, namespace, deployment, ())
            if change is None:
                previous = self.api.read_scale(namespace, deployment)
                change = self._new(
                    action="scale",
                    api_version=DEPLOYMENT.api_version,
                    kind=DEPLOYMENT.kind,
                    namespace=namespace,
                    name=deployment,
                    before=previous,
                    detail=f"replicas {previous} -> {replicas}",
                )
                assert self._ledger is not None
                self._ledger.intend(change)
            self.api.scale(namespace, deployment, replicas)
            return change

    def runtime(
        self,
        namespace: str,
        pod: str,
        container: str,
        port: int,
        values: Mapping[str, str],
        undo_values: Mapping[str, str],
    ) -> Change | None:
        """Set Envoy admin runtime keys on a pod's proxy (a port-forward to ``port``)."""
        query = urllib.parse.urlencode(dict(values))
        target = f"POST {namespace}/{pod}:{port}/runtime_modify"
        if self.dry_run:
            self._plan(f"{target}?{query} (port-forward)", f"{target} clearing the same keys")
            return None
        with self._lock:
            change = self._find("runtime", POD, namespace, pod, (str(port),))
            if change is None:
                change = self._new(
                    action="runtime",
                    api_version=POD.api_version,
                    kind=POD.kind,
                    namespace=namespace,
                    name=pod,
                    path=(str(port),),
                    port=port,
                    container=container,
                    undo_values=dict(undo_values),
                )
                assert self._ledger is not None
                self._ledger.intend(change)
            self.pod_exec.http(namespace, pod, port, "POST", f"/runtime_modify?{query}", 5.0)
            return change

    def delete_pod(self, namespace: str, pod: str, *, detail: str = "") -> None:
        """Delete a pod its controller replaces (nothing to undo, but it is journaled)."""
        if self.dry_run:
            self._plan(
                f"DELETE {POD.path(namespace, pod)} ({detail})",
                "none: its controller creates a new pod",
            )
            return
        change = self._new(
            action="delete",
            api_version=POD.api_version,
            kind=POD.kind,
            namespace=namespace,
            name=pod,
            detail=detail,
        )
        assert self._ledger is not None
        self._ledger.intend(change)
        self.api.delete(POD, namespace, pod)
        self._ledger.done(change)

    def exec(self, namespace: str, pod: str, container: str, command: Sequence[str]) -> str:
        """Run a command in a container (journaled; nothing to undo)."""
        if self.dry_run:
            self._plan(
                f"exec {namespace}/{pod} -c {container} -- {' '.join(command)}",
                "none: the kubelet restarts the container",
            )
            return ""
        change = self._new(
            action="exec",
            api_version=POD.api_version,
            kind=POD.kind,
            namespace=namespace,
            name=pod,
            container=container,
            detail=" ".join(command),
        )
        assert self._ledger is not None
        self._ledger.intend(change)
        try:
            return self.pod_exec.exec(namespace, pod, container, command, 10.0)
        finally:
            self._ledger.done(change)

    # -- undo ----------------------------------------------------------------------------

    def _find(
        self,
        action: str,
        kind: ResourceKind,
        namespace: str,
        name: str,
        path: tuple[str, ...],
        layer: str = "",
    ) -> Change | None:
        for change in self.active():
            if (
                change.layer == layer
                and change.action == action
                and change.kind == kind.kind
                and change.api_version == kind.api_version
                and change.namespace == namespace
                and change.name == name
                and change.path == path
            ):
                return change
        return None

    def find(
        self, action: str, kind: ResourceKind, namespace: str, name: str, path: Sequence[str] = ()
    ) -> Change | None:
        """The active change of that kind on that object, if this run made one."""
        return self._find(action, kind, namespace, name, tuple(path))

    def undo(self, change: Change) -> str:
        """Undo one change (idempotent; an object already gone is fine); a line saying what."""
        if self.dry_run:
            return f"would undo {change.action} on {change.where()}"
        with self._lock:
            line = undo_change(self.api, self._exec, change)
            if self._ledger is not None:
                self._ledger.done(change)
            return line

    def undo_all(self) -> list[str]:
        """Undo every active change, newest first, stopping at the first undo that fails.

        An older change may be what a newer one stands on (a route a later change needs),
        so nothing older is undone while a newer change is still in place: the failed
        change and every older one stay in the ledger for ``clean``, and the error says, in
        one line, which one failed and every change still applied.
        """
        lines: list[str] = []
        pending = list(reversed(self.active()))
        for n, change in enumerate(pending):
            try:
                lines.append(self.undo(change))
            except PlatformError as exc:
                left = ", ".join(_named(c) for c in pending[n:])
                why = " ".join(str(exc).split())  # one line, whatever the server said
                raise PlatformError(
                    f"could not undo {_named(change)}: {why}; {n} newer undone, "
                    f"{len(pending) - n} still applied (newest first): {left}"
                ) from exc
        return lines


def _named(change: Change) -> str:
    """A change in a few words: ``field VirtualService sc-mesh/checkout spec.http``."""
    path = f" {'.'.join(change.path)}" if change.path else ""
    return f"{change.action} {change.where()}{path}"


def undo_change(api: KubeApi, pod_exec: PodExec | None, change: Change) -> str:
    """The undo of one recorded change, against the cluster as it is now."""
    where = change.where()
    if change.action == "field":
        kind = change.resource

        def restore(obj: KubeObject) -> KubeObject | None:
            had, now = get_path(obj, change.path)
            annotations = obj["metadata"].get("annotations") or {}
            mark = annotations.get(ANNOTATION_RUN)
            if (had, now) == (change.had, change.before) and mark != change.run_id:
                return None  # already as recorded
            if change.had:
                set_path(obj, change.path, change.before)
            else:
                cut = change.missing_from if change.missing_from >= 0 else len(change.path) - 1
                del_path(obj, change.path[: cut + 1])
            if mark == change.run_id:
                if change.annotation_before is None:
                    annotations.pop(ANNOTATION_RUN, None)
                else:
                    annotations[ANNOTATION_RUN] = change.annotation_before
                if annotations:
                    obj["metadata"]["annotations"] = annotations
                else:  # absent and empty are the same to the API; absent is what was read
                    obj["metadata"].pop("annotations", None)
            return obj

        stored = api.update(kind, change.namespace or None, change.name, restore)
        if stored is None:
            return f"{where}: already gone"
        return f"{where}: {'.'.join(change.path)} restored"
    if change.action == "create":
        kind = change.resource
        current = api.get(kind, change.namespace or None, change.name)
        if current is None:
            return f"{where}: already gone"
        if _annotations(current).get(ANNOTATION_RUN) != change.run_id:
            return f"{where}: no longer this run's; left alone"
        api.delete(kind, change.namespace or None, change.name)
        return f"{where}: deleted"
    if change.action == "scale":
        if api.get(DEPLOYMENT, change.namespace, change.name) is None:
            return f"{where}: already gone"
        api.scale(change.namespace, change.name, int(change.before))
        return f"{where}: scaled back to {int(change.before)}"
    if change.action == "runtime":
        if api.get(POD, change.namespace, change.name) is None:
            return f"{where}: pod gone (its proxy took the runtime overrides with it)"
        if pod_exec is None:
            raise PlatformError(f"{where}: no port-forward access to clear the runtime keys")
        query = urllib.parse.urlencode(dict(change.undo_values))
        pod_exec.http(
            change.namespace, change.name, change.port, "POST", f"/runtime_modify?{query}", 5.0
        )
        return f"{where}: runtime keys cleared"
    return f"{where}: {change.action}: nothing to undo"


__all__ = [
    "LEDGER_FILE",
    "Change",
    "ChangeLedger",
    "ClusterWriter",
    "LedgerHeader",
    "PlannedCall",
    "ledger_headers",
    "mark_done",
    "pending_changes",
    "read_ledger",
    "undo_change",
]
