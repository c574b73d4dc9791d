"""The bypass probe on a cluster: from the Locust master, plaintext to each pod IP's app port.

The probe script itself runs for real here (``python -c``, against servers on loopback:
the app's answer, a proxy's answer, a closed port); on the fake cluster its exec is
answered with Istio's outcome (STRICT PeerAuthentication: refused; the plain sidecar's
open app port, or Istio's default PERMISSIVE: served).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from chaos.analysis.security import load_bypass
from chaos.platforms.appports import RunsBypassProbe
from chaos.platforms.kubernetes import names
from chaos.platforms.kubernetes.api import KubeApi
from chaos.platforms.kubernetes.bypass import KubeBypassProbe, probe_command
from chaos.platforms.kubernetes.kinds import NAMESPACE
from chaos.platforms.kubernetes.manifests import istio
from chaos.platforms.kubernetes.manifests.locust import SETUP_LABEL
from chaos.platforms.kubernetes.platform import KubernetesPlatform
from chaos.platforms.kubernetes.traffic import LOCUST_CONTAINER
from chaos.rundir import BYPASS_DIR
from chaos.rundir.auth import AUTH_HEADER
from chaos.testing.fakekube.api import FakeCluster
from chaos.testing.fakekube.podexec import FakePodExec
from tests.kubernetes.test_platform_faults import platform, running  # noqa: F401


class _App(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header(AUTH_HEADER, "none")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


class _Proxy(_App):
    def do_GET(self) -> None:
        self.send_response(403)
        self.send_header("Content-Length", "0")
        self.end_headers()


def _serve(handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_probe_script_tells_served_denied_and_refused_apart() -> None:
    app, proxy = _serve(_App), _serve(_Proxy)
    try:
        targets = [
            ("ns", "app-0", "127.0.0.1", app.server_port),
            ("ns", "proxied-0", "127.0.0.1", proxy.server_port),
            ("ns", "closed-0", "127.0.0.1", _closed_port()),
        ]
        # 7 allowed by count, but only 6 fit the duration at 20/s... bounded by both
        command = probe_command(targets, 20.0, 7, 0.3)
        done = subprocess.run(
            [sys.executable, *command[1:]], capture_output=True, text=True, timeout=30
        )
    finally:
        for s in (app, proxy):
            s.shutdown()
            s.server_close()
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(x["pod"], x["outcome"], x["status"]) for x in lines] == [
        ("app-0", "served", 200),
        ("proxied-0", "denied", 403),
        ("closed-0", "refused", 0),
        ("app-0", "served", 200),
        ("proxied-0", "denied", 403),
        ("closed-0", "refused", 0),
    ]


def _master(api: KubeApi, setup: names.Setup) -> None:
    if api.get(NAMESPACE, None, names.TRAFFIC_NAMESPACE) is None:
        api.create(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": names.TRAFFIC_NAMESPACE}}
        )
    api.create(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": f"locust-master-{setup.value}",
                "namespace": names.TRAFFIC_NAMESPACE,
                "labels": {names.LABEL_TRAFFIC_ROLE: "master", SETUP_LABEL: setup.value},
            },
            "spec": {"containers": [{"name": LOCUST_CONTAINER, "image": names.APP_IMAGE}]},
        }
    )


@pytest.mark.parametrize(
    ("setup", "mtls", "expected"),
    [
        ("mesh", "STRICT", "refused"),
        ("ambient", "STRICT", "refused"),
        ("mesh", None, "served"),  # Istio's default PERMISSIVE takes plaintext
        ("sidecar", None, "served"),  # the plain sidecar's app listens on the pod IP
    ],
)
def test_on_the_fake_cluster_each_setup_refuses_or_serves(
    seeded: FakeCluster,
    api: KubeApi,
    pod_exec: FakePodExec,
    tmp_path: Path,
    setup: str,
    mtls: str | None,
    expected: str,
) -> None:
    s = names.Setup(setup)
    if mtls is not None:
        pa = istio.peer_authentication(s)
        assert pa["spec"]["mtls"]["mode"] == mtls  # what the demo installs
        api.create(pa)
    _master(api, s)
    out = tmp_path / BYPASS_DIR / "w.jsonl"
    probe = KubeBypassProbe(api, pod_exec, s, 20.0, 8, 10.0, out)
    with probe:
        pass
    assert probe.error is None
    attempts = load_bypass(tmp_path)
    demo = {p.name for p in api.list_pods(names.namespace_of(s))}
    assert len(attempts) == 8 and {a.pod for a in attempts} <= demo
    assert {a.outcome for a in attempts} == {expected}
    # one exec, from the master's locust container, in the traffic namespace
    execs = [c for c in pod_exec.calls if c[0] == "exec" and "socket" in c[4]]
    assert [c[1:4] for c in execs] == [
        (names.TRAFFIC_NAMESPACE, f"locust-master-{setup}", LOCUST_CONTAINER)
    ]


def test_the_running_topology_runs_the_probe_for_the_engine(
    platform: KubernetesPlatform,  # noqa: F811
    seeded: FakeCluster,
    api: KubeApi,
    pod_exec: FakePodExec,
    tmp_path: Path,
) -> None:
    api.create(istio.peer_authentication(names.Setup.MESH))
    _master(api, names.Setup.MESH)
    with running(platform, "mesh", tmp_path / "run") as topology:
        assert isinstance(topology, RunsBypassProbe)  # what the engine looks for
        with topology.bypass_probe(10.0, 4, 5.0, tmp_path / BYPASS_DIR / "w.jsonl"):
            pass
    assert [a.outcome for a in load_bypass(tmp_path)] == ["refused"] * 4


def test_a_probe_without_a_master_says_so_in_its_file(
    seeded: FakeCluster, api: KubeApi, pod_exec: FakePodExec, tmp_path: Path
) -> None:
    out = tmp_path / BYPASS_DIR / "w.jsonl"
    with KubeBypassProbe(api, pod_exec, names.Setup.MESH, 5.0, 4, 2.0, out) as probe:
        pass
    assert probe.error is not None and "no ready Locust master" in probe.error
    (line,) = out.read_text(encoding="utf-8").splitlines()
    assert json.loads(line)["outcome"] == "error"
    assert load_bypass(tmp_path) == []  # not a bypass outcome
