"""Locust inside the cluster: a master Job and a worker Deployment in ``sc-traffic``.

Requests must cross the client-side proxy, as real traffic does (a VirtualService
fault is applied there), so the workers join the setup's data plane:

* sidecar: a plain Envoy client sidecar (outbound only, its own mTLS identity from
  the Secret ``locust-certs``); Locust sends to ``127.0.0.1:15001``;
* mesh: Istio injection by pod label (``sidecar.istio.io/inject``);
* ambient: the pod label ``istio.io/dataplane-mode=ambient``.

The master only coordinates; it stays out of the mesh. Both run the package's own
image and locustfile; the traffic config (the JSON of
:class:`chaos.traffic.config.TrafficConfig`) comes from a ConfigMap; samples are
written under :data:`OUT_DIR` in each pod (an emptyDir) in the local platform's format.
Both are bounded in time: the Job has an ``activeDeadlineSeconds``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import PurePosixPath

from chaos.platforms.kubernetes import names
from chaos.platforms.kubernetes.manifests import core
from chaos.platforms.kubernetes.manifests.core import Manifest, metadata
from chaos.traffic.config import CONFIG_ENV

#: The package's source in the image (``deploy/kind/Dockerfile`` installs it editable there).
IMAGE_SOURCE_DIR = PurePosixPath("/opt/sidecar-chaos")
LOCUSTFILE = IMAGE_SOURCE_DIR / "chaos" / "traffic" / "locustfile.py"
#: The open-loop user (``traffic.mode: open``, the default).
OPEN_LOOP_LOCUSTFILE = IMAGE_SOURCE_DIR / "chaos" / "traffic" / "openloop.py"
#: Loaded next to a user's own locustfile: it records that file's requests.
ATTACH_LOCUSTFILE = IMAGE_SOURCE_DIR / "chaos" / "traffic" / "attach.py"
CONFIG_DIR = PurePosixPath("/etc/sidecar-chaos/traffic")
CONFIG_FILE = "traffic-config.json"
#: A user's own locustfile, shipped in the traffic ConfigMap (not in the image).
USER_LOCUSTFILE = "locustfile.py"
#: The most a user's locustfile may weigh (a ConfigMap holds at most 1 MiB in all).
USER_LOCUSTFILE_MAX_BYTES = 256 * 1024
#: Where each Locust pod writes its samples (``<OUT_DIR>/samples/``).
OUT_DIR = PurePosixPath("/run/sidecar-chaos/out")
#: Where the workers read their bearer token (a Secret the run creates; see ``token_secret``).
TOKEN_DIR = PurePosixPath("/etc/sidecar-chaos/token")
TOKEN_FILE = "token"
#: The client identity of Locust's plain sidecar (sidecar setup).
CLIENT_SERVICE = "locust"
LOCUST_CERTS_SECRET = "locust-certs"
#: A container of each worker pod that only keeps its samples reachable by exec while
#: Locust itself stops (and the kubelet restarts it): the run copies them from here.
SAMPLES_CONTAINER = "samples"
_MASTER = "master"


@dataclass(frozen=True)
class LocustDeployment:
    """What one run's in-cluster Locust needs."""

    setup: names.Setup
    run_id: str
    #: :meth:`chaos.traffic.config.TrafficConfig.to_json`, with ``out_dir`` = :data:`OUT_DIR`.
    config_json: str
    workers: int
    users: int
    spawn_rate: float
    run_time_s: float
    #: Extra seconds the master waits for workers and for requests under way.
    startup_timeout_s: float = 60.0
    stop_timeout_s: float = 5.0
    #: The user the pods run (closed loop by default; :data:`OPEN_LOOP_LOCUSTFILE`).
    locustfile: PurePosixPath = LOCUSTFILE
    #: Extra environment of the Locust containers (the run's marker).
    env: tuple[tuple[str, str], ...] = ()
    #: Send a bearer token from :data:`TOKEN_DIR` (the run creates :func:`token_secret`).
    token: bool = False
    #: The team's own in-cluster URL (``traffic.host``); None: the demo's (:func:`target_host`).
    host: str | None = None
    #: The text of a user's own locustfile (``traffic.locustfile``), mounted from the
    #: ConfigMap and run next to :data:`ATTACH_LOCUSTFILE` instead of ``locustfile``.
    user_locustfile: str | None = None

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"in-cluster Locust needs at least one worker, got {self.workers}")
        if self.users < 1 or self.spawn_rate <= 0 or self.run_time_s <= 0:
            raise ValueError("users, spawn_rate and run_time_s must be positive")
        if self.user_locustfile is not None:
            size = len(self.user_locustfile.encode())
            if size > USER_LOCUSTFILE_MAX_BYTES:
                raise ValueError(
                    f"a locustfile of {size} bytes does not fit the traffic ConfigMap "
                    f"(at most {USER_LOCUSTFILE_MAX_BYTES})"
                )

    @property
    def client_sidecar(self) -> bool:
        """Whether the workers send through the tool's own Envoy client sidecar (demo only)."""
        return self.setup is names.Setup.SIDECAR and self.host is None

    @property
    def prefix(self) -> str:
        return f"locust-{self.setup.value}"

    @property
    def master_name(self) -> str:
        return f"{self.prefix}-{_MASTER}"

    @property
    def worker_name(self) -> str:
        return f"{self.prefix}-{_WORKER}"

    @property
    def config_map_name(self) -> str:
        return self.prefix

    @property
    def token_secret_name(self) -> str:
        return f"{self.prefix}-token"

    @property
    def deadline_s(self) -> int:
        """The master Job's ``activeDeadlineSeconds``: start-up, run, stop, and a margin."""
        return math.ceil(self.startup_timeout_s + self.run_time_s + self.stop_timeout_s + 30)


