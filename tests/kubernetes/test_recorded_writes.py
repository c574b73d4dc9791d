"""Lost and duplicated writes on the cluster: the writes ``payments`` recorded in a window.

Each ``payments`` replica keeps its writes in a file on an emptyDir (so a restarted
app container still reports them) and answers ``GET /writes``; the topology reads it
through a port-forward at the window's start and end and returns what came between.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from chaos.platforms.kubernetes import names
from chaos.platforms.kubernetes.api import KubeApi
from chaos.platforms.kubernetes.manifests.core import deployment
from chaos.platforms.kubernetes.platform import KubernetesPlatform
from chaos.proc import stop_processes
from chaos.testing.fakekube.podexec import FakePodExec
from tests.kubernetes.test_platform_faults import platform, running  # noqa: F401

pytestmark = pytest.mark.usefixtures("seeded")


def payments_pods(api: KubeApi, namespace: str) -> list[str]:
    return sorted(p.name for p in api.list_pods(namespace, {names.LABEL_APP: names.WRITER_SERVICE}))


def test_a_window_gets_the_writes_recorded_during_it_and_none_of_earlier_ones(
    platform: KubernetesPlatform,  # noqa: F811
    pod_exec: FakePodExec,
    api: KubeApi,
    tmp_path: Path,
) -> None:
    ns = names.namespace_of(names.Setup.MESH)
    first, second = payments_pods(api, ns)
    pod_exec.app_writes[(ns, first)] = ["earlier-1", "earlier-2"]
    pod_exec.app_writes[(ns, second)] = []
    with running(platform, "mesh", tmp_path) as topology:
        pod_exec.app_writes[(ns, first)] += ["w-1", "w-2"]
        pod_exec.app_writes[(ns, second)] += ["w-3", "w-1"]  # a duplicate, on another replica
        assert sorted(topology.recorded_writes() or []) == ["w-1", "w-1", "w-2", "w-3"]
    asked = [c for c in pod_exec.calls if c[0] == "http" and c[4] == "/writes"]
    assert {c[2] for c in asked} == {first, second}


def test_unreadable_writes_are_unknown_not_lost(
    platform: KubernetesPlatform,  # noqa: F811
    pod_exec: FakePodExec,
    api: KubeApi,
    tmp_path: Path,
) -> None:
    ns = names.namespace_of(names.Setup.MESH)
    first, _second = payments_pods(api, ns)
    pod_exec.app_writes[(ns, first)] = ["w-1"]  # the other replica refuses the port-forward
    with running(platform, "mesh", tmp_path) as topology:
        assert topology.recorded_writes() is None


def test_the_writer_keeps_its_writes_on_a_volume_and_serves_them(tmp_path: Path) -> None:
    """The manifest's command, run for real: writes go to the mounted file and GET /writes."""
    built = deployment(names.WRITER_SERVICE, 0, names.Setup.MESH)
    spec = built["spec"]["template"]["spec"]
    (app,) = [c for c in spec["containers"] if c["name"] == names.APP_CONTAINER]
    (mount,) = app["volumeMounts"]
    (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
    assert "emptyDir" in volume and mount["mountPath"] == names.WRITES_DIR
    local = tmp_path / "volume"
    argv = [
        str(local) + a[len(names.WRITES_DIR) :] if a.startswith(names.WRITES_DIR) else a
        for a in app["command"]
    ]
    assert argv[:3] == ["python", "-m", "chaos.platforms.shared.demo_service"]
    port = _free_port()
    argv = [sys.executable, *argv[1:]]
    argv[argv.index("--listen") + 1] = f"127.0.0.1:{port}"
    argv[argv.index("--pod") + 1] = "payments-0"
    for restart in range(2):  # a restarted app container reads the file back
        proc = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        try:
            _wait_healthy(port)
            _post(port, f"w-{restart}")
            body = json.loads(_get(port, "/writes"))
        finally:
            stop_processes([proc])
        assert body["ids"] == [f"w-{i}" for i in range(restart + 1)]
    assert (local / "writes.jsonl").is_file()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _get(port: int, path: str) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
        body: bytes = response.read()
        return body


def _post(port: int, write_id: str) -> None:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/pay",
        data=json.dumps({"id": write_id}).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 201


def _wait_healthy(port: int) -> None:
    from tenacity import retry, retry_if_exception_type, stop_after_delay, wait_fixed

    @retry(
        stop=stop_after_delay(15),
        wait=wait_fixed(0.05),
        retry=retry_if_exception_type(OSError),
        reraise=True,
    )
    def probe() -> None:
        _get(port, "/healthz")

    probe()
