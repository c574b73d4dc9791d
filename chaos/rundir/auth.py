"""What the app received with a request: the ``x-chaos-auth`` header and the ``auth`` column.

An application (the demo service, or a team's own) answers every request with::

    x-chaos-auth: verified,identity,token,credential

listing the flags that held for the request it received (``none`` when none did):

* ``identity``: a peer identity its proxy verified arrived (the proxy's own element,
  the last, of ``x-forwarded-client-cert`` names a ``spiffe://`` URI);
* ``token``: a token its proxy validated arrived (``x-jwt-payload``, which Envoy's
  ``jwt_authn`` sets only after validating the token);
* ``credential``: a credential reached the application (``Authorization`` or another
  header of the experiment's ``security.sensitive_headers``);
* ``verified``: the request was authenticated as the application requires (identity,
  and a token where its proxy validates tokens).

A service that calls others folds their answers in (identity, token and verified must
hold on every hop, credential on any), so the first service's answer covers the chain.
The traffic driver stores the flags per sample in the ``auth`` column as bits;
``0`` means the application said nothing (a request that never reached it, a run
directory from before the column, a service that does not send the header).
"""

from __future__ import annotations

from typing import Final

#: The response header an application answers with.
AUTH_HEADER: Final = "x-chaos-auth"
#: The request header Envoy's ``jwt_authn`` sets to the validated token's payload.
JWT_PAYLOAD_HEADER: Final = "x-jwt-payload"
#: The request header an mTLS-terminating proxy sets to the verified peer (Envoy's XFCC).
XFCC_HEADER: Final = "x-forwarded-client-cert"

#: Bits of the ``auth`` column.
REPORTED: Final = 1
VERIFIED: Final = 2
IDENTITY: Final = 4
TOKEN: Final = 8
CREDENTIAL: Final = 16
FLAGS: Final = {
    "verified": VERIFIED,
    "identity": IDENTITY,
    "token": TOKEN,
    "credential": CREDENTIAL,
}
#: What the header says when no flag holds.
NONE: Final = "none"


def encode(value: str | None) -> int:
    """The ``auth`` bits of one header value (``0``: no header; unknown flags are ignored)."""
    if value is None:
        return 0
    bits = REPORTED
    for item in value.split(","):
        bits |= FLAGS.get(item.strip().lower(), 0)
    return bits


def header_value(bits: int) -> str:
    """The header value for ``bits`` (flags in a fixed order, ``none`` when none)."""
    names = [name for name, bit in FLAGS.items() if bits & bit]
    return ",".join(names) if names else NONE


def fold(mine: int, upstream: int) -> int:
    """This hop's bits combined with its upstream's: all hops for identity/token/verified,
    any hop for credential. An upstream that said nothing leaves this hop's bits."""
    if not upstream & REPORTED:
        return mine
    every = VERIFIED | IDENTITY | TOKEN
    return REPORTED | (mine & upstream & every) | ((mine | upstream) & CREDENTIAL)
