"""What the Kubernetes platform cannot do as an experiment asks, refused at the field's line.

Each refusal names why a real Istio cluster would not do what the file asks, so the
run stops before anything is applied (exit 2) instead of measuring something else.
"""

from __future__ import annotations

from chaos.experiment import AbortFault, CertExpiryFault, Experiment, LatencyFault, Setup
from chaos.platforms.base import Problem
from chaos.platforms.kubernetes import names


def unsupported_faults(experiment: Experiment) -> list[Problem]:
    """What the platform cannot do as asked, at the field that asks it."""
    problems: list[Problem] = []
    for index, fault in enumerate(experiment.faults):
        if (
            isinstance(fault, LatencyFault | AbortFault)
            and fault.direction == "outbound"
            and "ambient" in experiment.setups
        ):
            # A waypoint ignores a route's sourceLabels match (istio/istio#51565,
            # pilot/pkg/networking/core/listener_waypoint.go): the fault would be dropped.
            problems.append(
                Problem(
                    ("faults", index, "direction"),
                    "outbound is not possible in ambient on kubernetes: waypoints ignore a "
                    "VirtualService's sourceLabels, so a fault for one client is dropped "
                    "(use inbound, or leave ambient out of setups)",
                )
            )
        if isinstance(fault, CertExpiryFault) and fault.connection_lifetime is not None:
            problems.append(
                Problem(
                    ("faults", index, "connection_lifetime"),
                    "not possible on kubernetes: the proxies' connection lifetime there is "
                    "what cluster up installs (the mesh's DestinationRule, the sidecars' "
                    "config), which a fault does not change; leave it out",
                )
            )
    return problems


def baseline_problems(experiment: Experiment) -> list[Problem]:
    """``baseline`` in a cost step whose faults target a team's own workload: refused at
    its line, since ``sc-baseline`` is the demo chain, no reference for their pods.

    (A fault naming baseline is refused at the fault's line by the experiment itself,
    on every platform: ``chaos.experiment.models.check_baseline``.)
    """
    existing = next((f.target for f in experiment.faults if f.target.existing), None)
    cost_setups = (experiment.cost.setups or ()) if experiment.cost is not None else ()
    if existing is None or Setup.BASELINE not in cost_setups:
        return []
    return [
        Problem(
            ("cost", "setups", cost_setups.index(Setup.BASELINE)),
            f"baseline is the demo chain in {names.namespace_of(names.Setup.BASELINE)}, "
            f"not {existing.describe()}: no reference for a team's own workload",
        )
    ]


__all__ = ["baseline_problems", "unsupported_faults"]
