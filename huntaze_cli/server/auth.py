"""Who may talk to `huntaze serve`, and as whom: tokens, principals, the bind rule.

Tokens. ``[server] token_env`` names the admin token (sees and changes everything);
each ``[tenants.<name>] token_env`` names that tenant's token. ``Tokens.authenticate``
compares a request's ``Authorization: Bearer`` with every configured token in constant
time (``hmac.compare_digest`` over all of them, whichever matches) and answers a
``Principal``; tokens are never logged, echoed or stored. With no token configured at
all the daemon is the loopback admin it always was (``check_bind`` refuses any other
address); as soon as one token is configured, every ``/api`` and ``/metrics`` request
needs a valid one (401 otherwise, before the body is read, by ``server.asgi.Guard``).

Principals on routes. ``current_principal`` is the one FastAPI dependency that resolves
the token; ``create_app`` installs it on the whole app, so no route can opt out of it.
A route reads who is asking with one helper and hands it to its service:

* ``tenant_scope(request) -> str | None``: the tenant whose data the request may see,
  None for the admin. Services take it as ``tenant=`` and filter by it: reports read
  the ledger through ``costs.tenant_view.TenantLedger``; a campaign of another tenant
  is "not found" (404, the same answer as a missing one, so ids cannot be probed); a
  campaign a tenant posts is forced to its tenant; alert rules and history are limited
  to rules scoped to the tenant, and a tenant may only write rules on its own scope.
* ``require_admin(request)``: 403 for a tenant token, for routes with no tenant view
  (``/metrics``: process-wide counters; a deep health probe, which spends money).
  The plain health check is tenant-safe: it reports the daemon and its providers, no
  tenant's figures.

The dashboard (``/dashboard``) is the one place without a bearer header: a browser signs
in there with a cookie its routes check themselves (``server.dashboard.session``), and
they pass the signed-in viewer's tenant to the same services.

A new route declares what it filters by calling one of the two at its top; the
isolation test (tests/server/test_tenant_isolation.py) enumerates every route from the
OpenAPI document and fails for a route whose answer to tenant B holds tenant A's data.

``check_bind`` refuses to listen beyond this machine without any token.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import socket
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fastapi import HTTPException, Request

from huntaze_cli.errors import ConfigError, ForbiddenError, UsageError

if TYPE_CHECKING:
    from huntaze_cli.config import Config


@dataclass(frozen=True)
class Principal:
    """Who a request speaks for: a tenant (``tenant`` set) or the admin (``tenant`` None)."""

    tenant: str | None
    is_admin: bool


ADMIN = Principal(tenant=None, is_admin=True)
# The dashboard (``/dashboard``) signs viewers in with its own cookie and resolves them
# itself (``server.dashboard.session``); to the app-wide dependency a browser there is
# this principal, whose tenant matches no data: whatever read it, it would see nothing.
DASHBOARD = "/dashboard"
DASHBOARD_VISITOR = Principal(tenant="\x00dashboard-visitor", is_admin=False)


def _token_from(env: str, what: str) -> str:
    # A named variable that is unset or empty is an error, not "no auth": an operator
    # who asked for a token must never get an open daemon by a typo in the environment.
    value = os.environ.get(env, "").strip()
    if not value:
        raise ConfigError(
            f"{what}: environment variable {env} is not set or empty",
            hint=f"export {env}=<a long random token>, or remove {what}",
        )
    return value


def api_token(config: Config) -> str | None:
    """The admin bearer token ``[server] token_env`` names; None when none is configured."""
    name = config.server.token_env
    return _token_from(name, "server.token_env") if name else None


@dataclass(frozen=True)
class Tokens:
    """Every token `serve` accepts and whom each one stands for."""

    admin: str | None = None
    tenants: dict[str, str] = field(default_factory=dict)  # tenant name -> token

    @classmethod
    def from_config(cls, config: Config) -> Tokens:
        """Read the tokens from the environment; a named but unset variable, or one
        token shared by two principals, is a ConfigError."""
        tenants = {
            name: _token_from(tenant.token_env, f"tenants.{name}.token_env")
            for name, tenant in config.tenants.items()
            if tenant.token_env
        }
        admin = api_token(config)
        owners: dict[str, str] = {}
        for who, token in [("server.token_env", admin), *tenants.items()]:
            if token is None:
                continue
            if token in owners:
                raise ConfigError(
                    f"tenants: {who} and {owners[token]} hold the same token",
                    hint="give every tenant (and the admin) its own token",
                )
            owners[token] = who
        return cls(admin=admin, tenants=tenants)

    @property
    def configured(self) -> bool:
        """Whether any token is configured (then every request needs one)."""
        return self.admin is not None or bool(self.tenants)

    def authenticate(self, authorization: str | None) -> Principal | None:
        """The principal an ``Authorization`` header value speaks for; None if nobody.

        Every configured token is compared, in constant time, whatever matched before:
        the time taken says nothing about which token (or how much of one) was right.
        """
        if not self.configured:
            return ADMIN
        scheme, _, credentials = (authorization or "").partition(" ")
        if scheme.lower() != "bearer":
            return None
        given = credentials.strip().encode()
        found: Principal | None = None
        if self.admin is not None and hmac.compare_digest(given, self.admin.encode()):
            found = ADMIN
        for name, token in self.tenants.items():
            if hmac.compare_digest(given, token.encode()) and found is None:
                found = Principal(tenant=name, is_admin=False)
        return found


def current_principal(request: Request) -> Principal:
    """The app-wide dependency: the request's principal, or 401 with no data."""
    principal = request.scope.get("huntaze.principal")
    if principal is None:
        tokens: Tokens = request.app.state.runtime.tokens
        principal = tokens.authenticate(request.headers.get("authorization"))
    if principal is None and request.url.path.startswith(DASHBOARD):
        principal = DASHBOARD_VISITOR
    if principal is None:
        raise HTTPException(
            401,
            "missing or wrong bearer token (Authorization: Bearer <token>)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    request.state.principal = principal
    return principal


def principal_of(request: Request) -> Principal:
    """The principal ``current_principal`` resolved for this request."""
    principal = getattr(request.state, "principal", None)
    return principal if isinstance(principal, Principal) else current_principal(request)


def tenant_scope(request: Request) -> str | None:
    """The tenant a request may see (None: the admin, who sees every tenant)."""
    return principal_of(request).tenant


def require_admin(request: Request) -> None:
    """ForbiddenError (403) unless the admin token (or no token at all) made the request."""
    if not principal_of(request).is_admin:
        raise ForbiddenError("this route needs the admin token ([server] token_env)")


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or a name) only ever means this machine."""
    name = host.strip().strip("[]")
    if not name:
        return False  # "" binds every interface
    try:
        return ipaddress.ip_address(name.split("%", 1)[0]).is_loopback
    except ValueError:
        pass
    if name.lower() == "localhost":
        return True
    try:
        infos = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    except OSError:
        return False
    addresses = {str(info[4][0]).split("%", 1)[0] for info in infos}
    return bool(addresses) and all(ipaddress.ip_address(a).is_loopback for a in addresses)


def check_bind(host: str, tokens: Tokens) -> None:
    """Refuse (UsageError, exit 2) to listen beyond this machine without a token."""
    if not tokens.configured and not is_loopback(host):
        raise UsageError(
            f"<host> {host}: refusing to listen on a non-loopback address without an API "
            "token; set [server] token_env to a variable holding a token, or bind 127.0.0.1",
            field="host",
            value=host,
        )
