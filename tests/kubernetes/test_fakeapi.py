"""The fake API server speaks the API the official client expects (typed calls included)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import config as kube_config
from kubernetes import watch as kube_watch
from kubernetes.client import ApiClient, AppsV1Api, Configuration, CoreV1Api, CustomObjectsApi
from kubernetes.client.exceptions import ApiException

from chaos.testing.fakekube.api import (
    FakeApiServer,
    field_matches,
    json_patch,
    label_matches,
    merge_patch,
)


@pytest.fixture
def client(kubeconfig: Path) -> Iterator[ApiClient]:
    configuration = Configuration()
    kube_config.load_kube_config(
        config_file=str(kubeconfig), client_configuration=configuration, persist_config=False
    )
    with ApiClient(configuration) as api_client:
        yield api_client


def test_typed_core_calls_round_trip(client: ApiClient) -> None:
    core = CoreV1Api(client)
    core.create_namespace({"metadata": {"name": "team"}})  # kmock 0.8 answers this one with a 500
    assert "team" in [n.metadata.name for n in core.list_namespace().items]
    core.create_namespaced_pod(
        "team",
        {
            "metadata": {"name": "web-1", "labels": {"app": "web", "tier": "front"}},
            "spec": {"containers": [{"name": "web", "image": "web"}], "nodeName": "w2"},
        },
    )
    pods = core.list_namespaced_pod("team", label_selector="app=web,tier in (front,back)")
    assert [p.metadata.name for p in pods.items] == ["web-1"]
    pod = pods.items[0]
    assert pod.status.phase == "Running" and pod.status.container_statuses[0].restart_count == 0
    assert core.list_namespaced_pod("team", field_selector="spec.nodeName=w1").items == []
    with pytest.raises(ApiException) as missing:
        core.read_namespaced_pod("nope", "team")
    assert missing.value.status == 404
    assert '"reason":"NotFound"' in (missing.value.body or "").replace(" ", "")


def test_typed_scale_and_custom_objects(client: ApiClient) -> None:
    apps, custom = AppsV1Api(client), CustomObjectsApi(client)
    apps.create_namespaced_deployment(
        "default",
        {
            "metadata": {"name": "api"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "api"}},
                "template": {
                    "metadata": {"labels": {"app": "api"}},
                    "spec": {"containers": [{"name": "api", "image": "api"}]},
                },
            },
        },
    )
    apps.patch_namespaced_deployment_scale("api", "default", {"spec": {"replicas": 0}})
    assert apps.read_namespaced_deployment_scale("api", "default").spec.replicas == 0
    created = custom.create_namespaced_custom_object(
        "networking.istio.io",
        "v1",
        "default",
        "virtualservices",
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": {"name": "api"},
            "spec": {"hosts": ["api"], "http": [{"route": [{"destination": {"host": "api"}}]}]},
        },
    )
    assert created["metadata"]["resourceVersion"]
    with pytest.raises(ApiException) as unknown:
        custom.list_namespaced_custom_object("example.com", "v1", "default", "widgets")
    assert unknown.value.status == 404


def test_typed_watch_yields_events(client: ApiClient, fake_server: FakeApiServer) -> None:
    core = CoreV1Api(client)
    core.create_namespaced_config_map("default", {"metadata": {"name": "a"}, "data": {"k": "v"}})
    stream = kube_watch.Watch().stream(
        core.list_namespaced_config_map, "default", timeout_seconds=1
    )
    first = next(iter(stream))
    assert first["type"] == "ADDED" and first["object"].metadata.name == "a"


def test_max_watch_s_ends_a_watch_early_and_a_new_one_resumes_from_its_version(
    client: ApiClient, fake_server: FakeApiServer
) -> None:
    assert fake_server.max_watch_s is not None and fake_server.max_watch_s < 1
    core = CoreV1Api(client)
    core.create_namespaced_config_map("default", {"metadata": {"name": "a"}, "data": {}})
    watcher = kube_watch.Watch()
    first = list(watcher.stream(core.list_namespaced_config_map, "default", timeout_seconds=60))
    # Ended by the server long before its 60 s, after the current objects.
    assert [e["object"].metadata.name for e in first] == ["a"]
    version = first[-1]["object"].metadata.resource_version
    core.create_namespaced_config_map("default", {"metadata": {"name": "b"}, "data": {}})
    again = kube_watch.Watch().stream(
        core.list_namespaced_config_map, "default", resource_version=version, timeout_seconds=60
    )
    assert [(e["type"], e["object"].metadata.name) for e in again] == [("ADDED", "b")]


def test_requests_without_the_token_are_unauthorized(
    fake_server: FakeApiServer, tmp_path: Path
) -> None:
    path = fake_server.write_kubeconfig(tmp_path / "kc")
    path.write_text(path.read_text().replace("sidecar-chaos-fake-token", "wrong"), encoding="utf-8")
    configuration = Configuration()
    kube_config.load_kube_config(config_file=str(path), client_configuration=configuration)
    with ApiClient(configuration) as api_client, pytest.raises(ApiException) as denied:
        CoreV1Api(api_client).list_namespace()
    assert denied.value.status == 401


def test_selectors() -> None:
    labels = {"app": "web", "tier": "front"}
    assert label_matches("app=web", labels)
    assert label_matches("app==web,tier!=back", labels)
    assert label_matches("tier in (front, back),!missing,app", labels)
    assert not label_matches("tier notin (front)", labels)
    assert not label_matches("missing", labels)
    pod = {"metadata": {"name": "p"}, "spec": {"nodeName": "w1"}, "status": {"phase": "Running"}}
    assert field_matches("spec.nodeName=w1,status.phase!=Pending", pod)
    assert not field_matches("metadata.name=q", pod)


def test_patches() -> None:
    doc = {"a": {"b": 1, "c": [1, 2]}, "d": "x"}
    assert merge_patch(doc, {"a": {"b": None, "c": [3]}, "e": 1}) == {
        "a": {"c": [3]},
        "d": "x",
        "e": 1,
    }
    ops = [
        {"op": "add", "path": "/a/c/-", "value": 3},
        {"op": "replace", "path": "/d", "value": "y"},
        {"op": "move", "from": "/a/b", "path": "/b"},
        {"op": "remove", "path": "/a/c/0"},
    ]
    assert json_patch(doc, ops) == {"a": {"c": [2, 3]}, "d": "y", "b": 1}
    assert doc == {"a": {"b": 1, "c": [1, 2]}, "d": "x"}  # the input is not changed
