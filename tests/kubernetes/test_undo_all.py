"""``ClusterWriter.undo_all`` stops at the first undo that fails, against the fake API server.

Newest first, and nothing older is undone while a newer change is still in place: the
older change may be what the newer one stands on. What could not be undone stays in the
ledger, the error names every change still applied in one line, and ``clean`` finishes
them once the cluster takes writes again.

The failing undo is the fake's refusal of an Istio object while istiod has no ready pod
(``failed calling webhook``, 500: the validating webhook's ``failurePolicy: Fail``, as
``test_istio_admission`` shows), with istiod scaled to 0 behind the writer's back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from chaos.errors import PlatformError
from chaos.platforms.kubernetes import names
from chaos.platforms.kubernetes.api import KubeApi
from chaos.platforms.kubernetes.changes import ChangeLedger, ClusterWriter, LedgerHeader
from chaos.platforms.kubernetes.kinds import DEPLOYMENT, VIRTUAL_SERVICE, ResourceKind
from chaos.platforms.kubernetes.platform import KubernetesPlatform
from chaos.testing.fakekube.api import FakeCluster
from tests.kubernetes.fakecluster import comparable, wait_rolled_out

MESH = names.namespace_of(names.Setup.MESH)
ISTIO = names.ISTIO_NAMESPACE
#: The older change (a Deployment: no Istio webhook guards it) and the newer (an Istio route).
OLDER = ("spec", "minReadySeconds")  # no rollout: the template stays as it is
NEWER = ("spec", "http")


def _value(api: KubeApi, kind: ResourceKind, name: str, path: tuple[str, ...]) -> Any:
    node: Any = api.get(kind, MESH, name)
    for key in path:
        node = node[key]
    return node


def _timeout(http: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The route with a 0.5 s timeout: what a delay fault's route change looks like."""
    return [{**http[0], "timeout": "0.5s"}, *http[1:]]


def test_a_failed_undo_leaves_it_and_every_older_change_for_clean(
    seeded: FakeCluster, kubeconfig: Path, api: KubeApi, tmp_path: Path
) -> None:
    before = comparable(seeded)
    run_dir = tmp_path / "run"
    ledger = ChangeLedger(
        run_dir / "topologies" / "mesh-undo-1", LedgerHeader("run-7", api.context, str(kubeconfig))
    )
    writer = ClusterWriter(api, None, ledger, "run-7")
    writer.set_field(DEPLOYMENT, MESH, "checkout-0", OLDER, lambda _: 7)
    writer.set_field(VIRTUAL_SERVICE, MESH, "checkout", NEWER, _timeout)
    api.scale(ISTIO, "istiod", 0)  # from now on the webhook refuses the route's undo

    with pytest.raises(PlatformError) as raised:
        writer.undo_all()

    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(f"could not undo field VirtualService {MESH}/checkout spec.http: "), (
        message
    )
    assert 'failed calling webhook "validation.istio.io"' in message
    assert message.endswith(
        "0 newer undone, 2 still applied (newest first): "
        f"field VirtualService {MESH}/checkout spec.http, "
        f"field Deployment {MESH}/checkout-0 {'.'.join(OLDER)}"
    ), message
    # The server's record: the older change was not undone under the newer one.
    assert _value(api, DEPLOYMENT, "checkout-0", OLDER) == 7
    assert _value(api, VIRTUAL_SERVICE, "checkout", NEWER)[0]["timeout"] == "0.5s"
    assert [c.name for c in writer.active()] == ["checkout-0", "checkout"]

    api.scale(ISTIO, "istiod", 1)
    wait_rolled_out(api, ISTIO, "istiod")
    lines = KubernetesPlatform(kubeconfig=kubeconfig).clean(run_dir, [])
    assert len(lines) == 2, lines
    assert comparable(seeded) == before


def test_undo_all_undoes_newest_first_when_nothing_fails(
    seeded: FakeCluster, kubeconfig: Path, api: KubeApi, tmp_path: Path
) -> None:
    before = comparable(seeded)
    ledger = ChangeLedger(tmp_path / "t", LedgerHeader("run-8", api.context, str(kubeconfig)))
    writer = ClusterWriter(api, None, ledger, "run-8")
    writer.set_field(DEPLOYMENT, MESH, "checkout-0", OLDER, lambda _: 7)
    writer.set_field(VIRTUAL_SERVICE, MESH, "checkout", NEWER, _timeout)

    lines = writer.undo_all()

    assert [line.split(":")[0] for line in lines] == [
        f"VirtualService {MESH}/checkout",
        f"Deployment {MESH}/checkout-0",
    ]
    assert writer.active() == []
    assert comparable(seeded) == before
