"""DestinationRule and VirtualService writes in the fake: refused as their CRD's schema refuses.

The schemas are the repository's reduced copies of Istio's v1 CRDs
(:mod:`chaos.platforms.kubernetes.schemas`, from ``crd-all.gen.yaml``): a field the tool
writes with the wrong type or range (an ``int32`` ``maxRetries`` above 2^31-1, a
duration without its unit) is refused with 422 ``Invalid``, as the real API server
does; an unknown field is refused too, where the real server would prune it silently
(stricter, so a typo cannot pass). Only ``spec`` is checked; metadata is the server's.
Only objects the tool owns (``cluster up``'s and a run's, labelled
``app.kubernetes.io/managed-by: sidecar-chaos``) are checked: the reduced schemas hold
only the fields the tool writes, and a team's own VirtualService may use any other.
"""

from __future__ import annotations

from chaos.platforms.kubernetes import names
from chaos.platforms.kubernetes.schemas import schema_for
from chaos.testing.fakekube.rules import ApiError, Obj

#: The kinds checked here, with their API group (the error names it).
GROUPS = {"DestinationRule": "networking.istio.io", "VirtualService": "networking.istio.io"}


def validate_networking(kind: str, obj: Obj) -> None:
    """Refuse a DestinationRule or VirtualService its CRD's schema rejects (422)."""
    group = GROUPS.get(kind)
    labels = (obj.get("metadata") or {}).get("labels") or {}
    if group is None or labels.get(names.LABEL_MANAGED_BY) != names.MANAGED_BY:
        return
    check_spec(kind, group, obj)


def check_spec(kind: str, group: str, obj: Obj) -> None:
    """Refuse ``obj`` with 422 ``Invalid`` if its ``spec`` fails ``kind``'s CRD schema
    (metadata is the API server's own, ObjectMeta)."""
    import jsonschema  # type: ignore[import-untyped]  # test-only: only the fake needs it

    spec_schema = schema_for(kind)["properties"]["spec"]
    try:
        jsonschema.validate(obj.get("spec", {}), spec_schema)
    except jsonschema.ValidationError as exc:
        name = (obj.get("metadata") or {}).get("name", "")
        where = ".".join(["spec", *(str(p) for p in exc.absolute_path)])
        raise ApiError(
            422, "Invalid", f'{kind}.{group} "{name}" is invalid: {where}: {exc.message}'
        ) from exc


__all__ = ["check_spec", "validate_networking"]
