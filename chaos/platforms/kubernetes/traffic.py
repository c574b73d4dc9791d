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
  pod's ``OUT_DIR``; :meth:`ClusterTraffic.sync` copies them through
  :class:`~.api.PodExec` (exec in the worker's ``samples`` container, which outlives
  Locust) with :class:`~.samplecopy.SampleCopier`, moving their times onto this
  machine's monotonic clock, under ``<out_dir>/samples/``: the analysis and the report
  read them as they read local Locust's. Copied while the window runs (live stats,
  stop conditions) and completely at stop. Each pod's clock offset and how far it can
  be off are written to ``clock.json`` and the journal (``traffic_clock``).
* **tokens**: with a ``token_source`` (the platform mints one with ``cluster up``'s
  signing key, :mod:`.tokens`), the token goes to the workers in a Secret the run
  owns, read by Locust from a file (``token_url`` ``file:///etc/sidecar-chaos/token/
  token``) at start and after a 401.
* **stop**: SIGTERM to the master's Locust (PID 1 of its container; to the workers'
  if the master is gone): it stops the workers, which finish their requests under way
  and flush; the last chunks are copied (from the ``samples`` container); then every
  object is deleted (the Job with background propagation, so its pod goes too).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from chaos.errors import ChaosError, InputError, PlatformError, StartupError, TrafficError
from chaos.platforms.kubernetes import names
from chaos.platforms.kubernetes.api import ConflictError
from chaos.platforms.kubernetes.changes import Change, ClusterWriter
from chaos.platforms.kubernetes.manifests.locust import (
    CONFIG_DIR,
    LOCUSTFILE,
    OPEN_LOOP_LOCUSTFILE,
    OUT_DIR,
    SAMPLES_CONTAINER,
    TOKEN_DIR,
    TOKEN_FILE,
    USER_LOCUSTFILE,
    USER_LOCUSTFILE_MAX_BYTES,
    LocustDeployment,
    locust_objects,
    target_host,
    token_secret,
)
from chaos.platforms.kubernetes.podstate import PodState
from chaos.platforms.kubernetes.samplecopy import PodClock, SampleCopier
from chaos.rundir.chunks import SUFFIX
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

#: Locust's clean exit (it stops its workers first): SIGTERM to PID 1 of its container.
STOP_COMMAND = ("python", "-c", "import os, signal; os.kill(1, signal.SIGTERM)")


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
        host: str | None = None,
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
        user_locustfile = _read_locustfile(config.locustfile)
        self.pod_config = dataclasses.replace(
            config,
            # the team's own URL (traffic.host), else the demo's frontend
            host=host or target_host(setup),
            out_dir=Path(str(OUT_DIR)),
            workers=max(1, config.workers),
            token_url=f"file://{TOKEN_DIR / TOKEN_FILE}" if token_source else None,
            # the copy the pods read from the ConfigMap
            locustfile=None if user_locustfile is None else Path(str(CONFIG_DIR / USER_LOCUSTFILE)),
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
            host=host,
            user_locustfile=user_locustfile,
        )
        self._changes: list[Change] = []
        self._copier = SampleCopier(
            REMOTE_SAMPLES, samples_dir(config.out_dir), self._in_samples_container
        )
        self._lock = threading.RLock()
        self._last_sync = -math.inf
        self._last_check = -math.inf
        self._failed_checks = 0
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
        try:
            pods = self._pods_now()
        except PlatformError as exc:
            # one failed read is the API's hiccup; three in a row, the window cannot be watched
            self._failed_checks += 1
            if self._failed_checks >= 3:
                raise TrafficError(f"in-cluster traffic cannot be watched: {exc}") from exc
            return
        self._failed_checks = 0
        self._raise_if_broken(pods, starting=False)

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
            try:
                workers = self._role(self._pods_now(), "worker")
            except PlatformError as exc:
                return [f"cannot list the Locust pods: {str(exc)[:200]}"]
            for pod in workers:
                if pod.phase != "Running":
                    continue
                try:
                    self._copier.copy(pod.name)
                except PlatformError as exc:
                    failed.append(f"{pod.name}: {str(exc)[:200]}")
            return failed

    def _in_samples_container(self, pod: str, command: list[str]) -> str:
        return self._writer.pod_exec.exec(
            names.TRAFFIC_NAMESPACE, pod, SAMPLES_CONTAINER, command, self.exec_timeout_s
        )

    def clocks(self) -> list[PodClock]:
        """Each worker pod's clock offset, as used for its samples."""
        return self._copier.clocks()

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
        """SIGTERM the master (it stops the workers); the workers themselves if it is gone."""
        try:
            pods = self._pods_now()
            masters = [p for p in self._role(pods, "master") if not _locust_ended(p)]
            # Both at once would race: a worker told to quit by its master while quitting
            # on its own signal can end before the requests under way are recorded.
            for pod in masters or self._role(pods, "worker"):
                if pod.phase == "Running" and not _locust_ended(pod):
                    # ended meanwhile, or the session closed with it: the wait below tells
                    with contextlib.suppress(PlatformError):
                        self._writer.pod_exec.exec(
                            names.TRAFFIC_NAMESPACE,
                            pod.name,
                            LOCUST_CONTAINER,
                            list(STOP_COMMAND),
                            self.exec_timeout_s,
                        )
            deadline = time.monotonic() + grace_s
            while True:
                running = [
                    p for p in self._role(self._pods_now(), "worker") if not _locust_ended(p)
                ]
                if not running:
                    return []
                if time.monotonic() >= deadline:
                    names_ = ", ".join(p.name for p in running)
                    return [f"Locust still running after {grace_s:g} s in {names_}"]
                time.sleep(0.2)
        except PlatformError as exc:
            return [f"cannot stop the Locust pods: {exc}"]

    def _final_sync(self) -> list[str]:
        failed: list[str] = []
        for _ in range(3):
            failed = self.sync(force=True)
            if not failed:
                break
            time.sleep(0.5)
        lost = self._copier.torn()
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


def _read_locustfile(path: Path | None) -> str | None:
    """A user's own locustfile, to ship in the traffic ConfigMap (bounded in size)."""
    if path is None:
        return None
    try:
        size = path.stat().st_size
        if size > USER_LOCUSTFILE_MAX_BYTES:
            raise InputError(
                f"locustfile {path}: {size} bytes do not fit the traffic ConfigMap "
                f"(at most {USER_LOCUSTFILE_MAX_BYTES})"
            )
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"locustfile {path}: cannot read it ({exc})") from exc


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
    "ClusterTraffic",
    "TrafficTimings",
]
