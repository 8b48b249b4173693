"""The SNS channel: one ``Publish`` to ``[alerts] sns_topic_arn`` per notice.

Subject: the notice's one-line subject, cut to SNS's 100 characters and stripped of
anything SNS refuses there (it allows ASCII text without line breaks). Message: the
notice as JSON (``Notice.to_json``), so a subscribed queue, Lambda or email address gets
the figures in a form a program can read. boto3 is imported only when this channel sends,
through the one AWS client factory (short timeouts, one retry).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from huntaze_cli.alerts.notice import Notice
from huntaze_cli.errors import AlertError

if TYPE_CHECKING:
    from huntaze_cli.config import AlertsConfig

SUBJECT_CHARS = 100


def sns_subject(text: str) -> str:
    """``text`` as a valid SNS subject: printable ASCII, one line, at most 100 chars."""
    ascii_only = "".join(c if " " <= c <= "~" else "?" for c in " ".join(text.split()))
    if len(ascii_only) > SUBJECT_CHARS:
        ascii_only = ascii_only[: SUBJECT_CHARS - 3] + "..."
    return ascii_only or "huntaze alert"


def send_sns(config: AlertsConfig, notice: Notice) -> None:
    """Publish ``notice`` to the topic; AlertError naming the topic and what failed."""
    topic = config.sns_topic_arn
    if not topic:
        raise AlertError(
            "sns alert not sent: alerts.sns_topic_arn is not set",
            hint='set sns_topic_arn = "arn:aws:sns:REGION:ACCOUNT:NAME" under [alerts]',
        )
    from botocore.exceptions import BotoCoreError, ClientError

    from huntaze_cli.storage.aws.client import make_client

    region = config.sns_region or _region_of(topic)
    try:
        client = make_client(
            "sns",
            region=region,
            endpoint_url=config.sns_endpoint_url,
            connect_timeout=min(5.0, config.http_timeout_s),
            read_timeout=config.http_timeout_s,
        )
        client.publish(
            TopicArn=topic,
            Subject=sns_subject(notice.subject()),
            Message=json.dumps(notice.to_json(), ensure_ascii=False),
            MessageAttributes=_attributes(notice),
        )
    except ClientError as exc:
        error: dict[str, Any] = exc.response.get("Error", {})
        detail = f"{error.get('Code', 'error')}: {error.get('Message', '')}".rstrip(": ")
        raise AlertError(f"sns alert to {topic} failed: {' '.join(detail.split())}") from None
    except (BotoCoreError, ValueError) as exc:
        raise AlertError(f"sns alert to {topic} failed: {' '.join(str(exc).split())}") from None


def _attributes(notice: Notice) -> dict[str, Any]:
    head = notice.alerts[0]
    # Attributes let subscribers filter (e.g. only level 100, or one tenant).
    attributes = {
        "rule": head.rule,
        "kind": head.kind,
        "level_pct": str(head.level_pct),
    }
    if "tenant" in head.scope:
        attributes["tenant"] = head.scope["tenant"]
    return {k: {"DataType": "String", "StringValue": v} for k, v in attributes.items()}


def _region_of(arn: str) -> str | None:
    parts = arn.split(":")
    return parts[3] if len(parts) > 5 and parts[0] == "arn" and parts[3] else None
