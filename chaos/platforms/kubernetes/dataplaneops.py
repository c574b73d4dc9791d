"""An experiment's ``dataplane:`` deviations on a cluster: the setup's DestinationRules and
VirtualServices rewritten for the run, and undone at its end.

``cluster up`` installs, per service of mesh and ambient, a DestinationRule and a
VirtualService with Istio's defaults (:mod:`.manifests.istio`). When a window's
topology starts with deviations for its setup, :func:`apply_dataplane` writes through
the run's :class:`~.changes.ClusterWriter` (each write in the ledger before it is made):

* ``spec.trafficPolicy`` of each DestinationRule: outlier detection, load balancing,
  connect and idle timeout, ``maxConnectionDuration``, the circuit breaker's
  ``maxRetries`` (:func:`~chaos.platforms.shared.dataplane.istio_traffic_policy`);
* ``retries`` and ``timeout`` of each route of the VirtualService (mesh: the client
  sidecars' outbound route; ambient: the waypoint's), the routes otherwise as read.

The VirtualService writes are the ``dataplane`` layer of the writer: an HTTP fault
that rewrites the same ``spec.http`` later is a change of its own, built from the
deviation's routes (it keeps their retries) and undone back to them; the end of the
run (or ``clean``) undoes newest first, back to what ``cluster up`` installed.

What a cluster cannot apply per run is refused at its line (:func:`dataplane_problems`).
"""

from __future__ import annotations

import copy
import functools
import json
from typing import Any

from chaos.experiment import Experiment, Setup
from chaos.experiment.dataplane import DataPlaneSpec, set_fields
from chaos.platforms.base import Problem, StartOptions
from chaos.platforms.kubernetes import names
from chaos.platforms.kubernetes.changes import ClusterWriter
from chaos.platforms.kubernetes.kinds import DESTINATION_RULE, VIRTUAL_SERVICE
from chaos.platforms.kubernetes.manifests import istio
from chaos.platforms.shared.dataplane import SetupDataPlane, resolve
from chaos.platforms.shared.dataplane_rows import rows
from chaos.platforms.shared.envoy_common import ProxyOptions
from chaos.rundir.dataplane import DATAPLANE_KIND

#: The writer's layer of these writes (a fault's own are the default layer).
LAYER = "dataplane"

INT32_MAX = 2**31 - 1
#: Why the plain sidecar setup takes no deviation on a cluster.
SIDECAR_WHY = (
    "not applied to the sidecar setup on kubernetes: its Envoy config is a ConfigMap "
    "`cluster up` writes and each pod reads once at start, so a per-run change would "
    "roll out every pod (mesh and ambient take it through their DestinationRules and "
    "VirtualServices)"
)
#: Why no setup's JWKS refresh changes per run on a cluster.
JWKS_WHY = (
    "not applied on kubernetes: Istio 1.28.0's refresh is istiod's environment variable "
    "PILOT_JWT_PUB_KEY_REFRESH_INTERVAL (pilot/pkg/features/pilot.go, 20 min), one for "
    "the whole mesh, changed only by restarting istiod"
)
EXISTING_WHY = (
    "not applied to a team's own workload: its DestinationRules and VirtualServices "
    "are the team's, not the ones `cluster up` installs"
)


def dataplane_problems(experiment: Experiment) -> list[Problem]:
    """Each ``dataplane:`` field a cluster cannot apply, at its line, with why."""
    existing = any(f.target.existing for f in experiment.faults)
    problems: list[Problem] = []
    for path in set_fields(experiment.dataplane):
        setups = (path[2],) if path[1] == "setups" else tuple(experiment.setups)
        if existing:
            problems.append(Problem(path, EXISTING_WHY))
        elif path[-1] == "jwks_refresh":
            problems.append(Problem(path, JWKS_WHY))
        elif Setup.SIDECAR.value in setups:
            where = " (for mesh and ambient alone: under dataplane.setups)" * (len(path) == 2)
            problems.append(Problem(path, SIDECAR_WHY + where))
        elif path[-1] == "max_retries" and _value(experiment.dataplane, path) > INT32_MAX:
            # DestinationRule connectionPool.http.maxRetries is an int32 (the CRD's schema)
            problems.append(Problem(path, f"above {INT32_MAX}, the DestinationRule's limit"))
    return problems


def _value(spec: DataPlaneSpec, path: tuple[str, ...]) -> Any:
    owner: Any = spec if path[1] != "setups" else getattr(spec.setups, path[2])
    return getattr(owner, path[-1])


