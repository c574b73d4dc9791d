"""The typed model of an experiment file (everything but the faults, see ``faults.py``).

Validation needs the whole file at once; ``chaos.experiment.loader`` reads the YAML and
maps every error back to its line. Models are frozen and reject unknown keys.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from chaos.experiment._base import (
    ALL_SETUPS,
    Int,
    Number,
    Rate,
    Setup,
    SetupName,
    Slug,
    SpecModel,
    field_error,
)
from chaos.experiment.cost import CostStep, check_cost, first_rounds_s
from chaos.experiment.dataplane import DataPlaneSpec, check_dataplane_setups
from chaos.experiment.durations import Duration, NonNegativeDuration
from chaos.experiment.faults import Fault
from chaos.experiment.hypotheses import (
    WINDOW_OVERHEAD_S,
    Hypothesis,
    Repetitions,
    check_hypotheses,
    check_repetitions,
    hypothesis_windows,
)
from chaos.experiment.security import Security, check_security

#: ``traffic.host``: a Service of the cluster, nothing outside it.
IN_CLUSTER_URL = re.compile(
    r"^http://[a-z0-9]([-a-z0-9]*[a-z0-9])?\.[a-z0-9]([-a-z0-9]*[a-z0-9])?"
    r"\.svc\.cluster\.local(:[0-9]{1,5})?/?$"
)

#: Key of the validation context holding the directory relative locustfiles resolve against.
BASE_DIR = "base_dir"


class Endpoint(SpecModel):
    """One request Locust sends, picked with probability proportional to ``weight``."""

    name: Slug
    method: Literal["GET", "POST"] = "GET"
    path: Annotated[str, Field(pattern=r"^/\S*$", max_length=2048)]
    weight: Annotated[Number, Field(gt=0, le=1_000_000)] = 1.0


class Traffic(SpecModel):
    """The load: an arrival rate (or closed-loop users), its concurrency cap, what it calls.

    ``mode: open`` (the default): ``rate`` requests a second start on schedule whatever
    the responses do (no coordinated omission), at most ``max_in_flight`` (default
    ``users``) under way; a request due while the cap is full waits for a slot up to
    100 ms (sent late, its lag counted in its latency), then is recorded as dropped.
    ``mode: closed``: ``users`` users each wait for their response, paced at
    ``rate / users``, so slow responses lower the load.
    """

    users: Annotated[Int, Field(ge=1, le=10_000)]
    spawn_rate: Annotated[Number, Field(gt=0, le=10_000)]
    #: Requests per second in all (open: the arrival rate; closed: the pacing of users).
    rate: Annotated[Number, Field(gt=0, le=100_000)]
    mode: Literal["open", "closed"] = "open"
    #: Open loop: the most requests under way at once; ``users`` when not given.
    max_in_flight: Annotated[Int, Field(ge=1, le=100_000)] | None = None
    endpoints: Annotated[tuple[Endpoint, ...], Field(min_length=1)] | None = None
    #: The user's own locustfile instead of ``endpoints``; relative to the experiment file.
    locustfile: Path | None = None
    #: Kubernetes only: the team's own in-cluster URL to send the load to (default: the
    #: demo's frontend), ``http://<service>.<namespace>.svc.cluster.local[:port]``.
    host: Annotated[str, Field(max_length=253)] | None = None

    @field_validator("host")
    @classmethod
    def _in_cluster_host(cls, value: str | None) -> str | None:
        if value is not None and not IN_CLUSTER_URL.match(value):
            raise field_error(
                "",
                "must be an in-cluster URL, http://<service>.<namespace>.svc.cluster.local[:port]",
            )
        return value

    @field_validator("locustfile", mode="before")
    @classmethod
    def _resolve_locustfile(cls, value: object, info: ValidationInfo) -> object:
        if not isinstance(value, str):
            return value  # the Path validator reports the type
        if not value.strip():
            raise field_error("", "must be a path to a locustfile")
        path = Path(value).expanduser()
        context = info.context if isinstance(info.context, dict) else {}
        base = context.get(BASE_DIR)
        if not path.is_absolute() and isinstance(base, Path):
            path = base / path
        if not path.is_file():
            raise field_error("", f'no such file "{path}"')
        return path.resolve()

    @model_validator(mode="after")
    def _one_source(self) -> Traffic:
        if self.endpoints is not None and self.locustfile is not None:
            raise field_error("locustfile", "give endpoints or a locustfile, not both")
        if self.endpoints is None and self.locustfile is None:
            raise field_error("endpoints", "traffic needs endpoints or a locustfile")
        if self.endpoints is not None:
            names = [e.name for e in self.endpoints]
            for i, name in enumerate(names):
                if name in names[:i]:
                    raise field_error(f"endpoints.{i}.name", f'endpoint "{name}" is named twice')
        return self


#: The fault types an existing workload can take (the others change its identity or
#: control plane, which the tool does only in the demo's namespaces).
EXISTING_FAULT_TYPES = ("latency", "abort", "crash")


def check_existing_targets(experiment: Experiment) -> None:
    """An existing workload is a Kubernetes target; one per experiment; its faults only."""
    first = None
    for i, fault in enumerate(experiment.faults):
        target = fault.target
        if not target.existing:
            if first is not None:
                raise field_error(
                    f"faults.{i}.target",
                    "targets the demo workload while another fault targets an existing one; "
                    "an experiment targets one of them",
                )
            continue
        if experiment.platform != "kubernetes":
            raise field_error(
                f"faults.{i}.target.namespace",
                "an existing workload is a Kubernetes target (platform: kubernetes)",
            )
        if fault.type not in EXISTING_FAULT_TYPES:
            raise field_error(
                f"faults.{i}.type",
                f"{fault.type} cannot target an existing workload "
                f"(only {', '.join(EXISTING_FAULT_TYPES)})",
            )
        key = (target.namespace, target.selector, target.container)
        if first is None:
            if i > 0:
                raise field_error(
                    f"faults.{i}.target",
                    "targets an existing workload while another fault targets the demo one; "
                    "an experiment targets one of them",
                )
            first = key
        elif key != first:
            raise field_error(
                f"faults.{i}.target",
                "an experiment targets one existing workload: namespace, selector and "
                "container as in the first fault",
            )
    if experiment.traffic.host is not None and experiment.platform != "kubernetes":
        raise field_error("traffic.host", "an in-cluster URL is for platform: kubernetes")


#: Keys of a platform's start options (``StartOptions.extra``) for an existing workload.
EXTRA_TARGET = "kubernetes.existing_target"
EXTRA_HOST = "kubernetes.traffic_host"


def start_extra(experiment: Experiment, fault: Fault) -> dict[str, str]:
    """What a platform is told beyond the setup: an existing target, the load's own URL."""
    extra: dict[str, str] = {}
    target = fault.target
    if target.existing:
        extra[EXTRA_TARGET] = json.dumps(
            {
                "namespace": target.namespace,
                "selector": dict(target.selector or {}),
                "container": target.container,
            },
            sort_keys=True,
        )
    if experiment.traffic.host is not None:
        extra[EXTRA_HOST] = experiment.traffic.host.rstrip("/")
    return extra


