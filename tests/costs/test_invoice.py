"""Invoices: exact to the nano-dollar in JSON, CSV and PDF, by CLI, HTTP and the billing run.

The expected figures are summed here from the raw events recorded, independently of the
rollups the invoice reads; the PDF's text is read back with pypdf and its amounts compared
with the JSON's.
"""

from __future__ import annotations

import csv
import io
import re
from contextlib import closing
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any
from uuid import uuid4
from zoneinfo import ZoneInfo

import pytest

from huntaze_cli.config import Config, default_config_path
from huntaze_cli.costs.invoice import invoice_csv, invoice_pdf, month_bounds
from huntaze_cli.models import CostEvent
from huntaze_cli.money import format_usd
from huntaze_cli.services import Services
from huntaze_cli.services.invoices import bill_closed_month, invoice
from tests.alerts.test_thresholds import SMTPServer, free_port
from tests.helpers import run

TZ = "Europe/Paris"
# Raw events of last month are recorded after the fact here: keep them long enough.
CONFIG = f"""
[ledger]
retention_days = 90

[thresholds]
timezone = "{TZ}"

[tenants.agency_a]
markup_pct = 12.5

[tenants.agency_b]
markup_pct = 20
"""


def month_before(now: datetime, tz: ZoneInfo) -> str:
    local = now.astimezone(tz)
    year, month = (local.year - 1, 12) if local.month == 1 else (local.year, local.month - 1)
    return f"{year:04d}-{month:02d}"


def event(ts: datetime, tenant: str, provider: str, model: str, **extra: Any) -> CostEvent:
    data: dict[str, Any] = {
        "attempt_id": uuid4().hex,
        "request_id": uuid4().hex,
        "ts": ts,
        "provider": provider,
        "model": model,
        "tenant": tenant,
        "input_tokens": 1000,
        "cached_input_tokens": 200,
        "output_tokens": 80,
        "cost_nano": 1_234_567,
        **extra,
    }
    return CostEvent.model_validate(data)


@pytest.fixture
def billed(isolated_dirs: Path) -> dict[str, Any]:
    """A config with two tenants and a ledger with last month's (and other) events."""
    path = default_config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(CONFIG)
    services = Services()
    tz = ZoneInfo(TZ)
    now = datetime.now(UTC)
    month = month_before(now, tz)
    start, end = month_bounds(month, tz)
    events = [
        event(start + timedelta(minutes=10), "agency_a", "azure", "gpt-4o-mini", cost_nano=7),
        event(start + timedelta(days=3), "agency_a", "openai", "gpt-4o", cost_nano=123_456_789),
        event(start + timedelta(days=4), "agency_a", "openai", "gpt-4o", cost_nano=1),
        event(end - timedelta(minutes=1), "agency_a", "azure", "gpt-4o-mini", cost_nano=333),
        event(
            start + timedelta(days=5), "agency_a", "openai", "mystery", cost_nano=0, priced=False
        ),
        event(start + timedelta(days=2), "agency_b", "openai", "gpt-4o", cost_nano=999_999_999),
        # Outside the month (in Paris time), though inside it in UTC for the first one.
        event(start - timedelta(minutes=10), "agency_a", "azure", "gpt-4o-mini", cost_nano=10**9),
        event(end + timedelta(minutes=1), "agency_a", "azure", "gpt-4o-mini", cost_nano=10**9),
    ]
    assert services.ledger().record(events).stored == len(events)
    inside = [e for e in events if e.tenant == "agency_a" and start <= e.ts < end]
    services.close()
    return {"month": month, "inside": inside, "now": now}


def expected_lines(events: list[CostEvent]) -> dict[tuple[str, str], dict[str, int]]:
    out: dict[tuple[str, str], dict[str, int]] = {}
    for e in events:
        line = out.setdefault(
            (e.provider, e.model),
            {"requests": 0, "input_tokens": 0, "cached_input_tokens": 0, "output_tokens": 0,
             "cost_nano": 0},
        )  # fmt: skip
        line["requests"] += 1
        line["input_tokens"] += e.input_tokens
        line["cached_input_tokens"] += e.cached_input_tokens
        line["output_tokens"] += e.output_tokens
        line["cost_nano"] += e.cost_nano
    return out


