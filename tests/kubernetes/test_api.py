"""KubeApi, the adapter over the official client: errors, ownership, retries, pod status."""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from typing import Any

import pytest

from chaos.errors import InputError, PlatformError
from chaos.platforms.kubernetes.api import ConflictError, KubeApi
from chaos.platforms.kubernetes.kinds import CONFIGMAP, DEPLOYMENT, POD, VIRTUAL_SERVICE, kind_of
from chaos.platforms.kubernetes.names import LABEL_MANAGED_BY, MANAGED_BY
from chaos.platforms.kubernetes.podstate import PodState
from chaos.testing.fakekube.api import FakeApiServer
from tests.kubernetes.fakecluster import wait_rolled_out

OWNED = {LABEL_MANAGED_BY: MANAGED_BY}


def config_map(name: str, value: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "default", "labels": labels or OWNED},
        "data": {"value": value},
    }


def test_apply_creates_then_replaces_and_never_duplicates(api: KubeApi) -> None:
    first = api.apply(config_map("settings", "a"))
    second = api.apply(config_map("settings", "b"))
    assert second["metadata"]["uid"] == first["metadata"]["uid"]
    found = api.list_objects(CONFIGMAP, "default", OWNED)
    assert [(o["metadata"]["name"], o["data"]) for o in found] == [("settings", {"value": "b"})]


def test_apply_refuses_an_object_the_tool_does_not_own(api: KubeApi) -> None:
    api.create(config_map("theirs", "x", labels={"team": "payments"}))
    with pytest.raises(PlatformError, match="not managed by sidecar-chaos"):
        api.apply(config_map("theirs", "y"))
    assert api.get(CONFIGMAP, "default", "theirs")["data"] == {"value": "x"}  # type: ignore[index]


def test_nothing_is_ever_written_in_kube_system(api: KubeApi, fake_server: FakeApiServer) -> None:
    manifest = config_map("x", "y")
    manifest["metadata"]["namespace"] = "kube-system"
    with pytest.raises(PlatformError, match="kube-system"):
        api.apply(manifest)
    with pytest.raises(PlatformError, match="kube-system"):
        api.delete(POD, "kube-system", "coredns")
    with pytest.raises(PlatformError, match="kube-system"):
        api.scale("kube-system", "coredns", 0)
    writes = [c for c in fake_server.cluster.calls if c[0] != "GET" and "kube-system" in c[1]]
    assert writes == []


def test_not_found_reads_as_none_and_deleting_twice_is_fine(api: KubeApi) -> None:
    assert api.get(VIRTUAL_SERVICE, "default", "nope") is None
    api.create(config_map("once", "v"))
    assert api.delete(CONFIGMAP, "default", "once") is True
    assert api.delete(CONFIGMAP, "default", "once") is False


def test_a_stale_write_is_a_conflict_and_update_retries_it(
    api: KubeApi, fake_server: FakeApiServer
) -> None:
    api.create(config_map("counter", "0"))
    stale = api.get(CONFIGMAP, "default", "counter")
    assert stale is not None
    api.patch(CONFIGMAP, "default", "counter", {"data": {"value": "1"}})
    with pytest.raises(ConflictError, match="409"):
        api.replace(stale)
    raced = threading.Event()

    def bump(obj: dict[str, Any]) -> dict[str, Any]:
        if not raced.is_set():  # someone else writes between our read and our write
            raced.set()
            api.patch(CONFIGMAP, "default", "counter", {"data": {"other": "x"}})
        obj["data"]["value"] = str(int(obj["data"]["value"]) + 1)
        return obj

    stored = api.update(CONFIGMAP, "default", "counter", bump)
    assert stored is not None
    assert stored["data"] == {"value": "2", "other": "x"}  # re-read, nothing lost
    puts = [c for c in fake_server.cluster.calls if c[0] == "PUT" and "counter" in c[1]]
    assert len(puts) == 3  # the stale replace, the conflicting try, the retry


def test_json_patch_and_merge_patch(api: KubeApi) -> None:
    api.create(config_map("patched", "a"))
    api.patch(CONFIGMAP, "default", "patched", {"data": {"value": None, "new": "b"}})
    ops = [
        {"op": "test", "path": "/data/new", "value": "b"},
        {"op": "add", "path": "/data/more", "value": "c"},
    ]
    result = api.patch(CONFIGMAP, "default", "patched", ops)
    assert result["data"] == {"new": "b", "more": "c"}
    with pytest.raises(PlatformError, match="422"):
        api.patch(
            CONFIGMAP, "default", "patched", [{"op": "test", "path": "/data/new", "value": "x"}]
        )


