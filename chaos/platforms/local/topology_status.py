"""What ``status`` shows of a running local topology: one row per pod, node proxy, waypoint
and the ingress, read from the supervisor (pids, readiness, restarts) and the layout."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from chaos.platforms.local import registry
from chaos.platforms.local.supervisor import Supervisor
from chaos.platforms.shared.idp import TOKEN_PATH
from chaos.platforms.shared.layout import Port, TopologyLayout
from chaos.proc import start_ticks


@dataclass(frozen=True)
class RunLabel:
    """Which run a topology serves, for its record in the registry (``status``, ``token``)."""

    #: The run's id (its directory's name) and directory.
    run_id: str
    run_dir: Path
    #: The window the topology was brought up for.
    window: str = ""


def topology_status(
    layout: TopologyLayout, supervisor: Supervisor, started_utc: str, label: RunLabel | None
) -> registry.TopologyStatus:
    """The registry record of a topology (``label`` None: one ``up`` brought up)."""
    rows: list[registry.PodStatus] = []
    for pod in layout.pods:
        rows.append(_row(supervisor, pod.name, pod.service, pod.node, pod.address, pod.ports))
    admin = {"admin": int(Port.ADMIN)}
    for proxy in layout.node_proxies:
        rows.append(_row(supervisor, proxy.name, "ztunnel", proxy.node, proxy.address, admin))
    for waypoint in layout.waypoints:
        rows.append(
            _row(
                supervisor,
                waypoint.name,
                f"{waypoint.service}-waypoint",
                "-",
                waypoint.address,
                {**admin, "hbone": int(Port.HBONE)},
            )
        )
    ingress = {"http": layout.ingress.port, **admin}
    rows.append(_row(supervisor, "ingress", "ingress", "-", layout.ingress.host, ingress))
    return registry.TopologyStatus(
        setup=layout.setup.value,
        slot=layout.slot,
        ingress=layout.ingress.url,
        owner_pid=os.getpid(),
        run_dir=str(layout.dir if label is None else label.run_dir),
        idp_url=layout.idp_url,
        started_utc=started_utc,
        pods=rows,
        kind=registry.KIND_UP if label is None else registry.KIND_RUN,
        owner_start_ticks=start_ticks(os.getpid()),
        token_url=layout.idp_url + TOKEN_PATH,
        run_id="" if label is None else label.run_id,
        window="" if label is None else label.window,
    )


def _row(
    supervisor: Supervisor,
    group: str,
    service: str,
    node: str,
    address: str,
    ports: dict[str, int],
) -> registry.PodStatus:
    names = supervisor.names(group)
    pids = {name.removeprefix(f"{group}.") or name: supervisor.pid(name) for name in names}
    return registry.PodStatus(
        name=group,
        service=service,
        node=node,
        address=address,
        ports=ports,
        ready=bool(names) and all(supervisor.is_ready(n) for n in names),
        restarts=sum(supervisor.restarts(n) for n in names),
        pids=pids,
    )


__all__ = ["RunLabel", "topology_status"]
