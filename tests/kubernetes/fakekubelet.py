"""A fake kubelet for the Locust pods: their containers run as REAL local processes.

When a pod with a ``locust`` container appears in the fake cluster's ``sc-traffic``,
this kubelet starts the container's command (the manifest's command and env, as
built by :mod:`chaos.platforms.kubernetes.manifests.locust`) as a real ``python -m
locust`` process. It plays the parts of a node a process needs:

* volumes: each ``emptyDir`` is a local directory, each ConfigMap or Secret volume a
  directory holding its files; paths under a mount (in the command, the env and the
  mounted files) are rewritten to the local directory;
* the image: ``/opt/sidecar-chaos`` is this checkout, ``python`` this interpreter;
* cluster DNS and Services: ``<service>.<namespace>.svc.cluster.local:<port>`` goes to
  the loopback address given for it (the target), the master's Service to a free
  loopback port the master binds;
* status: a container whose process ended is ``terminated`` with its exit code; the
  Job's pod (``restartPolicy: Never``) is then ``Succeeded`` or ``Failed``.

Exec (:class:`~chaos.testing.fakekube.podexec.FakePodExec` asks
:meth:`FakeKubelet.exec` first) runs the command for real with the same rewriting,
except :data:`~chaos.platforms.kubernetes.traffic.STOP_COMMAND` (SIGTERM to the
container's PID 1), which is sent to the container's process. Every process is ended
by its pid in :meth:`FakeKubelet.stop`.
"""

from __future__ import annotations

import base64
import copy
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chaos.errors import PlatformError
from chaos.platforms.kubernetes import names
from chaos.platforms.kubernetes.manifests.locust import IMAGE_SOURCE_DIR
from chaos.platforms.kubernetes.traffic import LOCUST_CONTAINER, STOP_COMMAND
from chaos.proc import spawn, stop_processes
from chaos.testing.fakekube.api import ApiError, FakeCluster

