"""What every sink shares: the payload bytes, the choice of sink, a light import."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from huntaze_cli.config import load_config
from huntaze_cli.sinks import PAYLOAD_FIELDS, PermanentDelivery, encode_payload, open_sink
from huntaze_cli.sinks.outbox import OutboxSink

PAYLOAD = {
    "sent_at": "2025-03-01T12:00:00+02:00",
    "text": 'Hey "you"\n\u2028ça va?',
    "recipient_id": "fan-1",
    "account": "creator_1",
    "campaign_id": "cmp-1",
    "idempotency_key": "cmp-1:fan-1",
}


def test_encode_payload_is_compact_ordered_utf8_one_line() -> None:
    key, body = encode_payload({**PAYLOAD, "internal": "dropped"})
    assert key == "cmp-1:fan-1"
    assert body.startswith(b'{"idempotency_key":"cmp-1:fan-1",')
    assert b"\n" not in body
    assert "ça va".encode() in body
    decoded = json.loads(body)
    assert list(decoded) == list(PAYLOAD_FIELDS)
    assert decoded == PAYLOAD


@pytest.mark.parametrize(
    "broken",
    [
        {k: v for k, v in PAYLOAD.items() if k != "text"},
        {**PAYLOAD, "idempotency_key": ""},
        {**PAYLOAD, "idempotency_key": None},
        {**PAYLOAD, "text": object()},
    ],
)
def test_unencodable_payloads_are_permanent(broken: dict[str, object]) -> None:
    with pytest.raises(PermanentDelivery):
        encode_payload(broken)


def test_open_sink_defaults_to_the_outbox_in_the_data_dir(tmp_path: Path) -> None:
    config = load_config()
    sink = open_sink(config)
    assert isinstance(sink, OutboxSink)
    assert sink.path == config.outbox_path
    assert sink.path.is_relative_to(tmp_path)  # the isolated XDG data dir
    assert sink.deliver(dict(PAYLOAD)) is True
    sink.check()
    sink.close()


def test_open_sink_honours_outbox_path(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere" / "out.jsonl"
    sink = open_sink(load_config(overrides={"delivery.outbox_path": str(target)}))
    assert isinstance(sink, OutboxSink)
    assert sink.deliver(dict(PAYLOAD)) is True
    sink.close()
    assert json.loads(target.read_text(encoding="utf-8")) == PAYLOAD


def test_importing_sinks_pulls_in_no_http_or_aws_library() -> None:
    code = (
        "import sys, huntaze_cli.sinks, huntaze_cli.sinks.outbox; "
        "print(sorted(m for m in ('httpx', 'boto3', 'botocore', 'pydantic') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
