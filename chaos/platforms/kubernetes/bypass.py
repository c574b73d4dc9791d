"""The bypass probe on a cluster: legacy code inside the cluster calling a pod IP's app port.

For one window, from the Locust master's ``locust`` container (in the traffic namespace,
outside every data plane: the master joins none, so nothing upgrades its plaintext),
one exec runs :data:`PROBE_SCRIPT` (standard library only): ``rate`` requests a second,
at most ``max_requests`` and never past ``duration_s``, each a plaintext ``GET /`` with
no token and no client certificate straight to ``<pod IP>:8080`` of the setup's demo
pods in turn. Each ends *refused* (no HTTP answer), *denied* (an answer without the
app's ``x-chaos-auth``) or *served* (the app answered), as the local probe
(:mod:`chaos.traffic.bypass`) records them. What to expect: with the namespace's
PeerAuthentication STRICT (mesh, ambient), Istio's capture sends the connection to
the proxy (mesh: the sidecar's inbound; ambient: ztunnel), which refuses plaintext;
the plain sidecar leaves the app's port open, so the app serves it.

The exec answers once, at its end; its records are stamped on this machine's monotonic
clock from the moment the exec was sent (its start-up latency, typically under a
second, shifts them a little late). They go to the window's file under ``bypass/``;
a probe that could not run (no Locust master, a failed exec) leaves one ``error`` line
there instead, which the analysis does not count.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from chaos.errors import PlatformError
from chaos.platforms.kubernetes import names
from chaos.platforms.kubernetes.kinds import POD
from chaos.platforms.kubernetes.manifests.locust import SETUP_LABEL
from chaos.platforms.kubernetes.traffic import LOCUST_CONTAINER

#: The probe, run by ``python -c`` with: targets (JSON ``[[namespace, pod, ip, port]...]``),
#: rate, max_requests, duration_s. One JSON line per attempt.
PROBE_SCRIPT = """\
import json, socket, sys, time
targets = json.loads(sys.argv[1])
rate, count, duration = float(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
start = time.monotonic()
for i in range(count):
    due = i / rate
    if due >= duration:
        break
    time.sleep(max(0.0, start + due - time.monotonic()))
    ns, pod, ip, port = targets[i % len(targets)]
    dt, outcome, status = time.monotonic() - start, "refused", 0
    try:
        with socket.create_connection((ip, port), timeout=1.0) as s:
            s.settimeout(1.0)
            host = b"Host: " + ip.encode() + b"\\r\\nConnection: close\\r\\n\\r\\n"
            s.sendall(b"GET / HTTP/1.1\\r\\n" + host)
            data = b""
            while b"\\r\\n\\r\\n" not in data and len(data) < 65536:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        head = data.split(b"\\r\\n\\r\\n", 1)[0].decode("latin-1").lower()
        if head.startswith("http/"):
            status = int(head.split()[1])
            outcome = "served" if "\\nx-chaos-auth:" in head else "denied"
    except (OSError, ValueError, IndexError):
        pass
    print(json.dumps({"dt": dt, "pod": pod, "outcome": outcome, "status": status}), flush=True)
"""


def probe_command(
    targets: list[tuple[str, str, str, int]],
    rate: float,
    max_requests: int,
    duration_s: float,
    script: str = PROBE_SCRIPT,
) -> list[str]:
    return [
        "python",
        "-c",
        script,
        json.dumps([list(t) for t in targets]),
        f"{rate:g}",
        str(max_requests),
        f"{duration_s:g}",
    ]


def parse_records(output: str, started: float, kind: str = "bypass") -> list[dict[str, Any]]:
    """The probe's lines as bypass records on this machine's clock (bad lines skipped)."""
    records = []
    for line in output.splitlines():
        try:
            d = json.loads(line)
            records.append(
                {
                    "t": started + float(d["dt"]),
                    "pod": str(d["pod"]),
                    "outcome": str(d["outcome"]),
                    "status": int(d["status"]),
                    "kind": kind,
                }
            )
        except (ValueError, KeyError, TypeError):
            continue
    return records


class KubeBypassProbe:
    """One window's probe: one exec on its own thread while the context is entered."""

    #: What runs, and the records' ``kind`` (:mod:`.anonymous` runs another stream).
    script = PROBE_SCRIPT
    kind = "bypass"

    def __init__(
        self,
        api: Any,
        pod_exec: Any,
        setup: names.Setup,
        rate: float,
        max_requests: int,
        duration_s: float,
        out: Path,
    ) -> None:
        self.api, self.pod_exec, self.setup = api, pod_exec, setup
        self.rate, self.max_requests, self.duration_s = rate, max_requests, duration_s
        self.out = out
        self.error: str | None = None
        self._thread: threading.Thread | None = None

    def targets(self) -> list[tuple[str, str, str, int]]:
        ns = names.namespace_of(self.setup)
        found = []
        for pod in self.api.list_pods(ns):
            if pod.deleting or pod.labels.get(names.LABEL_APP) not in names.SERVICES:
                continue
            obj = self.api.get(POD, ns, pod.name) or {}
            ip = (obj.get("status") or {}).get("podIP")
            if ip:
                found.append((ns, pod.name, str(ip), names.APP_PORT))
        return found

    def _master(self) -> str:
        labels = {names.LABEL_TRAFFIC_ROLE: "master", SETUP_LABEL: self.setup.value}
        pods = [p for p in self.api.list_pods(names.TRAFFIC_NAMESPACE, labels) if p.ready]
        if not pods:
            raise PlatformError("bypass probe: no ready Locust master to run it from")
        return str(pods[0].name)

    def _run(self) -> None:
        try:
            targets = self.targets()
            if not targets:
                return
            master = self._master()
            command = probe_command(
                targets, self.rate, self.max_requests, self.duration_s, self.script
            )
            started = time.monotonic()
            output = self.pod_exec.exec(
                names.TRAFFIC_NAMESPACE, master, LOCUST_CONTAINER, command, self.duration_s + 30
            )
        except PlatformError as exc:
            # kept in the window's file (the analysis counts only the three outcomes)
            self.error = str(exc)
            self._write([{"t": time.monotonic(), "outcome": "error", "error": self.error}])
            return
        self._write(parse_records(str(output), started, self.kind))

    def _write(self, records: list[dict[str, Any]]) -> None:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        with self.out.open("a", encoding="utf-8") as f:
            for record in records:
                f.write(json.dumps(record) + "\n")

    def __enter__(self) -> KubeBypassProbe:
        self._thread = threading.Thread(target=self._run, name=f"{self.kind}-probe", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._thread is not None:
            self._thread.join(timeout=self.duration_s + 35)


__all__ = ["PROBE_SCRIPT", "KubeBypassProbe", "parse_records", "probe_command"]
