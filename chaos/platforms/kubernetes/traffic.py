"""Locust inside the cluster, its samples brought back into the run directory.

:class:`ClusterTraffic` is the engine's :class:`~chaos.traffic.base.Traffic` on
Kubernetes: requests start in the setup's own data plane (the workers carry the
client-side proxy), as real traffic does, instead of a port-forward from this
machine that enters the frontend server-side.

* **start**: through :class:`~.changes.ClusterWriter` only (every object written
  ahead to the change ledger, so revert and ``clean`` delete it): the traffic
  ConfigMap (the :class:`~chaos.traffic.config.TrafficConfig` JSON), the master's
  Service and Job, the workers' Deployment (:mod:`.manifests.locust`). The Job is
  bounded by ``activeDeadlineSeconds``.
* **samples**: each worker writes chunks in the local platform's format into its
  pod's ``OUT_DIR``. :meth:`ClusterTraffic.sync` execs :data:`SYNC_SCRIPT` in the
  worker's ``samples`` container (through :class:`~.api.PodExec`, the official
  client's exec stream): it reads each file from the offset already copied and
  answers base64 (the exec stream is text) with the pod's clocks. Complete chunks
  are re-encoded with their times moved onto this machine's monotonic clock and
  appended under ``<out_dir>/samples/``: the analysis and the report read them as
  they read local Locust's. Copied while the window runs (live stats) and completely
  at stop.
* **the clock**: a sample's ``t`` is the pod's ``time.monotonic()``; fault times are
  this machine's. The two share only wall-clock time, so each pod's offset is
  ``(pod wall - pod monotonic) - (local wall - local monotonic)``, read at the first
  copy and kept for the run (times never jump). It is exact where the node's clock
  is this machine's (kind: one kernel), otherwise as good as the clocks' NTP sync.
  Checked at every copy: the pod's reading, mapped, must fall inside the exec's round
  trip here; how far it can be off is recorded (``clock.json`` and the journal). If
  the wall clocks disagree by more than that, the offset comes from the round trip
  instead (its midpoint, uncertain by half of it).
* **tokens**: with a ``token_source`` (the platform mints one with ``cluster up``'s
  signing key, :mod:`.tokens`), the token goes to the workers in a Secret the run
  owns, read by Locust from a file (``token_url`` ``file:///etc/sidecar-chaos/token/
  token``) at start and after a 401.
* **stop**: SIGTERM to the master's Locust (PID 1 of its container): it stops the
  workers, which finish their requests under way and flush; the last chunks are
  copied; then every object is deleted (the Job with background propagation, so its
  pod goes too).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import json
import math
import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from chaos.errors import ChaosError, PlatformError, StartupError, TrafficError
from chaos.platforms.kubernetes import names
from chaos.platforms.kubernetes.api import ConflictError, PodState
from chaos.platforms.kubernetes.changes import Change, ClusterWriter
from chaos.platforms.kubernetes.manifests.locust import (
    LOCUSTFILE,
    OPEN_LOOP_LOCUSTFILE,
    OUT_DIR,
    SAMPLES_CONTAINER,
    TOKEN_DIR,
    TOKEN_FILE,
    LocustDeployment,
    locust_objects,
    target_host,
    token_secret,
)
from chaos.rundir.chunks import SUFFIX, encode_coded_chunk, iter_coded_chunks
from chaos.rundir.samples import samples_dir
from chaos.traffic.config import CLUSTER, TrafficConfig
from chaos.traffic.live import LiveStats, LiveTail

#: The container Locust runs in (master and workers).
LOCUST_CONTAINER = "locust"
#: Where the workers' sample files are, inside their pods.
REMOTE_SAMPLES = OUT_DIR / "samples"
#: Per-pod clock offsets and their accuracy, next to the samples.
CLOCK_FILE = "clock.json"
#: Labels a pod with the traffic of one window (a new window never mistakes the last
#: window's pods, still being deleted, for its own).
LABEL_INSTANCE = "sidecar-chaos.dev/traffic-instance"
_MAX_BYTES = 4 * 1024 * 1024

#: Read the pod's clocks, then every sample file from the offset already copied.
#: ``argv``: the samples directory, ``{file: offset}`` as JSON, the most bytes per file.
#: (``.chs`` is :data:`~chaos.rundir.chunks.SUFFIX`.)
SYNC_SCRIPT = """\
import base64, json, os, sys, time
root, offsets, limit = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
mono, wall = time.monotonic(), time.time()
files = {}
for name in sorted(os.listdir(root)) if os.path.isdir(root) else []:
    if name.endswith(".chs"):
        with open(os.path.join(root, name), "rb") as f:
            f.seek(int(offsets.get(name, 0)))
            files[name] = base64.b64encode(f.read(limit)).decode()
