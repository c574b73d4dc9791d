"""Exec and port-forward through the real ``KubePodExec`` and the fake API server's websockets.

The client's ``stream()`` swaps ``api_client.call_api`` for the websocket call while a
stream runs (kubernetes-client/python#928): a stream on the ``ApiClient`` that REST calls
and the pod watch use sends their requests down the websocket path meanwhile. These
tests hold an exec open on the server (it waits until released) while other threads make
REST calls, watch and port-forward, so they fail whenever a stream shares the client.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

from chaos.errors import PlatformError
from chaos.platforms.kubernetes import names
from chaos.platforms.kubernetes.api import POD, KubeApi
from chaos.platforms.kubernetes.platform import KubernetesPlatform
from chaos.platforms.kubernetes.podexec import ExecInterrupted, KubePodExec
from chaos.testing.fakekube.api import FakeApiServer
from chaos.testing.fakekube.podexec import CommandFailed, FakePodExec
from tests.kubernetes.test_platform_faults import ops_of, running

NS = "default"
HOLD = ("sh", "-c", "wait-for-the-test")


def _pod(api: KubeApi, name: str) -> None:
    api.create(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": NS, "labels": {"app": "demo"}},
            "spec": {"containers": [{"name": "app", "image": "demo"}]},
        }
    )


class Held:
    """An exec handler: ``HOLD`` blocks until released, ``echo`` answers, ``false`` fails."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()

    def __call__(
        self, ns: str, pod: str, container: str, command: Sequence[str], timeout_s: float
    ) -> str | None:
        if tuple(command) == HOLD:
            self.started.set()
            if not self.release.wait(30.0):
                raise PlatformError("never released")
            return "released\n"
        if command[0] == "echo":
            return " ".join(command[1:]) + "\n"
        return None


@pytest.fixture
def held(fake_server: FakeApiServer, api: KubeApi) -> Held:
    handler = Held()
    assert isinstance(fake_server.pods, FakePodExec)
    fake_server.pods.handler = handler
    fake_server.pods.counters[(NS, "web")] = {"cluster.x.upstream_rq_retry": 7}
    _pod(api, "web")
    return handler


def test_rest_watch_and_port_forward_work_while_an_exec_runs(held: Held, api: KubeApi) -> None:
    pod_exec = KubePodExec(api)
    outcome: dict[str, object] = {}

    def long_exec() -> None:
        try:
            outcome["exec"] = pod_exec.exec(NS, "web", "app", HOLD, 30.0)
        except PlatformError as exc:
            outcome["exec"] = exc

    thread = threading.Thread(target=long_exec)
    thread.start()
    try:
        assert held.started.wait(10.0), "the exec never reached the server"
        # REST, a watch and a port-forward from this thread while the exec is open.
        listed = api.list_pods(NS)
        version = str(api.request("GET", POD.path(NS))["metadata"]["resourceVersion"])
        _pod(api, "second")
        events = [
            e.object["metadata"]["name"]
            for e in api.watch(POD, NS, resource_version=version, timeout_s=1)
        ]
        stats = json.loads(
            pod_exec.http(NS, "web", names.ADMIN_PORT, "GET", "/stats?format=json", 5.0)
        )
        echoed = pod_exec.exec(NS, "web", "app", ["echo", "hi"], 10.0)
    finally:
        held.release.set()
        thread.join(15.0)
    assert [p.name for p in listed] == ["web"]
    assert events == ["second"]
    assert stats["stats"] == [{"name": "cluster.x.upstream_rq_retry", "value": 7}]
    assert echoed == "hi\n"
    assert outcome["exec"] == "released\n"
    # And the shared client is still a REST client afterwards.
    assert [p.name for p in api.list_pods(NS)] == ["second", "web"]


def test_a_command_that_exits_non_zero_is_an_error_naming_its_code(
    held: Held, api: KubeApi
) -> None:
    with pytest.raises(PlatformError, match="exited 127"):
        KubePodExec(api).exec(NS, "web", "app", ["no-such-tool", "--flag"], 10.0)


def test_a_kill_that_takes_its_session_down_is_exec_interrupted(
    fake_server: FakeApiServer, api: KubeApi
) -> None:
    assert isinstance(fake_server.pods, FakePodExec)
    fake_server.pods.kills_close_the_session = True
    _pod(api, "web")
    with pytest.raises(ExecInterrupted):
        KubePodExec(api).exec(NS, "web", "app", ["/bin/sh", "-c", "kill -TERM 1"], 10.0)
    assert api.list_pods(NS)[0].restarts("app") == 1


def test_exec_in_a_container_the_pod_lacks_is_refused(held: Held, api: KubeApi) -> None:
    with pytest.raises(PlatformError, match="not valid for pod web"):
        KubePodExec(api).exec(NS, "web", "sidecar", ["echo", "x"], 10.0)


def test_a_port_nothing_listens_on_is_refused(held: Held, api: KubeApi) -> None:
    with pytest.raises(PlatformError, match="refused"):
        KubePodExec(api).http(NS, "web", 9999, "GET", "/", 5.0)


def test_a_kill_whose_command_fails_is_a_failed_crash_not_a_silent_one(
    seeded: object, pod_exec: FakePodExec, kubeconfig: Path, tmp_path: Path
) -> None:
    def refuse(ns: str, pod: str, container: str, command: Sequence[str], _t: float) -> None:
        if "quitquitquit" in command:
            raise CommandFailed(1, "Error: dial tcp 127.0.0.1:15000: connect: connection refused\n")

    pod_exec.handler = refuse
    platform = KubernetesPlatform(kubeconfig=kubeconfig, ready_timeout_s=10.0, watch_timeout_s=1)
    with running(platform, "mesh", tmp_path / "run") as topology:
        ops = ops_of(topology)
        (target,) = ops.crash_targets(list(ops.workload.pods[:1]), None)
        with pytest.raises(PlatformError, match="exited 1: Error: dial tcp"):
            ops.kill_proxy(target)
        assert ops.proxy_restarts(target) == 0
