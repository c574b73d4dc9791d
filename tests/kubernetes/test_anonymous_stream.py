"""security.anonymous on a cluster: token-less requests at the front door, from a Locust worker.

The stream runs where the load starts (a worker of the setup, with its network identity)
and leaves out the token; the fake answers as each data plane would (:mod:`chaos.testing.
fakekube.anonexec`): the plain sidecar's jwt_authn requires the token (401), Istio's
``require-jwt`` AuthorizationPolicy denies a request without a request principal (403),
and without that policy Istio serves it (a fail open the stream must show).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from chaos.analysis.security import load_bypass
from chaos.experiment.security import Security, check_security
from chaos.platforms.appports import RunsAnonymousStream
from chaos.platforms.kubernetes import names
from chaos.platforms.kubernetes.anonymous import (
    ANONYMOUS_SCRIPT,
    KubeAnonymousStream,
    front_door,
)
from chaos.platforms.kubernetes.api import KubeApi
from chaos.platforms.kubernetes.bypass import probe_command
from chaos.platforms.kubernetes.kinds import NAMESPACE
from chaos.platforms.kubernetes.manifests import istio
from chaos.platforms.kubernetes.manifests.locust import SETUP_LABEL, WORKER_ROLE
from chaos.platforms.kubernetes.platform import KubernetesPlatform
from chaos.platforms.kubernetes.traffic import LOCUST_CONTAINER
from chaos.rundir import BYPASS_DIR
from chaos.rundir.auth import AUTH_HEADER
from chaos.testing.fakekube.api import FakeCluster
from chaos.testing.fakekube.podexec import FakePodExec
from tests.kubernetes.test_platform_faults import platform, running  # noqa: F401


def _worker(api: KubeApi, setup: names.Setup, name: str = "w-0") -> str:
    if api.get(NAMESPACE, None, names.TRAFFIC_NAMESPACE) is None:
        api.create(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": names.TRAFFIC_NAMESPACE}}
        )
    pod = f"locust-{setup.value}-{name}"
    api.create(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": pod,
                "namespace": names.TRAFFIC_NAMESPACE,
                "labels": {names.LABEL_TRAFFIC_ROLE: WORKER_ROLE, SETUP_LABEL: setup.value},
            },
            "spec": {
                "serviceAccountName": "locust",
                "containers": [{"name": LOCUST_CONTAINER, "image": names.APP_IMAGE}],
            },
        }
    )
    return pod


@pytest.mark.parametrize(
    ("setup", "require_jwt", "expected"),
    [
        ("sidecar", False, ("denied", 401)),  # jwt_authn requires the token at every hop
        ("mesh", True, ("denied", 403)),  # require-jwt: no request principal, no ALLOW
        ("ambient", True, ("denied", 403)),  # the same, at frontend's waypoint
        ("mesh", False, ("served", 200)),  # without require-jwt Istio serves it: fail open
    ],
)
def test_each_setup_answers_a_token_less_caller_from_inside(
    seeded: FakeCluster,
    api: KubeApi,
    pod_exec: FakePodExec,
    tmp_path: Path,
    setup: str,
    require_jwt: bool,
    expected: tuple[str, int],
) -> None:
    s = names.Setup(setup)
    if require_jwt:
        waypoints = names.SERVICES if s is names.Setup.AMBIENT else ()
        api.create(istio.authorization_policy(s, waypoints=tuple(waypoints)))
    worker = _worker(api, s)
    out = tmp_path / BYPASS_DIR / "w.anonymous.jsonl"
    stream = KubeAnonymousStream(api, pod_exec, s, 20.0, 6, 10.0, out)
    with stream:
        pass
    assert stream.error is None
    attempts = load_bypass(tmp_path)
    assert len(attempts) == 6
    assert {(a.kind, a.pod, a.outcome, a.status) for a in attempts} == {
        ("anonymous", "frontend", *expected)
    }
    # one exec, in the worker's locust container, to where the load goes
    (call,) = [c for c in pod_exec.calls if c[0] == "exec" and "socket" in c[4]]
    assert call[1:4] == (names.TRAFFIC_NAMESPACE, worker, LOCUST_CONTAINER)
    host, port = front_door(s, None)
    assert json.dumps([[names.TRAFFIC_NAMESPACE, "frontend", host, port]]) in call[4]


def test_the_front_door_is_where_the_workers_send() -> None:
    assert front_door(names.Setup.SIDECAR, None) == ("127.0.0.1", names.OUTBOUND_PORT)
    assert front_door(names.Setup.MESH, None) == (
        names.service_host("frontend", names.Setup.MESH),
        names.APP_PORT,
    )
    assert front_door(names.Setup.MESH, "http://shop.team.svc:9000") == ("shop.team.svc", 9000)


def test_the_running_topology_sends_the_stream_for_the_engine(
    platform: KubernetesPlatform,  # noqa: F811
    seeded: FakeCluster,
    api: KubeApi,
    pod_exec: FakePodExec,
    tmp_path: Path,
) -> None:
    _worker(api, names.Setup.SIDECAR)
    with running(platform, "sidecar", tmp_path / "run") as topology:
        assert isinstance(topology, RunsAnonymousStream)  # what the engine looks for
        out = tmp_path / BYPASS_DIR / "w.anonymous.jsonl"
        with topology.anonymous_stream(10.0, 4, 5.0, out):
            pass
    assert [(a.kind, a.outcome) for a in load_bypass(tmp_path)] == [("anonymous", "denied")] * 4


def test_a_stream_without_a_worker_says_so_in_its_file(
    seeded: FakeCluster, api: KubeApi, pod_exec: FakePodExec, tmp_path: Path
) -> None:
    out = tmp_path / BYPASS_DIR / "w.anonymous.jsonl"
    with KubeAnonymousStream(api, pod_exec, names.Setup.MESH, 5.0, 4, 2.0, out) as stream:
        pass
    assert stream.error is not None and "no ready Locust worker" in stream.error
    assert load_bypass(tmp_path) == []


class _Front(BaseHTTPRequestHandler):
    """A front door that serves only requests carrying a token."""

    seen: ClassVar[list[str | None]] = []

    def do_GET(self) -> None:
        token = self.headers.get("Authorization")
        type(self).seen.append(token)
        self.send_response(200 if token else 401)
        if token:
            self.send_header(AUTH_HEADER, "token=1")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_the_script_sends_no_token_and_is_bounded_by_count_and_time() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Front)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        targets = [("ns", "frontend", "127.0.0.1", int(server.server_port))]
        command = probe_command(targets, 20.0, 9, 0.2, ANONYMOUS_SCRIPT)
        done = subprocess.run(
            [sys.executable, *command[1:]], capture_output=True, text=True, timeout=30
        )
    finally:
        server.shutdown()
        server.server_close()
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(x["outcome"], x["status"]) for x in lines] == [("denied", 401)] * 4
    assert _Front.seen == [None] * 4


def test_the_experiment_takes_an_anonymous_stream_on_a_cluster() -> None:
    security = Security.model_validate({"anonymous": {"rate": 2, "max_requests": 10}})
    check_security(security, 10.0, "kubernetes", [])  # no longer refused


def test_the_engine_asks_a_topology_that_runs_the_stream_itself(tmp_path: Path) -> None:
    import contextlib
    from types import SimpleNamespace
    from typing import Any

    from chaos.engine.windowparts import start_bypass

    asked: list[tuple[float, int, float, Path]] = []

    class _Topology:
        ingress_url = "http://10.0.0.1:80"  # not loopback: the local stream would refuse it

        def anonymous_stream(
            self, rate: float, max_requests: int, duration_s: float, out: Path
        ) -> contextlib.AbstractContextManager[object]:
            asked.append((rate, max_requests, duration_s, out))
            return contextlib.nullcontext()

    experiment: Any = SimpleNamespace(
        security=Security.model_validate({"anonymous": {"rate": 2, "max_requests": 7}}),
        timeline=SimpleNamespace(total=12.0),
    )
    topology: Any = _Topology()
    with contextlib.ExitStack() as stack:
        start_bypass(stack, experiment, topology, tmp_path / BYPASS_DIR / "w")
    assert asked == [(2.0, 7, 12.0, tmp_path / BYPASS_DIR / "w.anonymous.jsonl")]
