"""Who is looking at the dashboard: the API token, asked once, kept in a cookie.

The login form takes the same bearer token the API takes. The cookie does not hold the
token itself but an HMAC of it (``session_value``), so the cookie cannot be replayed as
an API bearer; it is HttpOnly (no script reads it), SameSite=Strict (no other site's
page sends it) and scoped to ``/dashboard``. Every state-changing form also carries a
CSRF token, another HMAC of the token, checked on POST. A wrong token sees the login
form again and nothing else. Without a configured token (a loopback-only daemon) the
dashboard is open, as the API is, and the CSRF secret is per process.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

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
    """A signed-in viewer; ``admin`` may press the buttons that change things."""

    admin: bool
    csrf: str

    def csrf_ok(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), self.csrf.encode())


def viewer(token: str | None, cookie: str | None) -> Viewer | None:
    """The viewer a request's cookie proves, or None (show the login form)."""
    if token is None:
        return Viewer(admin=True, csrf=_mac(None, "csrf"))
    if cookie is None or not hmac.compare_digest(cookie.encode(), session_value(token).encode()):
        return None
    return Viewer(admin=True, csrf=_mac(token, "csrf"))


def token_matches(token: str | None, given: str) -> bool:
    """Whether the login form's ``given`` token is the configured one."""
    if token is None:
        return True
    return hmac.compare_digest(given.strip().encode(), token.encode())
