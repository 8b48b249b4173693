"""Alert rules and history for the CLI and the HTTP API alike.

`thresholds list|set|delete`, `alerts list|ack|test` and their routes call these; the
evaluation itself (check-thresholds, serve's background loop) is ``services.thresholds``.
Stored rules are validated with the same model as ``[[thresholds.rules]]``; a rule that
lives in the config (or a global one) can be neither replaced nor deleted here.

Every function takes ``tenant`` (a tenant's API token): it then sees only rules scoped
to that tenant and their alerts, and writes only stored rules on its own scope; a rule
or alert of another scope is "not found", as a missing one.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from huntaze_cli.clock import SYSTEM_CLOCK
from huntaze_cli.errors import (
    ConflictError,
    ForbiddenError,
    InputError,
    NotFoundError,
    UsageError,
)
from huntaze_cli.models import (
    AckReport,
    AlertChannelState,
    AlertList,
    AlertTestReport,
    AlertView,
    ChannelTest,
    RuleChange,
    ThresholdReport,
)
from huntaze_cli.money import nano_to_usd

if TYPE_CHECKING:
    from huntaze_cli.services import Services
    from huntaze_cli.storage.alerts import AlertEntry


def list_rules(
    services: Services, *, now: datetime | None = None, tenant: str | None = None
) -> ThresholdReport:
    """Every rule (global, config, stored) with its spend in its current period."""
    from huntaze_cli.alerts.thresholds import evaluate_thresholds

    report = evaluate_thresholds(
        services.config(),
        services.ledger(),
        services.alert_store(),
        now=now,
        send_alerts=False,
    )
    if tenant is None:
        return report
    mine = [r for r in report.thresholds if r.scope.get("tenant") == tenant]
    return report.model_copy(
        update={
            "thresholds": mine,
            "breached": any(r.breached for r in mine),
            "unpriced_requests": max((r.unpriced_requests for r in mine), default=0),
            "cloudwatch_published": None,
        }
    )


def _stored_rule_tenant(services: Services, name: str) -> tuple[bool, str | None]:
    """Whether a stored rule ``name`` exists, and the tenant its scope names."""
    for body in services.alert_store().rules():
        if body.get("name") == name:
            scope = body.get("scope") or {}
            return True, scope.get("tenant") if isinstance(scope, dict) else None
    return False, None


def set_rule(
    services: Services, name: str, fields: dict[str, Any], *, tenant: str | None = None
) -> RuleChange:
    """Create or replace the stored rule ``name``; InputError naming a bad field.

    With ``tenant`` the rule's scope is that tenant (another tenant in ``scope`` is
    ForbiddenError) and a name taken by a rule of another scope is a conflict.
    """
    from pydantic import ValidationError

    from huntaze_cli.alerts.rules import config_rule_names

    if tenant is not None:
        scope = dict(fields.get("scope") or {})
        if scope.get("tenant", tenant) != tenant:
            raise ForbiddenError(
                "scope.tenant: a tenant token may only set rules on its own tenant",
                field="scope",
            )
        fields = {**fields, "scope": {**scope, "tenant": tenant}}
        exists, owner = _stored_rule_tenant(services, name)
        if (exists and owner != tenant) or name in config_rule_names(services.config()):
            raise ConflictError(
                f"rule name {name} is in use; choose another", field="name", value=name
            )
    from huntaze_cli.config import AlertRule

    if name in config_rule_names(services.config()):
        raise ConflictError(
            f"rule {name} is defined in the config (or is a global rule): change it there",
            field="name",
            value=name,
            hint="`huntaze config path` shows the file; [thresholds] holds the global limits",
        )
    try:
        rule = AlertRule.model_validate({**fields, "name": name})
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"]) or "rule"
        raise InputError(f"{where}: {error['msg']}", field=str(error["loc"][0])) from None
    _check_channels(services, None if rule.channels is None else list(rule.channels))
    store = services.alert_store()
    existed = any(body.get("name") == name for body in store.rules())
    store.put_rule(name, rule.model_dump(mode="json", exclude_none=True), now=SYSTEM_CLOCK.now())
    listed = {r.name: r for r in list_rules(services).thresholds}
    return RuleChange(name=name, action="replaced" if existed else "created", rule=listed[name])


def delete_rule(services: Services, name: str, *, tenant: str | None = None) -> RuleChange:
    """Remove a stored rule; ConflictError for a config rule, NotFoundError if unknown
    (or, with ``tenant``, not scoped to that tenant)."""
    from huntaze_cli.alerts.rules import config_rule_names

    if tenant is not None and _stored_rule_tenant(services, name) != (True, tenant):
        raise NotFoundError(f"no stored rule named {name}", field="name", value=name)
    if name in config_rule_names(services.config()):
        raise ConflictError(
            f"rule {name} is defined in the config: remove it there", field="name", value=name
        )
    if not services.alert_store().delete_rule(name):
        raise NotFoundError(f"no stored rule named {name}", field="name", value=name)
    return RuleChange(name=name, action="deleted")


def history(
    services: Services,
    *,
    since: str | None = None,
    rule: str | None = None,
    tenant: str | None = None,
    limit: int = 100,
) -> AlertList:
    """The alert history, newest first (default: the last 7 days); ``tenant`` keeps the
    alerts of rules scoped to that tenant (a tenant token's own, whatever it asked)."""
    if not 1 <= limit <= 10_000:
        raise UsageError("<limit> must be between 1 and 10000", field="limit", value=str(limit))
    start = _since(since, default_days=7)
    entries = services.alert_store().history(since=start, rule=rule, tenant=tenant, limit=limit)
    return AlertList(since=start, alerts=[alert_view(entry) for entry in entries])


def ack(services: Services, alert_id: str, *, tenant: str | None = None) -> AckReport:
    """Mark an alert read; with ``tenant``, only an alert of a rule scoped to it."""
    store = services.alert_store()
    if tenant is not None:
        found = store.get_alert(alert_id)
        if found is None or found.scope_values.get("tenant") != tenant:
            raise NotFoundError(f"no alert {alert_id}", field="alert_id", value=alert_id)
    if not store.ack(alert_id, now=SYSTEM_CLOCK.now()):
        raise NotFoundError(f"no alert {alert_id}", field="alert_id", value=alert_id)
    entry = store.get_alert(alert_id)
    assert entry is not None and entry.acked_at is not None
    return AckReport(alert_id=alert_id, acked_at=entry.acked_at)


def send_test(services: Services, channel: str | None = None) -> AlertTestReport:
    """A clearly marked test alert on each configured channel (or just ``channel``)."""
    from huntaze_cli.alerts.channels import SENDERS
    from huntaze_cli.alerts.thresholds import send_test as send

    config = services.config()
    if channel is not None:
        if channel not in SENDERS:
            raise UsageError(
                f"<channel> {channel!r} is not a channel; use one of {', '.join(SENDERS)}",
                field="channel",
                value=channel,
            )
        channels = [channel]
    else:
        channels = list(config.alerts.channels)
        if not channels:
            raise UsageError(
                "no alert channel is configured; set [alerts] channels",
                hint='channels = ["email"] under [alerts], with email_to and smtp_host',
            )
    outcome = send(config, channels, now=SYSTEM_CLOCK.now())
    return AlertTestReport(
        ok=all(error is None for error in outcome.values()),
        channels={
            name: ChannelTest(status="sent" if error is None else "failed", error=error)
            for name, error in outcome.items()
        },
    )


def _check_channels(services: Services, channels: Sequence[str] | None) -> None:
    """Refuse a rule whose channels could not send: InputError naming the setting."""
    import os

    config = services.config().alerts
    for channel in config.channels if channels is None else channels:
        missing: str | None = None
        if channel in ("email", "ses") and not config.email_to:
            missing = "alerts.email_to is empty"
        elif channel == "slack":
            name = config.slack_webhook_url_env
            if not name:
                missing = "alerts.slack_webhook_url_env is not set"
            elif not os.environ.get(name, "").strip():
                missing = f"alerts.slack_webhook_url_env: environment variable {name} is not set"
        elif channel == "sns" and not config.sns_topic_arn:
            missing = "alerts.sns_topic_arn is not set"
        elif channel == "webhook":
            name = config.alert_webhook_secret_env
            if not config.alert_webhook_url:
                missing = "alerts.alert_webhook_url is not set"
            elif not name or not os.environ.get(name, "").strip():
                missing = f"alerts.alert_webhook_secret_env: environment variable {name} is not set"
        if missing is not None:
            raise InputError(
                f"channels: the {channel} channel cannot send: {missing}",
                field="channels",
                value=channel,
            )


def alert_view(entry: AlertEntry) -> AlertView:
    return AlertView(
        alert_id=entry.alert_id,
        rule=entry.rule,
        kind=entry.kind,
        scope=entry.scope_values,
        period=entry.period,
        period_label=entry.period_label,
        period_start=entry.period_start,
        level_pct=entry.level_pct,
        limit_usd=nano_to_usd(entry.limit_nano),
        limit_nano=entry.limit_nano,
        observed_usd=nano_to_usd(entry.observed_nano),
        observed_nano=entry.observed_nano,
        channels={
            name: AlertChannelState(
                status=claim.status,
                error=claim.error,
                attempts=claim.attempts,
                updated_at=claim.updated_at,
            )
            for name, claim in sorted(entry.channels.items())
        },
        created_at=entry.created_at,
        acked_at=entry.acked_at,
    )


def _since(value: str | None, *, default_days: int) -> datetime:
    if value is None:
        return SYSTEM_CLOCK.now() - timedelta(days=default_days)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise UsageError(
            f"<since> {value!r} is not a date or ISO-8601 time", field="since", value=value
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
