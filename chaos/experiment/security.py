"""The ``security:`` section: what counts as a credential, the invariants' bound, the bypass probe.

::

    security:
      sensitive_headers: [authorization, cookie]   # what counts as a credential reaching the app
      max_credentials_exposed: 0.001               # share of served requests, 0..1
      bypass:                                      # plaintext, token-less requests straight
        rate: 2                                    # to each pod's app port, requests/s
        max_requests: 100                          # per window, at most
      anonymous:                                   # illegitimate callers: requests through
        rate: 2                                    # the ingress without a token, requests/s
        max_requests: 100                          # per window, at most

An anonymous request the app answers was served unauthenticated: it counts in the
fail-open invariant beside the load's unverified requests.

Requests served without a verified identity (fail open) must be 0 in every window;
that bound is not a setting. Without the section the invariants are still measured
and reported (with the defaults below); with it, a window served unauthenticated fails
the run, and so does one over ``max_credentials_exposed`` when the file states it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Annotated, Final

from pydantic import Field, field_validator

from chaos.experiment._base import Int, Number, Rate, SpecModel, field_error

#: A header field name (RFC 9110 section 5.1: a ``token``).
HEADER_NAME: Final = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
#: What counts as a credential when the file says nothing.
DEFAULT_SENSITIVE_HEADERS: tuple[str, ...] = ("authorization",)
#: The seed's claim for a mesh: less than 0.1 % of requests expose a sensitive header.
DEFAULT_MAX_CREDENTIALS_EXPOSED = 0.001
#: Fault types that only the local platform carries out for now.
LOCAL_ONLY_FAULTS: tuple[str, ...] = ()


class BypassProbe(SpecModel):
    """A small stream sent the way legacy code would: plaintext, no token, to the app port."""

    #: Requests a second, in all (spread over the pods in turn).
    rate: Annotated[Number, Field(gt=0, le=1000)]
    #: At most this many per window.
    max_requests: Annotated[Int, Field(ge=1, le=100_000)] = 200


class AnonymousStream(BypassProbe):
    """A small stream from an illegitimate caller: through the ingress, without a token."""


class Security(SpecModel):
    """What the app may receive and what the run checks about it (see the module docstring)."""

    sensitive_headers: Annotated[tuple[str, ...], Field(min_length=1, max_length=32)] = (
        DEFAULT_SENSITIVE_HEADERS
    )
    max_credentials_exposed: Rate = DEFAULT_MAX_CREDENTIALS_EXPOSED
    bypass: BypassProbe | None = None
    anonymous: AnonymousStream | None = None

    @field_validator("sensitive_headers")
    @classmethod
    def _header_names(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        for i, name in enumerate(names):
            if not isinstance(name, str) or len(name) > 256 or not HEADER_NAME.match(name):
                raise field_error(str(i), f"{name!r} is not a valid HTTP header name")
        lowered = tuple(n.lower() for n in names)
        for i, name in enumerate(lowered):
            if name in lowered[:i]:
                raise field_error(str(i), f"lists {name} twice (header names ignore case)")
        return lowered


def check_security(
    security: Security | None,
    traffic_rate: float,
    platform: str,
    faults: Sequence[object],
    setups: Sequence[str] = (),
) -> None:
    """Cross-field checks: the streams stay below the load; what a cluster cannot do yet."""
    bypass = security.bypass if security is not None else None
    if bypass is not None and bypass.rate > traffic_rate:
        raise field_error(
            "security.bypass.rate",
            f"{bypass.rate:g}/s is more than the load itself "
            f"(traffic.rate {traffic_rate:g}/s): the probe is a small stream",
        )
    if (
        security is not None
        and security.anonymous is not None
        and security.anonymous.rate > traffic_rate
    ):
        raise field_error(
            "security.anonymous.rate",
            f"{security.anonymous.rate:g}/s is more than the load itself "
            f"(traffic.rate {traffic_rate:g}/s): the stream is a small one",
        )
    if platform != "local":
        for i, fault in enumerate(faults):
            _check_cluster_fault(i, fault, setups)


def _check_cluster_fault(i: int, fault: object, setups: Sequence[str]) -> None:
    """policy-mismatch on a cluster: an AuthorizationPolicy (mesh, ambient) or the plain
    sidecar's own bootstrap (``setups`` is not narrowed: every setup has one now)."""
    fault_type = str(getattr(fault, "type", ""))
    if fault_type in LOCAL_ONLY_FAULTS:
        raise field_error(f"faults.{i}.type", f"{fault_type} runs on the local platform only")
    if fault_type != "policy-mismatch":
        return
    target = getattr(fault, "target", None)
    service = getattr(target, "service", None)
    if getattr(fault, "rule", "") == "allow-any":
        narrowed = getattr(target, "setups", None)
        if "sidecar" in (narrowed if narrowed is not None else setups):
            raise field_error(
                f"faults.{i}.rule",
                "allow-any on the plain sidecar: its jwt_authn requires the token before "
                "any authorization rule, so no rule opens it (narrow target.setups to mesh, "
                "ambient)",
            )
        if service != "frontend":
            raise field_error(
                f"faults.{i}.target.service",
                "allow-any on a cluster goes where the standing require-jwt policy applies "
                "(its dry-run copy is the proof): target frontend",
            )
        return
    if service == "frontend":
        raise field_error(
            f"faults.{i}.target.service",
            "on a cluster frontend's caller is the load generator, outside the mesh's "
            "identities: target checkout or payments",
        )


def sensitive_headers(security: Security | None) -> tuple[str, ...]:
    """The headers that count as credentials."""
    return security.sensitive_headers if security is not None else DEFAULT_SENSITIVE_HEADERS


def credentials_bound(security: Security | None) -> float:
    """The bound on the share of served requests that expose a credential."""
    return (
        security.max_credentials_exposed
        if security is not None
        else DEFAULT_MAX_CREDENTIALS_EXPOSED
    )


def security_parameters(security: Security | None) -> dict[str, float | str | None]:
    """What the run records about security in its parameters (the report's method)."""
    bypass = security.bypass if security is not None else None
    anonymous = security.anonymous if security is not None else None
    return {
        "sensitive_headers": ",".join(sensitive_headers(security)),
        "max_credentials_exposed": credentials_bound(security),
        "bypass_rate_rps": bypass.rate if bypass is not None else None,
        "bypass_max_requests": bypass.max_requests if bypass is not None else None,
        "anonymous_rate_rps": anonymous.rate if anonymous is not None else None,
        "anonymous_max_requests": anonymous.max_requests if anonymous is not None else None,
    }


#: Key of a platform's start options (``StartOptions.extra``): the sensitive headers, comma-joined.
EXTRA_SENSITIVE_HEADERS = "security.sensitive_headers"


def security_extra(security: Security | None) -> dict[str, str]:
    """What a platform is told about security when it starts a setup."""
    return {EXTRA_SENSITIVE_HEADERS: ",".join(sensitive_headers(security))}
