"""Who is looking at the dashboard: the API token, asked once, kept in a cookie.

The login form takes the same bearer token the API takes. The cookie does not hold the
token itself but an HMAC of it (``session_value``), so the cookie cannot be replayed as
an API bearer; it is HttpOnly (no script reads it), SameSite=Strict (no other site's
page sends it) and scoped to ``/dashboard``. Every state-changing form also carries a
CSRF token, another HMAC of the token, checked on POST. A wrong token sees the login
form again and nothing else. A tenant's token signs in as that tenant: every view shows
its own figures only (the services get ``tenant=``, as the API routes pass them).
Without a configured token (a loopback-only daemon) the dashboard is open, as the API
is, and the CSRF secret is per process.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from huntaze_cli.server.auth import Tokens

COOKIE = "huntaze_session"
PATH = "/dashboard"
_OPEN_SECRET = secrets.token_bytes(32)  # no token configured: this process's own key


def _mac(token: str | None, purpose: str) -> str:
    key = token.encode() if token else _OPEN_SECRET
    return hmac.new(key, f"huntaze-dashboard:{purpose}".encode(), hashlib.sha256).hexdigest()


def session_value(token: str) -> str:
    """What the cookie holds for ``token``."""
    return _mac(token, "session")


@dataclass(frozen=True)
class Viewer:
    """A signed-in viewer: the admin (``tenant`` None) or one tenant, who sees only its
    own figures; only the admin may press the buttons that change things."""

    tenant: str | None
    csrf: str

    @property
    def admin(self) -> bool:
        return self.tenant is None

    def csrf_ok(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), self.csrf.encode())


def viewer(tokens: Tokens, cookie: str | None) -> Viewer | None:
    """The viewer a request's cookie proves, or None (show the login form).

    Every token's session value is compared in constant time, whichever matches.
    """
    if not tokens.configured:
        return Viewer(tenant=None, csrf=_mac(None, "csrf"))
    if not cookie:
        return None
    found: Viewer | None = None
    for tenant, token in [(None, tokens.admin), *tokens.tenants.items()]:
        if token is None:
            continue
        if hmac.compare_digest(cookie.encode(), session_value(token).encode()) and not found:
            found = Viewer(tenant=tenant, csrf=_mac(token, "csrf"))
    return found


def sign_in(tokens: Tokens, given: str) -> str | None:
    """The cookie value for the token typed into the login form; None for a wrong one."""
    token = given.strip()
    if not tokens.configured or not token:
        return None
    if tokens.authenticate(f"Bearer {token}") is None:
        return None
    return session_value(token)
