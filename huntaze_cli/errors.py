"""The one exception tree of huntaze.

Every error a user can see is one of these; library exceptions (sqlite3, botocore,
openai, smtplib) are wrapped at the boundary where they happen. The CLI maps the tree to
exit codes in ``huntaze_cli.cli._app`` and the HTTP daemon maps it to statuses, each in
one place: ``exit_code`` and ``http_status`` below.

    HuntazeError                      exit 1   operational failure
    ├── UsageError                    exit 2   bad flag or argument value
    ├── InputError                    exit 2   invalid campaign/import file or body
    ├── ConfigError                   exit 2   invalid or unreadable config
    ├── NotFoundError                 exit 1   a named thing (campaign, ...) does not exist
    ├── BackendError                  exit 1   ledger, queue, rate-limit store, CloudWatch
    ├── ProviderError                 exit 1   every provider attempt failed
    ├── DeliveryError                 exit 1   the delivery sink failed
    └── AlertError                    exit 1   an alert channel could not send
"""

from __future__ import annotations


class HuntazeError(Exception):
    """Base of every error huntaze reports; an operational failure (exit 1)."""

    exit_code = 1
    http_status = 500

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UsageError(HuntazeError):
    """A command-line flag or argument has a value that cannot be used."""

    exit_code = 2
    http_status = 422


class InputError(HuntazeError):
    """An input file, stdin document or request body is invalid; names field or line."""

    exit_code = 2
    http_status = 422


class ConfigError(HuntazeError):
    """The config file or a HUNTAZE_* variable is invalid; names `section.key` and source."""

    exit_code = 2
    http_status = 500


class NotFoundError(HuntazeError):
    """A thing named by the user (a campaign id, ...) does not exist."""

    exit_code = 1
    http_status = 404


class BackendError(HuntazeError):
    """An AWS or storage service (SQLite, DynamoDB, SQS, CloudWatch) failed or is unreachable."""

    http_status = 503


class ProviderError(HuntazeError):
    """An LLM provider call failed and no other attempt could serve it."""

    http_status = 502


class DeliveryError(HuntazeError):
    """The delivery sink (outbox, webhook, SQS) failed."""

    http_status = 502


class AlertError(HuntazeError):
    """An alert channel (SMTP, SES) could not send a threshold alert."""

    http_status = 502