def check_baseline(experiment: Experiment) -> None:
    """``baseline`` has no proxy: no fault may land on it (every fault targets a proxy)."""
    if Setup.BASELINE not in experiment.setups:
        return
    for i, fault in enumerate(experiment.faults):
        if fault.target.setups is None:
            raise field_error(
                f"faults.{i}.target",
                f"{fault.type} targets a proxy and baseline has none: list the setups it "
                "targets (target.setups)",
            )
        if Setup.BASELINE in fault.target.setups:
            at = fault.target.setups.index(Setup.BASELINE)
            raise field_error(
                f"faults.{i}.target.setups.{at}",
                f"{fault.type} targets a proxy and baseline has none",
            )


class SteadyState(SpecModel):
    """The hypothesis: what "healthy" means, before the fault and again after recovery."""

    max_error_rate: Rate = 0.01
    max_p95_ms: Annotated[Number, Field(gt=0, le=3_600_000)] = 500.0


class ErrorRateAbove(SpecModel):
    """Stop when the error rate stays above ``above`` for ``for``."""

    type: Literal["error_rate"]
    above: Rate
    for_: Annotated[Duration, Field(alias="for")]


class P95Above(SpecModel):
    """Stop when p95 latency stays above ``above_ms`` for ``for``."""

    type: Literal["p95"]
    above_ms: Annotated[Number, Field(gt=0, le=3_600_000)]
    for_: Annotated[Duration, Field(alias="for")]


#: A stop condition, told apart by ``type``.
StopCondition = Annotated[ErrorRateAbove | P95Above, Field(discriminator="type")]


class Timeline(SpecModel):
    """The phases of one run: warm-up, hold (the fault is on), recovery window."""

    warmup: NonNegativeDuration = 5.0
    hold: Duration = 10.0
    recovery: Duration = 15.0
    #: How long the steady state must hold to count as recovered (TTR's hold period).
    recovered_for: Duration = 1.0

    @model_validator(mode="after")
    def _fits(self) -> Timeline:
        if self.recovered_for > self.recovery:
            raise field_error(
                "recovered_for", "must not be longer than recovery (TTR could never be measured)"
            )
        return self

    @property
    def total(self) -> float:
        """Seconds of one run from warm-up to the end of recovery (without start-up)."""
        return self.warmup + self.hold + self.recovery


