"""Cross-site request forgery checks for the console's actions (POST only).

A browser signed in by basic auth sends the credentials with any request to the console, a
forged one from another site too; an action therefore needs two things a forger cannot supply:
- a token of the operator's own in the form (`csrf_token`): `<issued unix time>.<HMAC of the
  operator, its organization and that time>` under a key derived from the operator's credential
  (auth.py), valid for `TOKEN_TTL_S`, compared in constant time;
- an `Origin` header (else a `Referer`) naming the host the request was sent to (`Host`, or
  `X-Forwarded-Host` behind a proxy): a form posted from another site names that site. The
  pages with action forms send `Referrer-Policy: same-origin`, so the browser sends both.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Mapping
from urllib.parse import urlsplit

from sync_pipelines.console.auth import Operator

FIELD = "csrf_token"
#: how long a page's forms stay usable
TOKEN_TTL_S = 12 * 3600
#: the pages with forms: same-origin requests carry Origin and Referer, others nothing
FORM_PAGE_REFERRER_POLICY = "same-origin"


class CsrfRefused(PermissionError):
    """The action's request did not come from the console's own page (answered 403)."""


def issue_token(operator: Operator, *, now: float | None = None) -> str:
    """A token for `operator`'s forms (empty for an operator who cannot write: no forms)."""
    if not operator.can_write or not operator.csrf_key:
        return ""
    issued = int(time.time() if now is None else now)
    return f"{issued}.{_mac(operator, issued)}"


def check_request(
    operator: Operator,
    headers: Mapping[str, str],
    token: str | None,
    *,
    now: float | None = None,
) -> None:
    """Raise CsrfRefused unless the request comes from this console's page: same-origin
    `Origin` (or `Referer`) and a valid, unexpired token of this operator."""
    _check_origin(headers)
    issued_text, _, mac = (token or "").partition(".")
    if not issued_text.isdigit() or not mac or not operator.csrf_key:
        raise CsrfRefused("the form's CSRF token is missing: reload the page and try again")
    issued = int(issued_text)
    if not hmac.compare_digest(mac.encode(), _mac(operator, issued).encode()):
        raise CsrfRefused("the form's CSRF token is not this operator's: reload the page")
    age = (time.time() if now is None else now) - issued
    if not -60 <= age <= TOKEN_TTL_S:
        raise CsrfRefused("the form has expired: reload the page and try again")


def _check_origin(headers: Mapping[str, str]) -> None:
    hosts = {
        h.strip().lower()
        for h in (headers.get("host"), (headers.get("x-forwarded-host") or "").split(",")[0])
        if h and h.strip()
    }
    origin = headers.get("origin")
    source = origin if origin is not None else headers.get("referer")
    if not source:
        raise CsrfRefused(
            "an action needs an Origin or Referer header naming the console (a browser sends it)"
        )
    netloc = urlsplit(source).netloc.lower() if source != "null" else ""
    if netloc not in hosts:
        raise CsrfRefused(
            f"the action was sent from another site ({'Origin' if origin is not None else 'Referer'} "
            f"{source[:80]!r} is not this console's host)"
        )


def _mac(operator: Operator, issued: int) -> str:
    message = f"{operator.name}|{operator.organization_id or '*'}|{issued}".encode()
    digest = hmac.new(operator.csrf_key, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")
