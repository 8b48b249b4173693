"""Slack, SNS and alert-webhook channels against real receivers: a recording HTTP server
on loopback (Slack, webhook) and moto's SNS with an SQS subscription read back."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from huntaze_cli.alerts.channels.slack import send_slack, slack_payload
from huntaze_cli.alerts.channels.sns import send_sns, sns_subject
from huntaze_cli.alerts.channels.webhook import send_webhook
from huntaze_cli.alerts.notice import Alert, Notice
from huntaze_cli.config import AlertsConfig
from huntaze_cli.errors import AlertError
from huntaze_testing.receiver import Receiver, Reply, running_receiver

NOW = datetime(2026, 12, 3, 9, 30, tzinfo=UTC)
SECRET = "alert-hook-secret-Zq81"


def alert(n: int = 1, **overrides: object) -> Alert:
    data: dict[str, object] = {
        "alert_id": f"alr-{n}",
        "rule": "agency_a-daily",
        "kind": "spend",
        "scope": {"tenant": "agency_a"},
        "period": "day",
        "period_label": "2026-12-03",
        "period_start": datetime(2026, 12, 3, tzinfo=UTC),
        "level_pct": 80,
        "limit_nano": 20_000_000_000,
        "observed_nano": 16_500_000_123,
        "created_at": NOW,
        "contributors": [
            ("account creator_1", 9_000_000_000),
            ("account <b>&co", 5_000_000_000),
            ("model gpt-4o", 2_000_000_000),
            ("model gpt-4o-mini", 500_000_123),
        ],
    }
    data.update(overrides)
    return Alert(**data)  # type: ignore[arg-type]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as server:
        yield server


def test_slack_posts_block_kit_with_rule_scope_spend_and_top_three(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLACK_URL", receiver.url)
    config = AlertsConfig(slack_webhook_url_env="SLACK_URL")
    notice = Notice([alert()], dashboard_url="https://huntaze.example.com/dashboard")
    send_slack(config, notice)
    (got,) = receiver.received
    body = json.loads(got.body)
    assert body["text"].startswith("[huntaze] agency_a-daily (tenant=agency_a) reached 80%")
    text = json.dumps(body["blocks"])
    assert "$16.50 of $20.00" in text
    assert "tenant=agency_a" in text
    # Top three contributors, user data escaped for Slack's mrkdwn; the fourth is left out.
    assert "account creator_1 $9.00" in text and "&lt;b&gt;&amp;co" in text
    assert "gpt-4o-mini" not in text
    assert body["blocks"][-1]["elements"][0]["url"] == "https://huntaze.example.com/dashboard"


def test_slack_retries_a_5xx_once_then_fails_without_showing_the_url(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLACK_URL", receiver.url)
    receiver.answer(Reply(status=500, body=b"oops"), Reply(status=503, body=b"down"))
    with pytest.raises(AlertError) as caught:
        send_slack(AlertsConfig(slack_webhook_url_env="SLACK_URL"), Notice([alert()]))
    assert len(receiver.received) == 2
    assert "HTTP 503" in caught.value.message
    assert "127.0.0.1" not in caught.value.message and "hooks" not in caught.value.message


def test_slack_short_retry_after_is_honoured_a_long_one_is_left_to_the_next_run(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLACK_URL", receiver.url)
    config = AlertsConfig(slack_webhook_url_env="SLACK_URL")
    receiver.answer(Reply(status=429, headers={"Retry-After": "0"}), Reply(status=200))
    send_slack(config, Notice([alert()]))
    assert len(receiver.received) == 2
    receiver.answer(Reply(status=429, headers={"Retry-After": "3600"}))
    with pytest.raises(AlertError, match="wait 3600 s"):
        send_slack(config, Notice([alert()]))
    assert len(receiver.received) == 3  # no second try inside this run


def test_slack_with_its_url_variable_unset_names_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(AlertError, match="SLACK_URL"):
        send_slack(AlertsConfig(slack_webhook_url_env="SLACK_URL"), Notice([alert()]))


def test_slack_payload_of_a_storm_is_cut_and_says_how_many_more() -> None:
    payload = slack_payload(Notice([alert(n) for n in range(30)], suppressed=[alert(99)]))
    assert len(payload["blocks"]) <= 50
    text = json.dumps(payload)
    assert "10 more alerts" in text and "1 more alert(s) held back" in text


def test_webhook_signs_each_alert_with_its_id_as_idempotency_key(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    config = AlertsConfig(alert_webhook_url=receiver.url, alert_webhook_secret_env="HOOK_SECRET")
    send_webhook(config, Notice([alert(1), alert(2, level_pct=100)], suppressed=[alert(3)]))
    first, second = receiver.received
    for got in (first, second):
        expected = hmac.new(SECRET.encode(), got.body, hashlib.sha256).hexdigest()
        assert got.headers["X-Huntaze-Signature"] == f"sha256={expected}"
    # The worst news first; held-back alerts ride along with it.
    assert first.headers["Idempotency-Key"] == "alr-2"
    document = json.loads(first.body)
    assert document["level_pct"] == 100 and document["observed_nano"] == 16_500_000_123
    assert [held["alert_id"] for held in document["suppressed"]] == ["alr-3"]
    assert json.loads(second.body)["alert_id"] == "alr-1"


def test_webhook_failure_names_status_and_wait_but_no_secret_or_path(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    config = AlertsConfig(alert_webhook_url=receiver.url, alert_webhook_secret_env="HOOK_SECRET")
    receiver.answer(Reply(status=429, headers={"Retry-After": "120"}, body=SECRET.encode()))
    with pytest.raises(AlertError) as caught:
        send_webhook(config, Notice([alert()]))
    message = caught.value.message
    assert "HTTP 429" in message and "120 s" in message
    assert SECRET not in message and "/hooks" not in message


def test_sns_publishes_subject_and_json_to_a_subscribed_queue(moto_server: str) -> None:
    import boto3

    sns = boto3.client("sns", endpoint_url=moto_server, region_name="us-east-1")
    sqs = boto3.client("sqs", endpoint_url=moto_server, region_name="us-east-1")
    topic = sns.create_topic(Name="huntaze-alerts")["TopicArn"]
    queue_url = sqs.create_queue(QueueName="alerts-inbox")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    config = AlertsConfig(sns_topic_arn=topic, sns_endpoint_url=moto_server)
    send_sns(config, Notice([alert(rule="ünïcode-rule\nx")]))
    (message,) = sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=1)["Messages"]
    envelope = json.loads(message["Body"])
    assert envelope["Subject"].startswith("[huntaze] ?n?code-rule x")
    assert len(envelope["Subject"]) <= 100
    document = json.loads(envelope["Message"])
    assert document["alerts"][0]["alert_id"] == "alr-1"
    assert document["alerts"][0]["observed_usd"] == 16.500000


def test_sns_to_a_missing_topic_fails_naming_the_topic(moto_server: str) -> None:
    arn = "arn:aws:sns:us-east-1:123456789012:nope"
    config = AlertsConfig(sns_topic_arn=arn, sns_endpoint_url=moto_server)
    with pytest.raises(AlertError, match="nope"):
        send_sns(config, Notice([alert()]))


def test_sns_subject_is_ascii_one_line_and_short() -> None:
    subject = sns_subject("é" * 50 + "\n" + "x" * 200)
    assert len(subject) == 100 and subject.isascii() and "\n" not in subject