class Experiment(SpecModel):
    """A whole experiment file, validated."""

    name: Slug
    description: str = ""
    platform: Literal["local", "kubernetes"] = "local"
    setups: Annotated[tuple[SetupName, ...], Field(min_length=1)] = ALL_SETUPS
    #: A number, or ``auto``: add repetitions until the hypotheses are decided (see
    #: ``chaos.experiment.hypotheses``), up to ``max_repetitions`` and/or within ``budget``.
    repetitions: Repetitions = 1
    max_repetitions: Annotated[Int, Field(ge=2, le=1000)] | None = None
    budget: Duration | None = None
    hypotheses: Annotated[tuple[Hypothesis, ...], Field(max_length=100)] = ()
    #: How the hypotheses share the error rate: ``holm`` (any order) or ``in-order``
    #: (each at the full alpha, tested one after another as listed: fixed-sequence).
    multiple_testing: Literal["holm", "in-order"] = "holm"
    seed: Annotated[Int, Field(ge=0, lt=2**32)] = 0
    traffic: Traffic
    steady_state: SteadyState = SteadyState()
    stop_conditions: tuple[StopCondition, ...] = ()
    timeline: Timeline = Timeline()
    #: What counts as a credential, the invariants' bound, the bypass probe (experiment/security).
    security: Security | None = None
    faults: Annotated[tuple[Fault, ...], Field(min_length=1, max_length=100)]
    #: Deviations from each setup's data-plane defaults (Istio's for mesh and ambient).
    dataplane: DataPlaneSpec = DataPlaneSpec()
    #: Steady-state load steps per setup: what each setup costs (``chaos.experiment.cost``).
    cost: CostStep | None = None

    @field_validator("setups")
    @classmethod
    def _unique_setups(cls, setups: tuple[SetupName, ...]) -> tuple[SetupName, ...]:
        for i, setup in enumerate(setups):
            if setup in setups[:i]:
                raise field_error(str(i), f"lists {setup} twice")
        return setups

    @model_validator(mode="after")
    def _consistent(self) -> Experiment:
        for i, fault in enumerate(self.faults):
            narrowed = fault.target.setups
            if narrowed is None:
                continue
            for j, setup in enumerate(narrowed):
                if setup not in self.setups:
                    raise field_error(
                        f"faults.{i}.target.setups.{j}",
                        f"{setup} is not one of the experiment's setups ({', '.join(self.setups)})",
                    )
        check_existing_targets(self)
        check_security(self.security, self.traffic.rate, self.platform, self.faults, self.setups)
        names = self.fault_names()
        for i, name in enumerate(names):
            if name in names[:i]:
                raise field_error(f"faults.{i}.name", f'fault name "{name}" is used twice')
        check_baseline(self)
        check_cost(self.cost, self.setups, self.setups_of_faults())
        check_repetitions(self.repetitions, self.max_repetitions, self.budget)
        check_hypotheses(self.hypotheses, self.setups, names, self.setups_of_faults())
        check_dataplane_setups(self.dataplane, self.setups)
        return self

    def setups_of_faults(self) -> dict[str, tuple[str, ...]]:
        """The setups each fault (by name) runs in."""
        return {
            name: tuple(s for s in self.setups if f.target.setups is None or s in f.target.setups)
            for name, f in zip(self.fault_names(), self.faults, strict=True)
        }

    @property
    def adaptive(self) -> bool:
        """Whether ``repetitions: auto``."""
        return self.repetitions == "auto"

    @property
    def planned_repetitions(self) -> int:
        """Rounds to schedule: the number given, or the most ``auto`` may run.

        With a budget: the first round runs every window, later rounds only those the
        hypotheses compare; as many rounds as fit (each window costs its timeline plus
        ``WINDOW_OVERHEAD_S``) in the budget less ``cost_reserve_s``, at least 2, at most
        ``max_repetitions``.
        """
        if isinstance(self.repetitions, int):
            return self.repetitions
        if self.max_repetitions is not None and self.budget is None:
            return self.max_repetitions
        first, later = self.fault_round_seconds()
        room = (self.budget or 0.0) - self.cost_reserve_s
        fits = max(2, 1 + int(max(0.0, room - first) // later))
        return min(fits, self.max_repetitions) if self.max_repetitions is not None else fits

    @property
    def cost_reserve_s(self) -> float:
        """Seconds of ``budget`` the fault windows leave for the cost step's first rounds.

        Those ``cost.repetitions`` rounds always run, so with ``repetitions: auto`` the
        fault windows add a round only while it ends this long before the budget does
        (their planned time: ``chaos.experiment.cost.first_rounds_s``). 0 without a cost
        step, a budget, or ``auto``.
        """
        if self.cost is None or self.budget is None or not self.adaptive:
            return 0.0
        return first_rounds_s(self.cost, self.setups)

    def fault_round_seconds(self) -> tuple[float, float]:
        """Planned seconds of the first round of fault windows (every window) and of a
        later one of ``auto`` (the windows the hypotheses compare)."""
        per_window = self.timeline.total + WINDOW_OVERHEAD_S
        of_fault = self.setups_of_faults()
        first = sum(len(s) for s in of_fault.values()) * per_window
        later = max(1, len(hypothesis_windows(self.hypotheses, of_fault))) * per_window
        return first, later

    def fault_names(self) -> list[str]:
        """A unique name per fault: its ``name``, else ``<type>-<position from 1>``."""
        return [f.name or f"{f.type}-{i + 1}" for i, f in enumerate(self.faults)]

    def faults_for(self, setup: str) -> list[Fault]:
        """The faults that apply to ``setup``, in file order."""
        return [f for f in self.faults if f.target.setups is None or setup in f.target.setups]