def target_host(setup: names.Setup) -> str:
    """Where the workers send requests: their own proxy (sidecar) or frontend's Service."""
    if setup is names.Setup.SIDECAR:
        return f"http://127.0.0.1:{names.OUTBOUND_PORT}"
    return f"http://{names.service_host('frontend', setup)}:{names.APP_PORT}"


#: On the Locust pods: the setup whose data plane they join.
SETUP_LABEL = "sidecar-chaos.dev/setup"
#: The worker pods' traffic role (the fault counters of their sidecars count in a mesh).
WORKER_ROLE = "worker"
_WORKER = WORKER_ROLE


def _labels(plan: LocustDeployment, role: str) -> dict[str, str]:
    return {
        names.LABEL_APP: plan.prefix,
        names.LABEL_TRAFFIC_ROLE: role,
        SETUP_LABEL: plan.setup.value,
    }


def _locust_base(plan: LocustDeployment) -> list[str]:
    files = str(plan.locustfile)
    if plan.user_locustfile is not None:
        files = f"{ATTACH_LOCUSTFILE},{CONFIG_DIR / USER_LOCUSTFILE}"
    host = plan.host or target_host(plan.setup)
    return ["python", "-m", "locust", "-f", files, "--host", host]


def master_command(plan: LocustDeployment) -> list[str]:
    return [
        *_locust_base(plan),
        "--master",
        "--headless",
        "--users", str(plan.users),
        "--spawn-rate", str(plan.spawn_rate),
        "--run-time", f"{math.ceil(plan.run_time_s)}s",
        "--only-summary",
        "--exit-code-on-error", "0",
        "--stop-timeout", str(math.ceil(plan.stop_timeout_s)),
        "--expect-workers", str(plan.workers),
        "--expect-workers-max-wait", str(math.ceil(plan.startup_timeout_s)),
    ]  # fmt: skip


def worker_command(plan: LocustDeployment) -> list[str]:
    master = f"{plan.master_name}.{names.TRAFFIC_NAMESPACE}.svc.cluster.local"
    return [
        *_locust_base(plan),
        "--worker",
        "--master-host",
        master,
        "--master-port",
        str(names.LOCUST_MASTER_PORT),
    ]


def _locust_container(plan: LocustDeployment, command: list[str]) -> Manifest:
    mounts: list[Manifest] = [
        {"name": "traffic-config", "mountPath": str(CONFIG_DIR), "readOnly": True},
        {"name": "out", "mountPath": str(OUT_DIR)},
    ]
    if plan.token:
        mounts.append({"name": "token", "mountPath": str(TOKEN_DIR), "readOnly": True})
    return {
        "name": "locust",
        "image": names.APP_IMAGE,
        "imagePullPolicy": "IfNotPresent",
        "command": command,
        "env": [
            {"name": CONFIG_ENV, "value": str(CONFIG_DIR / CONFIG_FILE)},
            {"name": "PYTHONUNBUFFERED", "value": "1"},
            *({"name": k, "value": v} for k, v in plan.env),
        ],
        "ports": [{"containerPort": names.LOCUST_MASTER_PORT, "protocol": "TCP"}],
        "volumeMounts": mounts,
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
    }