print(json.dumps({"mono": mono, "wall": wall, "files": files}))
"""

#: Locust's clean exit (it stops its workers first): SIGTERM to PID 1 of its container.
STOP_COMMAND = ("python", "-c", "import os, signal; os.kill(1, signal.SIGTERM)")


# -- the clock ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClockReading:
    """One copy's clock reading: the pod's two clocks, this machine's around the exec."""

    pod_mono: float
    pod_wall: float
    local_before: float
    local_after: float
    #: This machine's ``time.time() - time.monotonic()`` at the reading.
    local_wall_minus_mono: float

    @property
    def wall_offset(self) -> float:
        """Pod monotonic -> local monotonic, through the wall clocks."""
        return (self.pod_wall - self.pod_mono) - self.local_wall_minus_mono

    def outside(self, offset: float) -> float:
        """How far the pod's reading, mapped with ``offset``, falls outside the round trip."""
        mapped = self.pod_mono + offset
        return max(0.0, self.local_before - mapped, mapped - self.local_after)

    def bound(self, offset: float) -> float:
        """The most ``offset`` can be wrong, given that the reading happened in the round trip."""
        mapped = self.pod_mono + offset
        return max(mapped - self.local_before, self.local_after - mapped)


@dataclass
class PodClock:
    """One pod's monotonic clock on this machine's: fixed at the first reading, then checked."""

    pod: str
    offset_s: float
    method: str
    bound_s: float
    readings: int = 1
    #: The most a later reading put the fixed offset outside its round trip (0: never).
    worst_outside_s: float = 0.0

    @classmethod
    def first(cls, pod: str, reading: ClockReading) -> PodClock:
        offset = reading.wall_offset
        if reading.outside(offset) == 0.0:
            return cls(pod, offset, "wall-clock", reading.bound(offset))
        # The wall clocks disagree by more than the round trip: trust the round trip.
        middle = (reading.local_before + reading.local_after) / 2
        offset = middle - reading.pod_mono
        return cls(pod, offset, "round-trip", (reading.local_after - reading.local_before) / 2)

    def check(self, reading: ClockReading) -> None:
        self.readings += 1
        self.worst_outside_s = max(self.worst_outside_s, reading.outside(self.offset_s))

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def shift_chunks(data: bytes, offset_s: float) -> tuple[bytes, int]:
    """The complete chunks of ``data`` with ``t`` moved by ``offset_s``, and the bytes used.

    A partial chunk at the end (still being written in the pod) is left for the next copy.
    """
    out: list[bytes] = []
    used = 0
    for chunk, end in iter_coded_chunks(data):
        out.append(
            encode_coded_chunk(
                chunk.t + offset_s,
                chunk.latency_ms,
                chunk.status,
                chunk.codes,
                chunk.names,
                send_lag_ms=np.asarray(chunk.send_lag_ms, dtype=np.float64),
            )
        )
        used = end
    return b"".join(out), used


# -- one worker pod's files -----------------------------------------------------------------


@dataclass
class _RemoteFile:
    copied: int = 0  # bytes read from the pod's file
    pending: bytes = b""  # read, not yet a complete chunk


@dataclass
class _PodSamples:
    pod: str
    clock: PodClock | None = None
    files: dict[str, _RemoteFile] = field(default_factory=dict)


def _parse_sync(output: str, pod: str) -> tuple[float, float, dict[str, bytes]]:
    try:
        answer = json.loads(output.strip().splitlines()[-1])
        files = {str(k): base64.b64decode(v) for k, v in answer["files"].items()}
        return float(answer["mono"]), float(answer["wall"]), files
    except (ValueError, IndexError, KeyError, TypeError, AttributeError, binascii.Error) as exc:
        raise PlatformError(f"pod {pod}: unreadable samples listing: {output[:200]!r}") from exc