def test_scale_returns_the_previous_count(api: KubeApi) -> None:
    api.create(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "labels": OWNED},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": "web"}]},
                },
            },
        }
    )
    assert len(api.list_pods("default", {"app": "web"})) == 2
    assert api.scale("default", "web", 0) == 2
    assert api.read_scale("default", "web") == 0
    assert api.list_pods("default", {"app": "web"}) == []
    assert api.scale("default", "web", 3) == 0
    wait_rolled_out(api, "default", "web")  # the new pods report Ready after their start
    assert api.get(DEPLOYMENT, "default", "web")["status"]["readyReplicas"] == 3  # type: ignore[index]


def test_pod_state_counts_native_sidecar_restarts() -> None:
    pod = {
        "metadata": {"name": "p", "namespace": "n", "labels": {"app": "a"}},
        "spec": {
            "nodeName": "w1",
            "initContainers": [
                {"name": "istio-init", "image": "i"},
                {"name": "istio-proxy", "image": "p", "restartPolicy": "Always"},
            ],
            "containers": [{"name": "app", "image": "a"}],
        },
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "False"}],
            "initContainerStatuses": [
                {
                    "name": "istio-init",
                    "ready": False,
                    "restartCount": 0,
                    "state": {"terminated": {}},
                },
                {
                    "name": "istio-proxy",
                    "ready": False,
                    "restartCount": 3,
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                },
            ],
            "containerStatuses": [
                {"name": "app", "ready": True, "restartCount": 1, "state": {"running": {}}}
            ],
        },
    }
    state = PodState.of(pod)
    assert [c.name for c in state.containers] == ["istio-proxy", "app"]
    proxy = state.container("istio-proxy")
    assert proxy is not None and proxy.native_sidecar and proxy.reason == "CrashLoopBackOff"
    assert state.restarts("istio-proxy") == 3 and state.restarts() == 4
    assert not state.ready and state.node_name == "w1"


def test_watch_streams_changes_after_a_resource_version(api: KubeApi) -> None:
    listed = api.request("GET", POD.path("default"))
    version = listed["metadata"]["resourceVersion"]
    api.create(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "w", "namespace": "default", "labels": {"app": "w"}},
            "spec": {"containers": [{"name": "c", "image": "c"}]},
        }
    )
    api.create(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "other", "namespace": "default", "labels": {"app": "x"}},
            "spec": {"containers": [{"name": "c", "image": "c"}]},
        }
    )
    api.delete(POD, "default", "w")
    events = [
        (e.type, e.object["metadata"]["name"])
        for e in api.watch(POD, "default", {"app": "w"}, resource_version=version, timeout_s=1)
    ]
    assert events == [("ADDED", "w"), ("DELETED", "w")]


def test_a_kubeconfig_that_cannot_be_read_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="kubeconfig"):
        KubeApi.from_kubeconfig(tmp_path / "missing")
    bad = tmp_path / "bad"
    bad.write_text("not: [a kubeconfig", encoding="utf-8")
    with pytest.raises(InputError, match=str(bad)):
        KubeApi.from_kubeconfig(bad)


def test_an_unknown_context_is_an_input_error(kubeconfig: Path) -> None:
    with pytest.raises(InputError, match="no context 'prod'"):
        KubeApi.from_kubeconfig(kubeconfig, "prod")


def test_an_unreachable_api_is_a_platform_error(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with FakeApiServer() as server:
        path = server.write_kubeconfig(tmp_path / "kubeconfig")
        path.write_text(path.read_text().replace(str(server.port), str(port)), encoding="utf-8")
    api = KubeApi.from_kubeconfig(path)
    with pytest.raises(PlatformError, match="cannot reach the API"):
        api.get(POD, "default", "x")
    api.close()


def test_an_unknown_kind_is_an_input_error() -> None:
    with pytest.raises(InputError, match="unknown kind 'Widget'"):
        kind_of({"apiVersion": "example.com/v1", "kind": "Widget"})