def _samples_container(plan: LocustDeployment) -> Manifest:
    """Sleeps as long as the run may last; exec reads the samples through it."""
    return {
        "name": SAMPLES_CONTAINER,
        "image": names.APP_IMAGE,
        "imagePullPolicy": "IfNotPresent",
        "command": ["python", "-c", f"import time; time.sleep({plan.deadline_s})"],
        "volumeMounts": [{"name": "out", "mountPath": str(OUT_DIR), "readOnly": True}],
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
    }


def _volumes(plan: LocustDeployment) -> list[Manifest]:
    volumes: list[Manifest] = [
        {"name": "traffic-config", "configMap": {"name": plan.config_map_name}},
        {"name": "out", "emptyDir": {}},
    ]
    if plan.token:
        volumes.append({"name": "token", "secret": {"secretName": plan.token_secret_name}})
    return volumes


def config_map(plan: LocustDeployment) -> Manifest:
    data = {CONFIG_FILE: plan.config_json}
    if plan.user_locustfile is not None:
        data[USER_LOCUSTFILE] = plan.user_locustfile
    return core.config_map(plan.config_map_name, names.TRAFFIC_NAMESPACE, data, run_id=plan.run_id)


def token_secret(plan: LocustDeployment, token: str) -> Manifest:
    """The bearer token the workers send (minted by the run with ``cluster up``'s key)."""
    return core.secret(
        plan.token_secret_name,
        names.TRAFFIC_NAMESPACE,
        {TOKEN_FILE: token.encode()},
        run_id=plan.run_id,
    )


def master_service(plan: LocustDeployment) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(
            plan.master_name,
            names.TRAFFIC_NAMESPACE,
            labels=_labels(plan, _MASTER),
            run_id=plan.run_id,
        ),
        "spec": {
            "selector": _labels(plan, _MASTER),
            "ports": [
                {
                    "name": "tcp-locust",
                    "port": names.LOCUST_MASTER_PORT,
                    "targetPort": names.LOCUST_MASTER_PORT,
                    "protocol": "TCP",
                }
            ],
        },
    }


def master_job(plan: LocustDeployment) -> Manifest:
    labels = {**_labels(plan, _MASTER), **names.managed_labels()}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata(
            plan.master_name, names.TRAFFIC_NAMESPACE, labels=labels, run_id=plan.run_id
        ),
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": plan.deadline_s,
            "template": {
                "metadata": {"labels": labels, "annotations": {names.ANNOTATION_RUN: plan.run_id}},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [_locust_container(plan, master_command(plan))],
                    "volumes": _volumes(plan),
                },
            },
        },
    }


def _data_plane_labels(setup: names.Setup) -> dict[str, str]:
    if setup is names.Setup.MESH:
        return {"sidecar.istio.io/inject": "true"}
    if setup is names.Setup.AMBIENT:
        return {"istio.io/dataplane-mode": "ambient"}
    return {}


def worker_deployment(plan: LocustDeployment) -> Manifest:
    """The workers, in the setup's data plane so their requests cross a client-side proxy."""
    labels = {**_labels(plan, _WORKER), **names.managed_labels()}
    pod_labels = {**labels, **_data_plane_labels(plan.setup)}
    pod_spec: Manifest = {
        "containers": [
            _locust_container(plan, worker_command(plan)),
            _samples_container(plan),
        ],
        "volumes": _volumes(plan),
        "terminationGracePeriodSeconds": math.ceil(plan.stop_timeout_s) + 5,
    }
    if plan.client_sidecar:
        pod_spec["initContainers"] = [core.sidecar_init_container()]
        pod_spec["containers"].append(core.sidecar_container(inbound=False))
        pod_spec["volumes"] += core.sidecar_volumes(
            names.envoy_configmap_name(CLIENT_SERVICE), LOCUST_CERTS_SECRET
        )
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(
            plan.worker_name, names.TRAFFIC_NAMESPACE, labels=labels, run_id=plan.run_id
        ),
        "spec": {
            "replicas": plan.workers,
            "selector": {"matchLabels": _labels(plan, _WORKER)},
            "template": {
                "metadata": {
                    "labels": pod_labels,
                    "annotations": {names.ANNOTATION_RUN: plan.run_id},
                },
                "spec": pod_spec,
            },
        },
    }


def locust_objects(plan: LocustDeployment) -> list[Manifest]:
    """Everything one run's Locust needs, in the order to create it."""
    return [config_map(plan), master_service(plan), master_job(plan), worker_deployment(plan)]
