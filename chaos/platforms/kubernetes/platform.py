"""The Kubernetes platform: the same experiments on a kind cluster (``platform: kubernetes``).

``cluster up`` deploys the demo workload once per setup (namespaces ``sc-sidecar``,
``sc-mesh``, ``sc-ambient``; ``sc-baseline``, without proxies, for cost steps only:
:mod:`.manifests.baseline`); :meth:`KubernetesPlatform.start` does not deploy, it
finds that workload, waits for it to be ready, and yields a
:class:`~.topology.KubeTopology` whose fault ops write through a change ledger in
the run directory. Leaving ``start`` undoes whatever a fault left applied; ``clean``
does the same from the ledger after a runner died.

Safety: a kube context that is not a kind cluster (``kind-...``) is refused unless
it is named by ``allow_context`` (``--allow-context``, or the environment variable
``SIDECAR_CHAOS_ALLOW_CONTEXT``); nothing is written in ``kube-system`` (the API
adapter refuses it); in ``istio-system`` only istiod's scale and ztunnel, which the
faults name.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from chaos.errors import InputError, PlatformError, StartupError
from chaos.experiment import Experiment, Setup
from chaos.experiment.dataplane import DataPlaneSpec
from chaos.experiment.models import EXTRA_HOST
from chaos.platforms.base import Problem, RunningTopology, StartOptions, Workload
from chaos.platforms.kubernetes import names
from chaos.platforms.kubernetes.api import KubeApi
from chaos.platforms.kubernetes.changes import (
    ChangeLedger,
    ClusterWriter,
    LedgerHeader,
    ledger_headers,
    mark_done,
    pending_changes,
    undo_change,
)
from chaos.platforms.kubernetes.dataplaneops import (
    dataplane_problems,
    plan_dataplane,
    start_dataplane,
)
from chaos.platforms.kubernetes.existing import (
    ExistingFaultOps,
    ExistingTarget,
    build_workload,
    check_setup,
    services_with_waypoint,
    virtual_service_of,
)
from chaos.platforms.kubernetes.faultops import ISTIOD, KubeFaultOps, demo_workload
from chaos.platforms.kubernetes.istioversion import istio_version_note
from chaos.platforms.kubernetes.kinds import DEPLOYMENT, NAMESPACE
from chaos.platforms.kubernetes.manifests.locust import USER_LOCUSTFILE_MAX_BYTES, target_host
from chaos.platforms.kubernetes.podexec import KubePodExec, PodExec
from chaos.platforms.kubernetes.podstate import PodState
from chaos.platforms.kubernetes.refusals import baseline_problems, unsupported_faults
from chaos.platforms.kubernetes.rollout import wait_deployment
from chaos.platforms.kubernetes.tokens import default_idp_dir, mint_token
from chaos.platforms.kubernetes.topology import KubeTopology
from chaos.platforms.kubernetes.traffic import ClusterTraffic, TrafficTimings
from chaos.platforms.shared.dataplane import ISTIO_VERSION
from chaos.platforms.shared.idp import JWKS_FILE
from chaos.rundir.journal import JournalEntry, JsonValue
from chaos.traffic.base import TrafficFactory
from chaos.traffic.config import CLUSTER, TrafficConfig

ALLOW_CONTEXT_ENV = "SIDECAR_CHAOS_ALLOW_CONTEXT"
CONTEXT_ENV = "SIDECAR_CHAOS_KUBE_CONTEXT"
INGRESS_ENV = "SIDECAR_CHAOS_KUBE_INGRESS"
#: ``cluster up``'s state directory (its CA is in ``ca/`` there).
KIND_DIR_ENV = "SIDECAR_CHAOS_KIND_DIR"

PodExecFactory = Callable[[KubeApi], PodExec]


def check_context(context: str, allow: str | None) -> None:
    """Refuse a context that is not a kind cluster, unless it is the one allowed."""
    if context.startswith("kind-") or (allow is not None and context == allow):
        return
    raise InputError(
        f"kube context {context!r} is not a kind cluster (kind-...); the tool injects faults "
        f"there only with --allow-context {context}"
    )


class KubernetesPlatform:
    """:class:`~chaos.platforms.base.Platform` on a Kubernetes cluster (kind by default)."""

    def __init__(
        self,
        *,
        kubeconfig: Path | None = None,
        context: str | None = None,
        allow_context: str | None = None,
        pod_exec: PodExecFactory | None = None,
        ready_timeout_s: float = 180.0,
        rollout_timeout_s: float = 120.0,
        watch_timeout_s: int = 1,
        ingress_url: str | None = None,
        ca_dir: Path | None = None,
        traffic_timings: TrafficTimings | None = None,
        idp_dir: Path | None = None,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.context = context or os.environ.get(CONTEXT_ENV) or None
        self.allow_context = allow_context or os.environ.get(ALLOW_CONTEXT_ENV) or None
        self._pod_exec: PodExecFactory = pod_exec or KubePodExec
        self.ready_timeout_s = ready_timeout_s
        self.rollout_timeout_s = rollout_timeout_s
        #: How long one watch request lasts, and so how long leaving ``start`` may wait
        #: for the watch to end (each window leaves once): 1 s, then it watches again from
        #: its last ``resourceVersion``, one cheap request a second.
        self.watch_timeout_s = watch_timeout_s
        #: Where the engine's traffic enters. Default: Locust runs in the cluster and sends
        #: to the frontend Service through its pods' client-side proxy. A loopback
        #: port-forward (``$SIDECAR_CHAOS_KUBE_INGRESS``) runs Locust on this machine
        #: instead, entering the frontend server-side: it bypasses the client-side proxy.
        self.ingress_url = ingress_url or os.environ.get(INGRESS_ENV) or None
        #: How long in-cluster Locust may take to start and stop (:mod:`.traffic`).
        self.traffic_timings = traffic_timings
        #: The CA ``cluster up`` issued the sidecars' certificates with (cert-expiry).
        kind_dir = os.environ.get(KIND_DIR_ENV)
        self.ca_dir = ca_dir or (Path(kind_dir) / "ca" if kind_dir else None)
        #: ``cluster up``'s JWT signing key: in-cluster Locust sends tokens minted with it
        #: (no key there: no token, and validating setups deny every request).
        self.idp_dir = idp_dir or (Path(kind_dir) / "idp" if kind_dir else default_idp_dir())

    @property
    def name(self) -> str:
        return "kubernetes"

    @property
    def setups(self) -> tuple[Setup, ...]:
        return names.DEPLOYED_SETUPS

    def workload(self, setup: Setup) -> Workload:
        return demo_workload(names.Setup(setup.value))

    @property
    def measures_usage(self) -> bool:
        """A cost step reads the kubelets' resource metrics (:mod:`.usage`)."""
        return True

    def validate(self, experiment: Experiment) -> list[Problem]:
        problems: list[Problem] = []
        for index, setup in enumerate(experiment.setups):
            if setup not in {s.value for s in self.setups}:
                problems.append(Problem(("setups", index), f"no setup {setup!r} on kubernetes"))
        problems += unsupported_faults(experiment)
        problems += baseline_problems(experiment)
        existing = next((f.target for f in experiment.faults if f.target.existing), None)
        if existing is not None and experiment.traffic.host is None and self.ingress_url is None:
            problems.append(
                Problem(
                    ("traffic",),
                    f"the faults target {existing.describe()}: traffic.host names their "
                    "in-cluster URL (the demo's frontend is not theirs)",
                )
            )
        problems += dataplane_problems(experiment)  # what a cluster cannot apply per run
        own = experiment.traffic.locustfile
        if own is not None and self.ingress_url is None:
            # It goes to the Locust pods in the traffic ConfigMap: bounded in size.
            size = own.stat().st_size if own.is_file() else 0
            if size > USER_LOCUSTFILE_MAX_BYTES:
                problems.append(
                    Problem(
                        ("traffic", "locustfile"),
                        f"{size} bytes do not fit the traffic ConfigMap "
                        f"(at most {USER_LOCUSTFILE_MAX_BYTES}); ${INGRESS_ENV} runs Locust "
                        "on this machine instead",
                    )
                )
        return problems

    # -- connecting ----------------------------------------------------------------------

    def connect(self, *, kubeconfig: Path | None = None, context: str | None = None) -> KubeApi:
        """A client for the configured context, after the kind-only guard."""
        api = KubeApi.from_kubeconfig(kubeconfig or self.kubeconfig, context or self.context)
        try:
            check_context(api.context, self.allow_context)
        except InputError:
            api.close()
            raise
        return api

    # -- a run ---------------------------------------------------------------------------

    def start(
        self, setup: Setup, options: StartOptions
    ) -> contextlib.AbstractContextManager[RunningTopology]:
        return self._start(setup, options)

    @contextlib.contextmanager
    def _start(self, setup: Setup, options: StartOptions) -> Iterator[RunningTopology]:
        kube_setup = names.Setup(setup.value)
        namespace = names.namespace_of(kube_setup)
        existing = ExistingTarget.from_extra(options.extra)
        traffic_host = options.extra.get(EXTRA_HOST) or None
        begun = time.monotonic()
        api = self.connect()
        try:
            if existing is not None:
                # The team's own pods: found by their labels, the setup checked against them.
                namespace = existing.namespace
                pods = self._wait_ready_existing(api, existing, kube_setup)
                workload, ports = build_workload(api, existing, kube_setup, pods)
            else:
                if api.get(NAMESPACE, None, namespace) is None:
                    raise InputError(
                        f"namespace {namespace} not found in context {api.context}: "
                        "run `sidecar-chaos cluster up` first"
                    )
                workload = demo_workload(kube_setup)
                self._wait_ready(api, namespace, workload)
            run_id = options.run_marker or options.run_dir.name
            kubeconfig = str(self.kubeconfig or os.environ.get("KUBECONFIG", ""))
            ledger = ChangeLedger(
                options.run_dir, LedgerHeader(run_id, api.context, kubeconfig), options.record
            )
            writer = ClusterWriter(api, self._pod_exec(api), ledger, run_id)
            ops: KubeFaultOps
            if existing is not None:
                ops = ExistingFaultOps(
                    kube_setup,
                    workload,
                    writer,
                    target=existing,
                    ports=ports,
                    rollout_timeout_s=self.rollout_timeout_s,
                    waypoints=services_with_waypoint(api, namespace, workload.services),
                )
            else:
                ops = KubeFaultOps(
                    kube_setup,
                    workload,
                    writer,
                    rollout_timeout_s=self.rollout_timeout_s,
                    ca_dir=self.ca_dir,
                )
            record: dict[str, JsonValue] = {
                "platform": self.name,
                "context": api.context,
                "kubeconfig": kubeconfig,
                "namespace": namespace,
                "run_id": run_id,
                "ledger": ledger.path.name,
            }
            if existing is not None:
                record["target"] = existing.describe()
            topology = KubeTopology(
                kube_setup,
                workload,
                api,
                ops,
                startup_s=time.monotonic() - begun,
                record=record,
                watch_timeout_s=self.watch_timeout_s,
                ingress_url=self.ingress_url,
                traffic=self._traffic_factory(kube_setup, writer, options, traffic_host, ops),
                traffic_host=traffic_host,
                demo=existing is None,
            )
            topology.start()
            try:
                # The experiment's deviations into the setup's DestinationRules and
                # VirtualServices (undone below, with every other change of the run).
                start_dataplane(writer, kube_setup, options, demo=existing is None)
                yield topology
            except BaseException as exc:
                topology.close()
                try:
                    writer.undo_all()
                except PlatformError as undo:
                    # The window's own error stays the one raised; what could not be
                    # undone stays in the ledger for `clean`, and the error says so.
                    exc.add_note(f"also, leaving the topology: {undo} (run `clean`)")
                raise
            else:
                topology.close()
                # A fault's own revert normally did this already; this catches the rest.
                writer.undo_all()
        finally:
            api.close()

    def _traffic_factory(
        self,
        setup: names.Setup,
        writer: ClusterWriter,
        options: StartOptions,
        host: str | None = None,
        ops: KubeFaultOps | None = None,
    ) -> TrafficFactory:
        idp_dir = self.idp_dir
        token_source = None
        if (idp_dir / JWKS_FILE).is_file():

            def token_source(ttl_s: float) -> str:
                return mint_token(idp_dir, ttl_s)

        def start(config: TrafficConfig) -> ClusterTraffic:
            if options.record is not None:
                options.record(
                    "traffic_token",
                    platform="kubernetes",
                    minted=token_source is not None,
                    key_dir=str(idp_dir),
                )
            traffic = ClusterTraffic(
                config,
                setup=setup,
                writer=writer,
                record=options.record,
                timings=self.traffic_timings,
                token_source=token_source,
                host=host,
            )
            if ops is not None:  # verify falls back to the samples where counters are missing
                ops.traffic_stats = traffic.live_stats
            return traffic

        return start

    def _wait_ready(self, api: KubeApi, namespace: str, workload: Workload) -> None:
        deadline = time.monotonic() + self.ready_timeout_s
        missing: list[str] = []
        while time.monotonic() < deadline:
            pods = api.list_pods(namespace, {names.LABEL_MANAGED_BY: names.MANAGED_BY})
            ready = {
                names.deployment_name(p.labels.get(names.LABEL_APP, ""), int(r))
                for p in pods
                if p.ready and not p.deleting and (r := p.labels.get(names.LABEL_REPLICA))
            }
            missing = [p.name for p in workload.pods if p.name not in ready]
            if not missing:
                return
            time.sleep(0.5)
        raise StartupError(
            f"{namespace}: pods not ready after {self.ready_timeout_s:g} s: {', '.join(missing)}"
        )

    def _wait_ready_existing(
        self, api: KubeApi, target: ExistingTarget, setup: names.Setup
    ) -> list[PodState]:
        """A team's pods, once every one is ready (the setup checked on each reading)."""
        deadline = time.monotonic() + self.ready_timeout_s
        while True:
            pods = check_setup(api, target, setup)
            waiting = [p.name for p in pods if not p.ready]
            if not waiting:
                return pods
            if time.monotonic() >= deadline:
                raise StartupError(
                    f"{target.describe()}: pods not ready after {self.ready_timeout_s:g} s: "
                    f"{', '.join(waiting)}"
                )
            time.sleep(0.5)

    def plan_ops(self, setup: Setup) -> KubeFaultOps:
        kube_setup = names.Setup(setup.value)
        writer = ClusterWriter(None, None, None, "dry-run", dry_run=True)
        return KubeFaultOps(kube_setup, demo_workload(kube_setup), writer)

    def plan_ops_for(self, setup: Setup, extra: Mapping[str, str]) -> KubeFaultOps:
        """:meth:`plan_ops` for an existing workload: its pods read (only read) from the cluster."""
        existing = ExistingTarget.from_extra(extra)
        if existing is None:
            return self.plan_ops(setup)
        kube_setup = names.Setup(setup.value)
        api = self.connect()
        try:
            pods = check_setup(api, existing, kube_setup)
            workload, ports = build_workload(api, existing, kube_setup, pods)
            found = {
                s: name
                for s in workload.services
                if (name := virtual_service_of(api, existing.namespace, s)) is not None
            }
            waypoints = services_with_waypoint(api, existing.namespace, workload.services)
        finally:
            api.close()
        writer = ClusterWriter(None, None, None, "dry-run", dry_run=True)
        return ExistingFaultOps(
            kube_setup,
            workload,
            writer,
            target=existing,
            ports=ports,
            planned_virtual_services=found,
            waypoints=waypoints,
        )

    def plan_traffic(self, setup: Setup, config: TrafficConfig) -> list[str]:
        """The calls one window's in-cluster Locust makes and their undo (``--dry-run``)."""
        if self.ingress_url:
            return [
                f"traffic: Locust on this machine at {self.ingress_url} (${INGRESS_ENV}; "
                "it bypasses the client-side proxies); nothing is created in the cluster"
            ]
        kube_setup = names.Setup(setup.value)
        writer = ClusterWriter(None, None, None, "dry-run", dry_run=True)
        planned = ClusterTraffic(
            dataclasses.replace(config, host=target_host(kube_setup), network=CLUSTER),
            setup=kube_setup,
            writer=writer,
        )
        minted = (self.idp_dir / JWKS_FILE).is_file()
        for obj in planned.objects(token="<minted at the window's start>" if minted else None):
            writer.create(obj, detail="in-cluster Locust")
        lines = [f"traffic: {c.line()}" for c in writer.planned]
        if not minted:
            lines.append(f"traffic: no signing key in {self.idp_dir}: requests carry no token")
        return lines

    def parameters(self) -> dict[str, float | str]:
        """Istio's: no ``maxConnectionDuration`` unless the run's table (a deviation) says one."""
        return {"connection_lifetime_s": "none", "istio_model": ISTIO_VERSION}

    def plan_dataplane(self, setup: Setup, spec: DataPlaneSpec) -> list[str]:
        """The writes a window makes for the experiment's ``dataplane:`` block (dry run)."""
        return plan_dataplane(names.Setup(setup.value), spec)

    def versions(self) -> dict[str, str]:
        found = {"envoy (plain sidecar image)": names.ENVOY_IMAGE}
        try:
            api = self.connect()
        except (InputError, PlatformError) as exc:
            return {**found, "kubernetes": f"unknown ({exc})"}
        try:
            found["kubernetes"] = api.server_version()
            istiod = api.get(DEPLOYMENT, names.ISTIO_NAMESPACE, ISTIOD)
            if istiod is not None:
                image = _first_image(istiod)
                found["istio"] = image.rsplit(":", 1)[-1] if ":" in image else image
                found |= istio_version_note(found["istio"])
        except PlatformError as exc:
            found.setdefault("kubernetes", f"unknown ({exc})")
        finally:
            api.close()
        return found

    # -- after a dead runner -------------------------------------------------------------

    def clean(self, run_dir: Path, entries: Sequence[JournalEntry]) -> list[str]:
        """Undo every change not undone (scales first, then newest first); what was done."""
        pending = pending_changes(run_dir, entries)
        if not pending:
            return ["kubernetes: nothing to undo (every change was reverted)"]
        headers = ledger_headers(run_dir)
        header = headers[-1] if headers else None
        api = self.connect(
            kubeconfig=Path(header.kubeconfig) if header and header.kubeconfig else None,
            context=(header.context or None) if header else None,
        )
        lines: list[str] = []
        try:
            pod_exec = self._pod_exec(api)
            # Scales first (istiod back up): Istio's webhooks refuse Istio objects and
            # injected pods while istiod has no ready pod; then newest first.
            ordered = sorted(reversed(pending), key=lambda entry: entry[1].action != "scale")
            scaled = [c for _, c in ordered if c.action == "scale"]
            for where, change in ordered:
                if change.action != "scale" and scaled:  # back up means rolled out (Ready)
                    for done in scaled:
                        wait_deployment(api.get, done.namespace, done.name, self.ready_timeout_s)
                    scaled = []
                lines.append(f"kubernetes: {undo_change(api, pod_exec, change)}")
                mark_done(where, change)
        finally:
            api.close()
        return lines


def _first_image(deployment: dict[str, Any]) -> str:
    containers = deployment.get("spec", {}).get("template", {}).get("spec", {}).get("containers")
    return str((containers or [{}])[0].get("image", ""))


__all__ = ["ALLOW_CONTEXT_ENV", "KubernetesPlatform", "check_context"]