def policy_of(setup: names.Setup, spec: DataPlaneSpec | None) -> SetupDataPlane:
    """``setup``'s data plane for a run: the defaults with the experiment's deviations."""
    fields = spec.for_setup(setup.value) if spec is not None else None
    return resolve(Setup(setup.value), fields)


def deviates(setup: names.Setup, spec: DataPlaneSpec | None) -> bool:
    """Whether the experiment changes anything of ``setup``'s data plane."""
    return spec is not None and not spec.for_setup(setup.value).is_empty()


def routes_with(routes: Any, wanted: dict[str, Any]) -> list[dict[str, Any]]:
    """``routes`` (as read) with ``wanted``'s ``retries`` and ``timeout`` on each route;
    one with neither has them removed (Istio's defaults)."""
    out = [copy.deepcopy(dict(r)) for r in routes] if isinstance(routes, list) else []
    if not out:
        return [copy.deepcopy(wanted)]
    for route in out:
        for key in ("retries", "timeout"):
            if key in wanted:
                route[key] = copy.deepcopy(wanted[key])
            else:
                route.pop(key, None)
    return out


def _replaced(value: dict[str, Any], _before: Any) -> dict[str, Any]:
    return copy.deepcopy(value)


def write_dataplane(writer: ClusterWriter, setup: names.Setup, policy: SetupDataPlane) -> None:
    """Write ``policy`` into ``setup``'s DestinationRules and VirtualServices where it differs
    from what ``cluster up`` installs (each write recorded first; a DestinationRule that is
    not there is created, marked as the run's)."""
    opts = ProxyOptions().with_policy(policy)
    installed = ProxyOptions()
    namespace = names.namespace_of(setup)
    for service in names.SERVICES:
        rule = istio.destination_rule(service, setup, opts)
        traffic = rule["spec"]["trafficPolicy"]
        detail = f"dataplane {json.dumps(traffic, sort_keys=True)}"
        if rule == istio.destination_rule(service, setup, installed):
            pass  # the setup's defaults: nothing to write
        elif writer.dry_run or writer.api.get(DESTINATION_RULE, namespace, service) is not None:
            writer.set_field(
                DESTINATION_RULE,
                namespace,
                service,
                ("spec", "trafficPolicy"),
                functools.partial(_replaced, traffic),
                detail=detail,
                layer=LAYER,
            )
        else:
            writer.create(rule, detail=detail)
        wanted = istio.http_route(service, setup, opts)
        if wanted == istio.http_route(service, setup, installed):
            continue
        shown = {k: wanted[k] for k in ("retries", "timeout") if k in wanted}
        writer.set_field(
            VIRTUAL_SERVICE,
            namespace,
            service,
            ("spec", "http"),
            functools.partial(routes_with, wanted=wanted),
            detail=f"dataplane {json.dumps(shown, sort_keys=True)}",
            layer=LAYER,
        )


def start_dataplane(
    writer: ClusterWriter, setup: names.Setup, options: StartOptions, *, demo: bool
) -> SetupDataPlane:
    """A window's data plane: journaled (``meta.json``, ``results.json`` and the report
    read it there) and, where the experiment deviates, written (the caller undoes the
    writes with the run's other changes, also when one fails)."""
    if setup is names.Setup.BASELINE:
        # No proxy on the cluster's baseline: nothing to record or write, no deviation of it.
        return policy_of(setup, None)
    policy = policy_of(setup, options.dataplane)
    if demo and options.record is not None:
        table = [r.to_json() for r in rows(policy)]
        window = options.run_dir.name
        options.record(DATAPLANE_KIND, setup=setup.value, window=window, rows=table)
    if demo and setup is not names.Setup.SIDECAR and deviates(setup, options.dataplane):
        write_dataplane(writer, setup, policy)
    return policy


def plan_dataplane(setup: names.Setup, spec: DataPlaneSpec) -> list[str]:
    """The writes (and undo) a window of ``setup`` makes for ``spec`` (dry run)."""
    if setup in (names.Setup.SIDECAR, names.Setup.BASELINE) or not deviates(setup, spec):
        return []
    writer = ClusterWriter(None, None, None, "dry-run", dry_run=True)
    write_dataplane(writer, setup, policy_of(setup, spec))
    return [call.line() for call in writer.planned]


__all__ = [
    "LAYER",
    "dataplane_problems",
    "deviates",
    "plan_dataplane",
    "policy_of",
    "routes_with",
    "start_dataplane",
    "write_dataplane",
]