def test_the_invoice_is_exact_to_the_nano_dollar(billed: dict[str, Any]) -> None:
    with closing(Services()) as services:
        bill = invoice(services, tenant="agency_a", month=billed["month"])
    got = {
        (line.provider, line.model): {
            k: getattr(line, k)
            for k in (
                "requests",
                "input_tokens",
                "cached_input_tokens",
                "output_tokens",
                "cost_nano",
            )
        }
        for line in bill.lines
    }
    assert got == expected_lines(billed["inside"])
    subtotal = sum(e.cost_nano for e in billed["inside"])
    assert bill.subtotal_nano == subtotal == 123_457_130
    markup = int((Decimal(subtotal) * Decimal("12.5") / 100).to_integral_value(ROUND_HALF_EVEN))
    assert (bill.markup_nano, bill.total_nano) == (markup, subtotal + markup)
    assert bill.markup_nano == 15_432_141  # 15,432,141.25 rounded half-even
    assert bill.total_usd == 0.138889 and bill.markup_pct == 12.5
    assert bill.unpriced_requests == 1 and bill.timezone == TZ and bill.closed
    assert [line.cost_nano for line in bill.lines] == sorted(
        (line.cost_nano for line in bill.lines), reverse=True
    )


def test_csv_and_pdf_carry_the_json_figures(billed: dict[str, Any]) -> None:
    with closing(Services()) as services:
        bill = invoice(services, tenant="agency_a", month=billed["month"])
    rows = list(csv.DictReader(io.StringIO(invoice_csv(bill))))
    items = [r for r in rows if r["line"] == "item"]
    assert sum(Decimal(r["amount_usd"]) for r in items) == Decimal(bill.subtotal_nano) / 10**9
    by_line = {r["line"]: r for r in rows}
    for name, nano in (("subtotal", bill.subtotal_nano), ("markup", bill.markup_nano),
                       ("total", bill.total_nano)):  # fmt: skip
        assert int(by_line[name]["amount_nano"]) == nano
        assert Decimal(by_line[name]["amount_usd"]) * 10**9 == nano
    assert by_line["markup"]["model"] == "12.5%"
    assert by_line["unpriced_requests"]["requests"] == "1"

    from pypdf import PdfReader

    text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(invoice_pdf(bill))).pages)
    assert "agency_a" in text and billed["month"] in text

    def amount_after(label: str) -> int:
        found = re.search(re.escape(label) + r"\s*\$([\d,]+\.\d{9})", text)
        assert found, (label, text)
        return int(Decimal(found.group(1).replace(",", "")) * 10**9)

    assert amount_after("Subtotal") == bill.subtotal_nano
    assert amount_after("Markup 12.5%") == bill.markup_nano
    assert amount_after("Total") == bill.total_nano
    assert format_usd(bill.total_nano, 9) in text


def test_the_cli_writes_one_tenant_or_all(billed: dict[str, Any], tmp_path: Path) -> None:
    month = billed["month"]
    one = run("costs", "invoice", "--tenant", "agency_a", "--month", month, "--json")
    assert one.exit_code == 0, one.stderr
    assert one.json()["total_nano"] == 123_457_130 + 15_432_141
    assert run("costs", "invoice", "--tenant", "agency_a", "--month", "last", "--json").json() == (
        one.json()
    )
    pdf = tmp_path / "a.pdf"
    wrote = run("costs", "invoice", "--tenant", "agency_a", "--month", month, "--format", "pdf",
                "-o", str(pdf))  # fmt: skip
    assert wrote.exit_code == 0 and pdf.read_bytes().startswith(b"%PDF")
    out = tmp_path / "invoices"
    every = run("costs", "invoice", "--all-tenants", "--month", "last", "-o", str(out), "--json")
    assert every.exit_code == 0, every.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(f"{t}-{month}.{f}" for t in ("agency_a", "agency_b")
                           for f in ("json", "csv", "pdf"))  # fmt: skip
    b_json = (out / f"agency_b-{month}.json").read_text()
    assert '"subtotal_nano":999999999' in b_json.replace(" ", "")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tenant", "agency_a", "--month", "2026-13"], "--month '2026-13': write YYYY-MM"),
        (["--tenant", "agency_a", "--month", "0001-01"], "--month '0001-01': write YYYY-MM"),
        (["--tenant", "agency_a", "--month", "2999-01"], "--month 2999-01 has not started"),
        (["--tenant", "nobody", "--month", "last"], "--tenant 'nobody' is not a configured"),
        (["--tenant", "agency_a", "--month", "last", "--format", "pdf"], "a PDF needs -o"),
        (["--tenant", "agency_a", "--month", "last", "--format", "xml"], "--format 'xml'"),
        (["--month", "last"], "name one --tenant, or --all-tenants"),
    ],
)
def test_bad_input_is_a_one_line_error(
    billed: dict[str, Any], args: list[str], message: str
) -> None:
    result = run("costs", "invoice", *args)
    assert result.exit_code == 2
    first = result.stderr.strip().splitlines()[0]
    assert message in first, result.stderr


