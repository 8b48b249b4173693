"""The one exception tree of huntaze.

Every error a user can see is one of these; library exceptions (sqlite3, botocore,
openai, smtplib) are wrapped at the boundary where they happen. Each interface maps the
tree in one place: the CLI to exit codes in ``huntaze_cli.cli.exit_codes``, the HTTP
daemon to statuses in ``huntaze_cli.server.errors``.

    HuntazeError                      exit 1   HTTP 500   operational failure
    ├── UsageError                    exit 2   HTTP 422   bad flag, argument or query value
    │   ├── ConflictError             exit 2   HTTP 409   clashes with what exists (a config rule)
    │   └── ForbiddenError            exit 2   HTTP 403   a tenant token asked for more than its own
    ├── InputError                    exit 2   HTTP 422   invalid campaign/import file or body
    ├── ConfigError                   exit 2   HTTP 500   invalid or unreadable config
    ├── NotFoundError                 exit 1   HTTP 404   a named thing (campaign, ...) is missing
    ├── BackendError                  exit 1   HTTP 503   ledger, queue, rate-limit store, AWS
    ├── ProviderError                 exit 1   HTTP 502   every provider attempt failed
    ├── DeliveryError                 exit 1   HTTP 502   the delivery sink failed
    ├── AlertError                    exit 1   HTTP 502   an alert channel could not send
    └── BudgetExceeded                exit 3   HTTP 429   a budget has no room for the next call

Errors about one input carry it as data: ``field`` (the parameter's name, e.g. ``since``
or ``recipients``) and ``value``. The core never names a CLI flag: where a message refers
to a parameter it writes ``<name>`` (for ``field`` and the names in ``refs`` only) and
each interface renders it, the CLI as its flag (``--since``), HTTP as the query or body
field (``since``); see ``render``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any


class HuntazeError(Exception):
    """Base of every error huntaze reports; an operational failure (exit 1)."""

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        field: str | None = None,
        value: Any = None,
        refs: Sequence[str] = (),
    ) -> None:
        super().__init__(message)
        self.text = message
        self.hint = hint
        self.field = field
        self.value = value
        self.refs = tuple(dict.fromkeys([*([field] if field else []), *refs]))

    def render(self, name: Callable[[str], str] = str) -> str:
        """The message with each ``<field>`` reference spelled by ``name``."""
        if not self.refs:
            return self.text
        pattern = "|".join(re.escape(ref) for ref in self.refs)
        return re.sub(f"<({pattern})>", lambda m: name(m.group(1)), self.text)

    @property
    def message(self) -> str:
        """The message with parameters by their plain names (logs, the API)."""
        return self.render()

    def __str__(self) -> str:
        return self.message


class UsageError(HuntazeError):
    """A flag, argument or query parameter has a value that cannot be used."""


class ConflictError(UsageError):
    """The request clashes with what exists: e.g. changing a rule that lives in the config."""


class ForbiddenError(UsageError):
    """A tenant's token asked for what only the admin may do (a global rule, metrics)."""


class InputError(HuntazeError):
    """An input file, stdin document or request body is invalid; names field or line."""


class ConfigError(HuntazeError):
    """The config file or a HUNTAZE_* variable is invalid; names `section.key` and source."""


class NotFoundError(HuntazeError):
    """A thing named by the user (a campaign id, ...) does not exist."""


class BackendError(HuntazeError):
    """An AWS or storage service (SQLite, DynamoDB, SQS, CloudWatch) failed or is unreachable."""


class ProviderError(HuntazeError):
    """An LLM provider call failed and no other attempt could serve it."""


class DeliveryError(HuntazeError):
    """The delivery sink (outbox, webhook, SQS) failed."""


class AlertError(HuntazeError):
    """An alert channel (email, SES, Slack, SNS, webhook) could not send an alert."""


class BudgetExceeded(HuntazeError):
    """A budget in scope has no room for a call's worst-case cost: generation pauses.

    Raised before the provider is called, so nothing was spent; ``budget`` names it.
    """

    def __init__(self, message: str, *, budget: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.budget = budget