REPO = Path(__file__).resolve().parents[2]
_DNS = re.compile(r"([a-z0-9-]+\.[a-z0-9-]+\.svc\.cluster\.local):(\d+)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class _Pod:
    name: str
    root: Path
    mounts: dict[str, Path]
    restart_never: bool
    process: subprocess.Popen[bytes] | None = None
    reported: bool = False
    exit_code: int | None = None
    log: Path = field(default=Path())


class FakeKubelet:
    """Runs the Locust pods of a fake cluster as local processes (see the module doc)."""

    def __init__(self, cluster: FakeCluster, work: Path, services: dict[str, str]) -> None:
        self.cluster = cluster
        self.work = work
        #: ``<service>.<ns>.svc.cluster.local:<port>`` -> ``127.0.0.1:<port>``.
        self.services = dict(services)
        self.pods: dict[str, _Pod] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fake-kubelet", daemon=True)
        self.errors: list[str] = []

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> FakeKubelet:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """End every process this kubelet started, by its pid."""
        self._stop.set()
        self._thread.join(timeout=30)
        with self._lock:
            procs = [p.process for p in self.pods.values() if p.process is not None]
        stop_processes(procs, 5.0)

    @property
    def pids(self) -> list[int]:
        with self._lock:
            return [p.process.pid for p in self.pods.values() if p.process is not None]

    def _run(self) -> None:
        # Processes are spawned on this thread: it lives until every one of them is ended.
        while not self._stop.is_set():
            try:
                self._tick()
            except Exception as exc:  # a test helper: keep the reason for the assertion
                self.errors.append(repr(exc))
            self._stop.wait(0.05)
        with self._lock:
            procs = [p.process for p in self.pods.values() if p.process is not None]
        stop_processes(procs, 5.0)

    def _tick(self) -> None:
        pods = self.cluster.select(self.cluster.resources[("v1", "pods")], names.TRAFFIC_NAMESPACE)
        for pod in pods:
            name = pod["metadata"]["name"]
            if name not in self.pods and pod["metadata"].get("deletionTimestamp") is None:
                self._start(pod)
        alive = {p["metadata"]["name"] for p in pods}
        with self._lock:
            entries = list(self.pods.values())
        for entry in entries:
            process = entry.process
            if process is None:
                continue
            if entry.name not in alive and process.poll() is None:
                process.send_signal(signal.SIGKILL)  # the pod was deleted: so is its container
            code = process.poll()
            if code is not None and not entry.reported and entry.name in alive:
                entry.reported, entry.exit_code = True, code
                self._report_exit(entry, code)

    # -- a pod -----------------------------------------------------------------------------

    def rewrite(self, text: str, pod: _Pod) -> str:
        """A string as the container sees it, in terms of this machine."""
        for mount, local in sorted(pod.mounts.items(), key=lambda m: -len(m[0])):
            text = text.replace(mount, str(local))
        text = text.replace(str(IMAGE_SOURCE_DIR), str(REPO))
        return _DNS.sub(lambda m: self._resolve(m.group(1), int(m.group(2))), text)

    def _resolve(self, host: str, port: int) -> str:
        key = f"{host}:{port}"
        with self._lock:
            if key not in self.services:
                self.services[key] = f"127.0.0.1:{_free_port()}"
            return self.services[key]

    def _argv(self, command: list[str], pod: _Pod) -> list[str]:
        argv = [self.rewrite(a, pod) for a in command]
        if argv and argv[0] == "python":
            argv[0] = sys.executable
        if "--master-host" in argv:  # a worker: the master's Service, one loopback address
            i, j = argv.index("--master-host") + 1, argv.index("--master-port") + 1
            argv[i], _, argv[j] = self._resolve(argv[i], int(argv[j])).partition(":")
        if "--master" in argv:
            master = f"{argv_name(pod.name)}.{names.TRAFFIC_NAMESPACE}.svc.cluster.local"
            host, _, port = self._resolve(master, names.LOCUST_MASTER_PORT).partition(":")
            argv += ["--master-bind-host", host, "--master-bind-port", port]
        return argv

    def _start(self, pod: dict[str, Any]) -> None:
        name = pod["metadata"]["name"]
        spec = pod.get("spec") or {}
        root = self.work / name
        entry = _Pod(name, root, {}, spec.get("restartPolicy") == "Never")
        for volume in spec.get("volumes") or []:
            (root / "volumes" / volume["name"]).mkdir(parents=True, exist_ok=True)
        locust = next(
            (c for c in spec.get("containers") or [] if c["name"] == LOCUST_CONTAINER), None
        )
        with self._lock:
            self.pods[name] = entry
        if locust is None:
            return
        for mount in locust.get("volumeMounts") or []:
            entry.mounts[mount["mountPath"]] = root / "volumes" / mount["name"]
        # ConfigMap files are written after the mounts are known (their paths are rewritten)
        for volume in spec.get("volumes") or []:
            local = root / "volumes" / volume["name"]
            if "configMap" in volume:
                self._write_config_map(volume["configMap"]["name"], local, entry)
            if "secret" in volume:
                self._write_secret(volume["secret"]["secretName"], local)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        for item in locust.get("env") or []:
            env[item["name"]] = self.rewrite(str(item.get("value", "")), entry)
        entry.log = root / "locust.out"
        entry.process = spawn(
            self._argv(list(locust["command"]), entry),
            env=env,
            cwd=root,
            log_path=entry.log,
            name=f"fake kubelet: {name}",
        )

    def _write_config_map(self, cm_name: str, local: Path, pod: _Pod) -> None:
        try:
            cm = self.cluster.get(
                self.cluster.resources[("v1", "configmaps")], names.TRAFFIC_NAMESPACE, cm_name
            )
        except ApiError:
            return  # a real kubelet waits; the tool creates the ConfigMap first
        for key, value in (cm.get("data") or {}).items():
            (local / key).write_text(self.rewrite(str(value), pod))

    def _write_secret(self, name: str, local: Path) -> None:
        try:
            secret = self.cluster.get(
                self.cluster.resources[("v1", "secrets")], names.TRAFFIC_NAMESPACE, name
            )
        except ApiError:
            return
        for key, value in (secret.get("data") or {}).items():
            (local / key).write_bytes(base64.b64decode(value))

    def _report_exit(self, entry: _Pod, code: int) -> None:
        pods = self.cluster.resources[("v1", "pods")]
        try:
            obj = self.cluster.get(pods, names.TRAFFIC_NAMESPACE, entry.name)
        except ApiError:
            return
        status = copy.deepcopy(obj.get("status") or {})
        for item in status.get("containerStatuses") or []:
            if item.get("name") == LOCUST_CONTAINER:
                item["ready"] = False
                item["state"] = {
                    "terminated": {
                        "exitCode": code,
                        "reason": "Completed" if code == 0 else "Error",
                        "finishedAt": _now(),
                    }
                }
        if entry.restart_never:
            status["phase"] = "Succeeded" if code == 0 else "Failed"
            status["conditions"] = [{"type": "Ready", "status": "False"}]
        obj["status"] = status
        self.cluster.replace(pods, names.TRAFFIC_NAMESPACE, entry.name, obj, status_only=True)

    # -- exec --------------------------------------------------------------------------------

    def exec(
        self, namespace: str, pod: str, container: str, command: Any, timeout_s: float
    ) -> str | None:
        """:data:`~chaos.testing.fakekube.podexec.ExecHandler` for this kubelet's pods."""
        with self._lock:
            entry = self.pods.get(pod) if namespace == names.TRAFFIC_NAMESPACE else None
        if entry is None:
            return None
        if tuple(command) == STOP_COMMAND:
            if container != LOCUST_CONTAINER or entry.process is None:
                raise PlatformError(f"exec in {pod}/{container}: no such process")
            if entry.process.poll() is not None:
                raise PlatformError(f"exec in {pod}/{container}: container not running")
            entry.process.send_signal(signal.SIGTERM)
            return ""
        argv = self._argv([str(a) for a in command], entry)
        try:
            done = subprocess.run(argv, capture_output=True, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired as exc:
            raise PlatformError(f"exec in {pod}/{container}: timed out") from exc
        if done.returncode != 0:
            raise PlatformError(
                f"exec in {pod}/{container}: exit {done.returncode}: {done.stderr[-300:]!r}"
            )
        return done.stdout.decode()


def argv_name(pod: str) -> str:
    """The master's Service name from its pod's name (``<job>-<suffix>``)."""
    return pod.rsplit("-", 1)[0]


__all__ = ["FakeKubelet"]