def test_serve_bills_the_closed_month_once_and_announces_it(billed: dict[str, Any]) -> None:
    smtp = SMTPServer(free_port())
    smtp.start(auth_require_tls=False)
    try:
        path = default_config_path()
        path.write_text(
            CONFIG + '\n[alerts]\nchannels = ["email"]\nemail_to = ["billing@example.com"]\n'
            f'smtp_host = "127.0.0.1"\nsmtp_port = {smtp.port}\n'
        )
        with closing(Services()) as services:
            first = bill_closed_month(services)
            second = bill_closed_month(services)
            config: Config = services.config()
    finally:
        smtp.stop()
    month = billed["month"]
    assert first.month == month and first.errors == []
    assert len(first.written) == 6 and second.written == [] and second.announced == []
    assert sorted(first.announced) == [f"agency_a {month} email", f"agency_b {month} email"]
    directory = config.data_dir / "invoices" / month
    a_json = (directory / f"agency_a-{month}.json").read_text()
    assert '"total_nano":138889271' in a_json.replace(" ", "")
    subjects = sorted(str(m["Subject"]) for m in smtp.messages)
    assert len(subjects) == 2 and all(f"invoice {month}" in s for s in subjects)
    assert any("tenant=agency_a" in s and "$0.14" in s for s in subjects)


BUCKET = "acme-invoices"
S3_CONFIG = CONFIG + f'\n[invoices]\ns3_bucket = "{BUCKET}"\ns3_prefix = "billing/"\n'


def _objects(s3: Any) -> dict[str, Any]:
    listed = s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])
    return {item["Key"]: s3.head_object(Bucket=BUCKET, Key=item["Key"]) for item in listed}


def test_the_billing_run_writes_to_s3_once_and_retries_a_failed_write(
    billed: dict[str, Any],
) -> None:
    """With [invoices] s3_bucket the closed month's invoices are S3 objects, written by
    one run only (the same claims as on disk), and a run that could not write leaves the
    work to the next one."""
    import boto3
    from moto import mock_aws

    default_config_path().write_text(S3_CONFIG)
    month = billed["month"]
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        # No bucket yet: the write fails, is reported, and nothing counts as done.
        with closing(Services()) as services:
            failed = bill_closed_month(services)
        assert failed.written == [] and len(failed.errors) == 2
        assert (
            f"cannot write s3://{BUCKET}/billing/{month}/agency_a-{month}.json"
            in (failed.errors[0])
        )
        s3.create_bucket(Bucket=BUCKET)
        # Two daemons (a restart, another host on the same alert store): one writes.
        with closing(Services()) as one, closing(Services()) as two:
            first = bill_closed_month(one)
            second = bill_closed_month(two)
            config: Config = one.config()
        objects = _objects(s3)
        a_json = s3.get_object(Bucket=BUCKET, Key=f"billing/{month}/agency_a-{month}.json")
        body = a_json["Body"].read().decode()
        pdf = s3.get_object(Bucket=BUCKET, Key=f"billing/{month}/agency_b-{month}.pdf")
        pdf_bytes = pdf["Body"].read()
    assert first.errors == [] and second.written == []
    want = {f"billing/{month}/{t}-{month}.{f}" for t in ("agency_a", "agency_b")
            for f in ("json", "csv", "pdf")}  # fmt: skip
    assert set(objects) == want
    assert sorted(first.written) == sorted(f"s3://{BUCKET}/{key}" for key in want)
    assert '"total_nano":138889271' in body.replace(" ", "")
    assert pdf_bytes.startswith(b"%PDF") and pdf["ContentType"] == "application/pdf"
    assert objects[f"billing/{month}/agency_a-{month}.csv"]["ContentType"] == "text/csv"
    # Nothing went to the data dir.
    assert not (config.data_dir / "invoices").exists()


def test_the_cron_run_writes_to_s3_unless_given_a_directory(
    billed: dict[str, Any], tmp_path: Path
) -> None:
    import boto3
    from moto import mock_aws

    default_config_path().write_text(S3_CONFIG)
    month = billed["month"]
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        to_s3 = run("costs", "invoice", "--all-tenants", "--month", "last", "--format", "json",
                    "--json")  # fmt: skip
        assert to_s3.exit_code == 0, to_s3.stderr
        assert to_s3.json() == {
            "month": month,
            "files": [f"s3://{BUCKET}/billing/{month}/{t}-{month}.json"
                      for t in ("agency_a", "agency_b")],
        }  # fmt: skip
        assert len(_objects(s3)) == 2
        out = tmp_path / "here"
        local = run("costs", "invoice", "--all-tenants", "--month", "last", "-o", str(out))
        assert local.exit_code == 0, local.stderr
        assert len(list(out.iterdir())) == 6 and len(_objects(s3)) == 2


def test_a_bad_bucket_name_is_a_config_error_naming_the_key(billed: dict[str, Any]) -> None:
    default_config_path().write_text(CONFIG + '\n[invoices]\ns3_bucket = "Not_A/Bucket"\n')
    result = run("costs", "invoice", "--all-tenants", "--month", "last")
    assert result.exit_code == 2
    assert "invoices.s3_bucket" in result.stderr.strip().splitlines()[0], result.stderr
