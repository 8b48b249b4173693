"""Who may talk to `huntaze serve`: the API token and the rule about where it may listen.

A daemon that listens beyond this machine without a token would hand the ledger and the
campaign API to the network; ``check_bind`` refuses that before a socket is opened, and
``api_token`` never treats a named-but-unset variable as "no token".
"""

from __future__ import annotations

import ipaddress
import os
import socket
from typing import TYPE_CHECKING

from huntaze_cli.errors import ConfigError, UsageError

if TYPE_CHECKING:
    from huntaze_cli.config import Config


def api_token(config: Config) -> str | None:
    """The bearer token ``[server] token_env`` names; None when no token is configured.

    A named variable that is unset or empty is an error, not "no auth": an operator who
    asked for a token must never get an open daemon by a typo in the environment.
    """
    name = config.server.token_env
    if not name:
        return None
    value = os.environ.get(name, "").strip()
    if not value:
        raise ConfigError(
            f"server.token_env: environment variable {name} is not set or empty",
            hint=f"export {name}=<a long random token>, or remove [server] token_env",
        )
    return value


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


def check_bind(host: str, token: str | None) -> None:
    """Refuse (UsageError, exit 2) to listen beyond this machine without a token."""
    if token is None and not is_loopback(host):
        raise UsageError(
            f"<host> {host}: refusing to listen on a non-loopback address without an API "
            "token; set [server] token_env to a variable holding a token, or bind 127.0.0.1",
            field="host",
            value=host,
        )
