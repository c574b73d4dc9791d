"""The Istio version a cluster runs against the one the tool models (:data:`ISTIO_VERSION`).

``cluster up`` refuses another istioctl unless told to go on (``--accept-istio-version``);
a run's meta.json names a cluster whose istiod is another version.
"""

from __future__ import annotations

from chaos.errors import InputError
from chaos.platforms.shared.dataplane import ISTIO_VERSION


def istio_deviation(found: str, accepted: str | None = None) -> str | None:
    """None when ``found`` is the Istio the tool models; the deviation when it was accepted.

    Anything else is refused: the faults, the stats matcher and the identity timings follow
    Istio :data:`ISTIO_VERSION`'s defaults, and another version may differ in any of them.
    """
    if found == ISTIO_VERSION:
        return None
    if accepted is not None and accepted == found:
        return f"istio {found} (the tool models Istio {ISTIO_VERSION}; accepted at cluster up)"
    raise InputError(
        f"istioctl version --remote=false: {found}, but the tool models Istio {ISTIO_VERSION} "
        f"(ISTIO_VERSION): install istioctl {ISTIO_VERSION}, or pass --accept-istio-version "
        f"{found} to run on it with the deviation recorded"
    )


def istio_version_note(found: str | None) -> dict[str, str]:
    """For a run's meta.json: the deviation, when the cluster's istiod is not ISTIO_VERSION."""
    if found is None or found == ISTIO_VERSION:
        return {}
    return {"istio_deviation": f"istiod {found}; the tool models Istio {ISTIO_VERSION}"}


__all__ = ["ISTIO_VERSION", "istio_deviation", "istio_version_note"]
