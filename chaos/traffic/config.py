"""What traffic to drive: the validated configuration shared by the runner and Locust.

The runner (main process) validates a :class:`TrafficConfig` and writes it as JSON
into the run directory; the Locust processes read it back through the environment
variable :data:`CONFIG_ENV`. This module imports only the standard library, so both
sides can use it (the Locust side is monkey-patched by gevent).
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, NamedTuple
from urllib.parse import urlsplit

from chaos.errors import InputError

CONFIG_ENV = "CHAOS_TRAFFIC_CONFIG"
#: A Locust process whose sample file cannot be written exits with this plus the errno
#: (ENOSPC: 64 + 28 = 92): the runner names the cause, as nothing can be logged on a full disk.
RECORDER_EXIT_BASE = 64
#: Written by a local or master Locust process at its end, next to the samples: how many
#: requests Locust's own statistics counted (``{"requests": N}``), to check none went unrecorded.
SENT_FILE = "locust-sent.json"
"""Environment variable holding the path of the JSON config inside a Locust process."""

METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})

OPEN: Final = "open"
"""Open-loop load: requests start on an arrival schedule whatever the responses do."""
CLOSED: Final = "closed"
"""Closed-loop load: each user sends its next request once the last one answered."""
MODES: Final = (OPEN, CLOSED)

LOOPBACK: Final = "loopback"
"""Locust runs on this machine: every URL is on 127.0.0.0/8 (the local platform's rule)."""
CLUSTER: Final = "cluster"
"""Locust runs inside a Kubernetes cluster: URLs are the cluster's own Service names
(``<service>.<namespace>.svc.cluster.local``) or the pod's loopback (its own sidecar)."""
NETWORKS: Final = (LOOPBACK, CLUSTER)
CLUSTER_DOMAIN: Final = ".svc.cluster.local"


class Endpoint(NamedTuple):
    """One endpoint of the built-in user: ``(name, method, path, weight)``.

    ``path`` is relative to the host ("/api/pay") or an absolute loopback URL, so one
    run can reach several pods. A POST sends ``{"id": "<write id>"}``.
    """

    name: str
    method: str
    path: str
    weight: float = 1.0


def check_loopback_url(url: str, what: str) -> None:
    """Raise :class:`InputError` unless ``url`` is http(s) on 127.0.0.0/8 or localhost."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError(f"{what}: {url!r} is not an http(s) URL with a host")
    host = parts.hostname
    if host == "localhost":
        return
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise InputError(
            f"{what}: {url!r}: traffic stays on loopback; use 127.0.0.0/8 or localhost"
        ) from None
    if not (address.version == 4 and address in ipaddress.ip_network("127.0.0.0/8")):
        raise InputError(f"{what}: {url!r} is not on loopback; traffic never leaves the machine")


def check_cluster_url(url: str, what: str) -> None:
    """Raise :class:`InputError` unless ``url`` is a cluster Service name or on loopback.

    In-cluster traffic never reaches an external host: only ``http(s)://<service>.
    <namespace>.svc.cluster.local`` (the cluster's DNS) and the pod's own loopback.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    labels = host.removesuffix(CLUSTER_DOMAIN).split(".")
    if (
        parts.scheme in ("http", "https")
        and host.endswith(CLUSTER_DOMAIN)
        and len(labels) == 2
        and all(labels)
    ):
        return
    try:
        check_loopback_url(url, what)
    except InputError:
        raise InputError(
            f"{what}: {url!r}: traffic inside the cluster goes only to the cluster's own "
            f"Services (<service>.<namespace>{CLUSTER_DOMAIN}) or the pod's loopback"
        ) from None


@dataclass(frozen=True)
class TrafficConfig:
    """How much traffic, to where, for how long.

    ``rate`` is the target total of requests per second. In ``mode`` "open" (the
    default) it is an arrival rate: each Locust process keeps its own schedule of
    ``rate / processes`` requests a second and starts every request on time whatever
    the responses do, with at most ``max_in_flight`` (default ``users``) under way
    over all processes; a request due while the cap is full waits for a slot until it
    is ``max_lateness_s`` late, and is recorded as dropped past that.
    In mode "closed" each of ``users`` users waits for its response and paces itself
    at ``rate / users``. A user's own locustfile sets its own pacing (mode ignored).
    ``duration_s`` bounds the run three times:
    the recorder quits it on the monotonic clock, Locust's ``--run-time`` is a backstop,
    and the runner kills what is left at a deadline.
    ``workers`` = 0 runs one Locust process; N runs a master and N workers on loopback.
    ``network`` says where Locust runs and so which hosts it may reach: ``loopback``
    (this machine, 127.0.0.0/8 only) or ``cluster`` (inside Kubernetes: the cluster's
    Service names only, see :func:`check_cluster_url`).
    """

    host: str
    out_dir: Path
    duration_s: float
    users: int = 10
    spawn_rate: float = 100.0
    rate: float = 100.0
    endpoints: tuple[Endpoint, ...] = ()
    locustfile: Path | None = None
    token_url: str | None = None
    #: Fetch a fresh token this often (clients renew short-lived tokens); None: only on 401.
    token_refresh_s: float | None = None
    workers: int = 0
    mode: str = OPEN
    #: Open loop: the most requests under way at once over all processes; None: ``users``.
    max_in_flight: int | None = None
    #: Open loop: how late a request due while the cap is full may still be sent.
    max_lateness_s: float = 0.1
    request_timeout_s: float = 5.0
    startup_timeout_s: float = 30.0
    extra_env: tuple[tuple[str, str], ...] = field(default=())
    network: str = LOOPBACK
    #: Whether the built-in users keep their samples. False only for the bench's
    #: no-recording rows (``chaos.bench.driver``): nothing is written, so a run that
    #: waits for its first sample (``TrafficRun.wait_started``) never sees one.
    record: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "out_dir", Path(self.out_dir))
        object.__setattr__(self, "endpoints", tuple(Endpoint(*e) for e in self.endpoints))
        if self.locustfile is not None:
            object.__setattr__(self, "locustfile", Path(self.locustfile))
        self._validate()

    def _validate(self) -> None:
        if self.network not in NETWORKS:
            raise InputError(
                f"traffic network must be one of {', '.join(NETWORKS)}, got {self.network!r}"
            )
        check_url = check_cluster_url if self.network == CLUSTER else check_loopback_url
        check_url(self.host, "traffic host")
        if self.locustfile is None and "@" in urlsplit(self.host).netloc:
            raise InputError(
                "traffic host: the URL has credentials in it (user:password@); the built-in "
                "users do not send them (use token_url for a bearer token)"
            )
        if self.token_url is not None and not self._token_in_a_file():
            check_url(self.token_url, "token_url")
        for name, value in (
            ("users", self.users),
            ("spawn_rate", self.spawn_rate),
            ("rate", self.rate),
            ("duration_s", self.duration_s),
            ("request_timeout_s", self.request_timeout_s),
            ("startup_timeout_s", self.startup_timeout_s),
        ):
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise InputError(f"traffic {name} must be a positive number, got {value!r}")
        if self.workers < 0:
            raise InputError(f"traffic workers must be 0 or more, got {self.workers}")
        if self.workers > self.users:
            raise InputError(f"traffic workers ({self.workers}) exceed users ({self.users})")
        if not (math.isfinite(self.max_lateness_s) and self.max_lateness_s >= 0):
            raise InputError(f"traffic max_lateness_s must be 0 or more, got {self.max_lateness_s}")
        if self.mode not in MODES:
            raise InputError(f"traffic mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.max_in_flight is not None and not (
            isinstance(self.max_in_flight, int) and self.max_in_flight >= self.processes
        ):
            raise InputError(
                f"traffic max_in_flight must be a whole number of at least {self.processes} "
                f"(one per Locust process), got {self.max_in_flight!r}"
            )
        if self.locustfile is not None:
            # In the cluster the platform ships the file (a ConfigMap): the pods' copy is
            # not on this machine.
            if self.network != CLUSTER and not self.locustfile.is_file():
                raise InputError(f"locustfile not found: {self.locustfile}")
        elif not self.endpoints:
            raise InputError("traffic needs endpoints or a locustfile")
        names = [e.name for e in self.endpoints]
        if len(set(names)) != len(names):
            raise InputError(f"traffic endpoint names must be unique: {names}")
        for e in self.endpoints:
            if not e.name:
                raise InputError("a traffic endpoint needs a name")
            if e.method.upper() not in METHODS:
                raise InputError(f"endpoint {e.name}: unknown method {e.method!r}")
            if not (math.isfinite(e.weight) and e.weight > 0):
                raise InputError(f"endpoint {e.name}: weight must be positive")
            if e.path.startswith(("http://", "https://")):
                check_url(e.path, f"endpoint {e.name}")
            elif not e.path.startswith("/"):
                raise InputError(f"endpoint {e.name}: path must start with '/': {e.path!r}")

    def _token_in_a_file(self) -> bool:
        """In the cluster the token may be a file in the pod (``file:///...``, from a Secret)."""
        url = urlsplit(self.token_url or "")
        return self.network == CLUSTER and url.scheme == "file" and url.path.startswith("/")

    @property
    def run_time_s(self) -> int:
        """Locust's ``--run-time``, a backstop: whole seconds past ``duration_s``.

        The run itself ends at ``duration_s`` on the monotonic clock (see the recorder)
        and then waits for the requests under way; the backstop leaves them the request
        timeout and a second, or it would end the process with requests still in flight
        whose samples are then lost.
        """
        return math.ceil(self.duration_s + self.request_timeout_s) + 1

    @property
    def per_user_rate(self) -> float:
        """Closed loop: requests per second each user of the built-in user aims at."""
        return self.rate / self.users

    @property
    def processes(self) -> int:
        """Locust processes that send requests: the workers, or the one local process."""
        return max(1, self.workers)

    @property
    def open_loop(self) -> bool:
        """Whether the built-in user runs an arrival schedule (mode open, no own locustfile)."""
        return self.mode == OPEN and self.locustfile is None

    @property
    def process_rate(self) -> float:
        """Open loop: the arrival rate each sending process keeps on its own schedule."""
        return self.rate / self.processes

    @property
    def process_in_flight(self) -> int:
        """Open loop: the in-flight cap of each sending process (the total split evenly)."""
        cap = self.users if self.max_in_flight is None else self.max_in_flight
        return max(1, cap // self.processes)

    @property
    def locust_users(self) -> int:
        """``--users`` for Locust: one scheduling user per process in open loop, else users."""
        return self.processes if self.open_loop else self.users

    def to_json(self) -> str:
        """Serialise for the Locust processes."""
        return json.dumps(
            {
                "host": self.host,
                "out_dir": str(self.out_dir),
                "duration_s": self.duration_s,
                "users": self.users,
                "spawn_rate": self.spawn_rate,
                "rate": self.rate,
                "endpoints": [list(e) for e in self.endpoints],
                "locustfile": str(self.locustfile) if self.locustfile else None,
                "token_url": self.token_url,
                "token_refresh_s": self.token_refresh_s,
                "workers": self.workers,
                "mode": self.mode,
                "max_in_flight": self.max_in_flight,
                "max_lateness_s": self.max_lateness_s,
                "request_timeout_s": self.request_timeout_s,
                "startup_timeout_s": self.startup_timeout_s,
                "extra_env": [list(kv) for kv in self.extra_env],
                "network": self.network,
                "record": self.record,
            },
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str) -> TrafficConfig:
        """Inverse of :meth:`to_json`."""
        raw = json.loads(text)
        return cls(
            host=str(raw["host"]),
            out_dir=Path(raw["out_dir"]),
            duration_s=float(raw["duration_s"]),
            users=int(raw["users"]),
            spawn_rate=float(raw["spawn_rate"]),
            rate=float(raw["rate"]),
            endpoints=tuple(
                Endpoint(str(n), str(m), str(p), float(w)) for n, m, p, w in raw["endpoints"]
            ),
            locustfile=Path(raw["locustfile"]) if raw["locustfile"] else None,
            token_url=raw["token_url"],
            token_refresh_s=raw.get("token_refresh_s"),
            workers=int(raw["workers"]),
            mode=str(raw.get("mode", OPEN)),
            max_in_flight=raw.get("max_in_flight"),
            max_lateness_s=float(raw.get("max_lateness_s", 0.1)),
            request_timeout_s=float(raw["request_timeout_s"]),
            startup_timeout_s=float(raw["startup_timeout_s"]),
            extra_env=tuple((str(k), str(v)) for k, v in raw["extra_env"]),
            network=str(raw.get("network", LOOPBACK)),
            record=bool(raw.get("record", True)),
        )


def load_current_config() -> TrafficConfig:
    """Inside a Locust process: the config the runner passed (for users' own locustfiles)."""
    path = os.environ.get(CONFIG_ENV)
    if not path:
        raise InputError(f"{CONFIG_ENV} is not set: not started by chaos.traffic.TrafficRun")
    return TrafficConfig.from_json(Path(path).read_text())
