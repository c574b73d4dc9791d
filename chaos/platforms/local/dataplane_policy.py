"""The local platform's side of the data-plane table: what it can apply, and its proxy options.

Everything in an experiment's ``dataplane:`` block is applied by the generated Envoy
configs, the cert agent and the control plane, except what a setup here has no
mechanism for; that is refused at its line before anything starts.
"""

from __future__ import annotations

from chaos.experiment import Experiment, Setup
from chaos.platforms.base import Problem, StartOptions
from chaos.platforms.shared.dataplane import SetupDataPlane, resolve
from chaos.platforms.shared.dataplane_rows import rows
from chaos.rundir.dataplane import DATAPLANE_KIND

#: Per-setup fields a setup cannot honour: field -> (setup -> why).
_CANNOT: dict[str, dict[Setup, str]] = {
    "jwks_refresh": {
        Setup.SIDECAR: "a hand-written sidecar reads its key set once at start, it has no refresh",
        Setup.AMBIENT: "ambient validates no tokens here (no key set to refresh)",
    },
}


def dataplane_problems(experiment: Experiment) -> list[Problem]:
    """The ``dataplane.setups.<setup>`` fields the local platform cannot apply."""
    problems = []
    for setup, fields in experiment.dataplane.setups.items():
        for name in sorted(fields.model_fields_set):
            why = _CANNOT.get(name, {}).get(Setup(setup))
            if why is not None:
                problems.append(Problem(("dataplane", "setups", setup.value, name), why))
    return problems


def policy_for(setup: Setup, options: StartOptions) -> SetupDataPlane:
    """``setup``'s data plane for one window: defaults, the experiment's block, the fault's."""
    fields = options.dataplane.for_setup(setup) if options.dataplane is not None else None
    return resolve(
        setup,
        fields,
        connection_lifetime_s=options.connection_lifetime_s,
        jwks_refresh_s=options.jwks_refresh_s,
    )


def record_policy(policy: SetupDataPlane, options: StartOptions) -> None:
    """Journal the window's table (``meta.json`` and the report read it from there)."""
    if options.record is not None:
        table = [r.to_json() for r in rows(policy)]
        window = options.run_dir.name
        options.record(DATAPLANE_KIND, setup=policy.setup.value, window=window, rows=table)