# -- the traffic ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TrafficTimings:
    """How long in-cluster Locust may take, and how often its samples are copied."""

    #: Pods scheduled, images pulled, the first sample copied.
    startup_timeout_s: float = 180.0
    #: Live stats and checks read the cluster at most this often.
    sync_interval_s: float = 0.5
    exec_timeout_s: float = 30.0
    #: Stopping: how long the workers get to finish (default: the request timeout + 10 s).
    stop_grace_s: float | None = None


class ClusterTraffic:
    """:class:`~chaos.traffic.base.Traffic` run by Locust pods in ``sc-traffic``."""

    def __init__(
        self,
        config: TrafficConfig,
        *,
        setup: names.Setup,
        writer: ClusterWriter,
        record: Callable[..., object] | None = None,
        timings: TrafficTimings | None = None,
        token_source: Callable[[float], str] | None = None,
    ) -> None:
        if config.network != CLUSTER:
            raise TrafficError(f"in-cluster traffic needs network {CLUSTER!r}: {config.network}")
        self.config = config
        self.setup = setup
        self._writer = writer
        self._record = record
        timings = timings or TrafficTimings()
        self.startup_timeout_s = timings.startup_timeout_s
        self.sync_interval_s = timings.sync_interval_s
        self.exec_timeout_s = timings.exec_timeout_s
        self.stop_grace_s = timings.stop_grace_s
        self.instance = secrets.token_hex(4)
        self._token_source = token_source
        self.pod_config = dataclasses.replace(
            config,
            host=target_host(setup),
            out_dir=Path(str(OUT_DIR)),
            workers=max(1, config.workers),
            token_url=f"file://{TOKEN_DIR / TOKEN_FILE}" if token_source else None,
        )
        self.plan = LocustDeployment(
            setup=setup,
            run_id=writer.run_id,
            config_json=self.pod_config.to_json(),
            workers=self.pod_config.workers,
            users=self.pod_config.locust_users,
            spawn_rate=self.pod_config.spawn_rate,
            run_time_s=self.pod_config.run_time_s,
            startup_timeout_s=self.startup_timeout_s,
            stop_timeout_s=math.ceil(config.request_timeout_s) + 1,
            locustfile=OPEN_LOOP_LOCUSTFILE if self.pod_config.open_loop else LOCUSTFILE,
            env=config.extra_env,
            token=token_source is not None,
        )
        self._changes: list[Change] = []
        self._pods: dict[str, _PodSamples] = {}
        self._lock = threading.RLock()
        self._last_sync = -math.inf
        self._last_check = -math.inf
        self._stopped = False
        self._stopping = False
        self._live = LiveTail(samples_dir(config.out_dir))

    # -- context manager ---------------------------------------------------------------------

    def __enter__(self) -> ClusterTraffic:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.stop()
        except TrafficError as stop_error:
            if exc is None:
                raise
            # the window's own error stays the one raised
            exc.add_note(f"also, stopping in-cluster traffic: {stop_error}")

    # -- starting ----------------------------------------------------------------------------

    def objects(self, token: str | None = None) -> list[dict[str, Any]]:
        """The window's Locust objects, each pod template labelled with this window's id."""
        built = locust_objects(self.plan)
        if token is not None:
            built.insert(0, token_secret(self.plan, token))
        for obj in built:
            template = obj.get("spec", {}).get("template")
            if template is not None:
                template["metadata"]["labels"][LABEL_INSTANCE] = self.instance
        return built

    def start(self) -> None:
        """Create the ConfigMap, the master's Service and Job, the workers; returns at once."""
        if self._changes:
            raise TrafficError("this traffic was already started")
        out = self.config.out_dir
        samples_dir(out).mkdir(parents=True, exist_ok=True)
        (out / "traffic-config.json").write_text(self.pod_config.to_json())
        token = None
        if self._token_source is not None:
            # valid for as long as the window can last: start-up, Locust's run time, a margin
            token = self._token_source(self.startup_timeout_s + self.plan.deadline_s + 300.0)
        try:
            for obj in self.objects(token):
                try:
                    change = self._writer.create(obj, detail="in-cluster Locust")
                except ConflictError as exc:
                    where = f"{obj['kind']} {names.TRAFFIC_NAMESPACE}/{obj['metadata']['name']}"
                    raise TrafficError(
                        f"{where} exists already: a run that died left it? "
                        "(`sidecar-chaos clean RUN_DIR` deletes a dead run's objects)"
                    ) from exc
                if change is not None:
                    self._changes.append(change)
        except ChaosError:
            self._delete_objects()
            raise

    def _pods_now(self) -> list[PodState]:
        labels = {names.LABEL_APP: self.plan.prefix, LABEL_INSTANCE: self.instance}
        return [
            p for p in self._writer.api.list_pods(names.TRAFFIC_NAMESPACE, labels) if not p.deleting
        ]

    def _role(self, pods: list[PodState], role: str) -> list[PodState]:
        return [p for p in pods if p.labels.get(names.LABEL_TRAFFIC_ROLE) == role]

    def wait_started(self, timeout: float | None = None) -> None:
        """Block until the first sample is copied here; raise if a pod cannot start."""
        limit = self.startup_timeout_s if timeout is None else timeout
        deadline = time.monotonic() + limit
        local = samples_dir(self.config.out_dir)
        while time.monotonic() < deadline:
            self.sync(force=True)
            if any(p.stat().st_size > 0 for p in local.glob(f"*{SUFFIX}")):
                return
            self._raise_if_broken(self._pods_now(), starting=True)
            time.sleep(0.25)
        states = ", ".join(_describe(p) for p in self._pods_now()) or "no pods"
        raise StartupError(f"no in-cluster Locust request recorded within {limit:.0f} s ({states})")

    # -- running ------------------------------------------------------------------------------

    @property
    def pids(self) -> list[int]:
        """No process on this machine: the load runs in the cluster."""
        return []

    def check(self) -> None:
        """Raise :class:`TrafficError` if the master or a worker ended before :meth:`stop`."""
        if self._stopping:
            return
        now = time.monotonic()
        if now - self._last_check < self.sync_interval_s:
            return
        self._last_check = now
        self._raise_if_broken(self._pods_now(), starting=False)

    def _raise_if_broken(self, pods: list[PodState], *, starting: bool) -> None:
        for pod in pods:
            locust = pod.container(LOCUST_CONTAINER)
            ended = pod.phase in ("Succeeded", "Failed")
            if locust is not None:
                ended = ended or locust.state == "terminated" or locust.restarts > 0
                if locust.state == "waiting" and locust.reason in _CANNOT_START:
                    raise TrafficError(f"in-cluster Locust cannot start: {_describe(pod)}")
            if ended:
                when = "before any request was recorded" if starting else "during the window"
                raise TrafficError(f"in-cluster Locust ended {when}: {_describe(pod)}")

    def live_stats(self) -> LiveStats:
        """The last second of completed requests, from the samples copied so far."""
        self.sync()
        return self._live.stats()

    # -- copying the samples ------------------------------------------------------------------

    def sync(self, *, force: bool = False) -> list[str]:
        """Copy what the workers wrote since the last copy; the pods it could not reach."""
        with self._lock:
            now = time.monotonic()
            if not force and now - self._last_sync < self.sync_interval_s:
                return []
            self._last_sync = now
            failed: list[str] = []
            for pod in self._role(self._pods_now(), "worker"):
                if pod.phase != "Running":
                    continue
                try:
                    self._sync_pod(pod.name)
                except PlatformError as exc:
                    failed.append(f"{pod.name}: {exc}")
            return failed

    def _sync_pod(self, pod: str) -> None:
        state = self._pods.setdefault(pod, _PodSamples(pod))
        while True:
            offsets = {name: f.copied for name, f in state.files.items()}
            command = ["python", "-c", SYNC_SCRIPT, str(REMOTE_SAMPLES), json.dumps(offsets)]
            local_before = time.monotonic()
            output = self._writer.pod_exec.exec(
                names.TRAFFIC_NAMESPACE,
                pod,
                SAMPLES_CONTAINER,
                [*command, str(_MAX_BYTES)],
                self.exec_timeout_s,
            )
            local_after = time.monotonic()
            wall_minus_mono = time.time() - time.monotonic()
            pod_mono, pod_wall, files = _parse_sync(output, pod)
            reading = ClockReading(pod_mono, pod_wall, local_before, local_after, wall_minus_mono)
            if state.clock is None:
                state.clock = PodClock.first(pod, reading)
            else:
                state.clock.check(reading)
            full = False
            for name, data in files.items():
                remote = state.files.setdefault(name, _RemoteFile())
                remote.copied += len(data)
                full = full or len(data) >= _MAX_BYTES
                remote.pending += data
                shifted, used = shift_chunks(remote.pending, state.clock.offset_s)
                remote.pending = remote.pending[used:]
                if shifted:
                    self._append(f"{pod}-{name}", shifted)
            if not full:
                return

    def _append(self, name: str, data: bytes) -> None:
        path = samples_dir(self.config.out_dir) / name
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)

    def clocks(self) -> list[PodClock]:
        """Each worker pod's clock offset, as used for its samples."""
        return [s.clock for s in self._pods.values() if s.clock is not None]

    # -- stopping -----------------------------------------------------------------------------

    def stop(self, grace_s: float | None = None) -> None:
        """Stop Locust, copy every sample, delete the window's objects (idempotent)."""
        if self._stopped:
            return
        self._stopped = self._stopping = True
        problems: list[str] = []
        try:
            if grace_s is None:
                grace_s = self.stop_grace_s or self.config.request_timeout_s + 10.0
            problems += self._stop_locust(grace_s)
            problems += self._final_sync()
            self._write_clock()
        finally:
            problems += self._delete_objects()
        if problems:
            raise TrafficError("in-cluster traffic: " + "; ".join(problems))

    def _stop_locust(self, grace_s: float) -> list[str]:
        try:
            pods = self._pods_now()
        except PlatformError as exc:
            return [f"cannot list the Locust pods: {exc}"]
        for master in self._role(pods, "master"):
            if master.phase == "Running":
                # ended meanwhile, or the session closed with it: the wait below tells
                with contextlib.suppress(PlatformError):
                    self._writer.pod_exec.exec(
                        names.TRAFFIC_NAMESPACE,
                        master.name,
                        LOCUST_CONTAINER,
                        list(STOP_COMMAND),
                        self.exec_timeout_s,
                    )
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            workers = self._role(self._pods_now(), "worker")
            if all(_locust_ended(p) for p in workers):
                return []
            time.sleep(0.2)
        still = [p.name for p in self._role(self._pods_now(), "worker") if not _locust_ended(p)]
        return [f"Locust still running after {grace_s:g} s in {', '.join(still)}"] if still else []

    def _final_sync(self) -> list[str]:
        failed: list[str] = []
        for _ in range(3):
            failed = self.sync(force=True)
            if not failed:
                break
            time.sleep(0.5)
        lost = [
            f"{pod}/{name}: {len(f.pending)} bytes of a torn chunk"
            for pod, state in self._pods.items()
            for name, f in state.files.items()
            if f.pending
        ]
        return [f"samples not copied from {', '.join(failed + lost)}"] if failed or lost else []

    def _write_clock(self) -> None:
        clocks = [c.to_json() for c in self.clocks()]
        (self.config.out_dir / CLOCK_FILE).write_text(json.dumps({"pods": clocks}, indent=2))
        if self._record is not None:
            self._record("traffic_clock", platform="kubernetes", pods=clocks)

    def _delete_objects(self) -> list[str]:
        problems: list[str] = []
        for change in reversed(self._changes):
            try:
                self._writer.undo(change)
            except PlatformError as exc:
                problems.append(f"{change.where()} not deleted ({exc}); run `clean`")
        self._changes = []
        return problems


_CANNOT_START = frozenset(
    {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError"}
)


def _locust_ended(pod: PodState) -> bool:
    locust = pod.container(LOCUST_CONTAINER)
    return locust is None or locust.state == "terminated" or locust.restarts > 0


def _describe(pod: PodState) -> str:
    locust = pod.container(LOCUST_CONTAINER)
    what = f"{pod.name} {pod.phase}"
    if locust is not None:
        what += f", locust {locust.state}"
        if locust.reason:
            what += f" ({locust.reason})"
        if locust.restarts:
            what += f", {locust.restarts} restarts"
    return what


__all__ = [
    "CLOCK_FILE",
    "LABEL_INSTANCE",
    "LOCUST_CONTAINER",
    "REMOTE_SAMPLES",
    "STOP_COMMAND",
    "SYNC_SCRIPT",
    "ClockReading",
    "ClusterTraffic",
    "PodClock",
    "TrafficTimings",
    "shift_chunks",
]
