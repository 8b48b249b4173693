"""`costs report` and GET /api/v2/costs/report: JSON, CSV with exact decimals and a PDF
whose text holds the JSON's totals."""

from __future__ import annotations

import csv
import io
import os
import shutil
import subprocess
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest
from pypdf import PdfReader

from huntaze_cli.money import format_usd, usd_to_nano
from tests.costs.history import record
from tests.helpers import make_event, run
from tests.reports.ledger import at, month_starts, two_months
from tests.server.conftest import Served


def _range() -> list[str]:
    this, _ = month_starts()
    return ["--since", this.isoformat(), "--until", (this.replace(day=28)).isoformat()]


def _json() -> dict:
    result = run("costs", "report", *_range(), "--json")
    assert result.exit_code == 0, result.stderr
    return result.json()


def pdf_text(data: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)


def test_json_holds_the_sections_and_the_previous_period() -> None:
    two_months()
    report = _json()
    assert report["total"]["cost_nano"] == 3_550_000_000
    assert report["total"]["requests"] == 5 and report["unpriced_requests"] == 1
    assert report["days"] == 28 and len(report["daily"]) == 28
    assert sum(day["cost_nano"] for day in report["daily"]) == report["total"]["cost_nano"]
    first = report["daily"][0]
    assert first["providers"]["azure"]["cost_nano"] == 3_300_000_000
    assert set(report["breakdowns"]) == {"provider", "model", "tenant", "campaign"}
    for section in report["breakdowns"].values():
        assert section["total"] == report["total"]
    campaigns = {r["campaign"] for r in report["breakdowns"]["campaign"]["rows"]}
    assert "Été 🎉 naïve" in campaigns
    comparison = report["comparison"]
    assert comparison["b_until"] == report["since"]
    assert comparison["total"]["a_cost_nano"] == 3_550_000_000
    # the 28 days before the 1st of this month: last month's events from day 3 on
    assert comparison["total"]["b_cost_nano"] in (2_123_456_789, 1_123_456_789, 0)


def test_csv_has_exact_decimals_and_the_json_totals(tmp_path: Path) -> None:
    two_months()
    out = tmp_path / "r.csv"
    result = run("costs", "report", *_range(), "--csv", str(out))
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    rows = list(csv.DictReader(out.read_text().splitlines()))
    report = _json()
    total = next(r for r in rows if r["section"] == "total")
    assert int(total["cost_nano"]) == report["total"]["cost_nano"]
    for row in rows:
        if row["cost_usd"]:
            assert usd_to_nano(Decimal(row["cost_usd"])) == int(row["cost_nano"])
    for section in ("day", "provider", "model", "tenant", "campaign"):
        assert sum(int(r["cost_nano"]) for r in rows if r["section"] == section) == int(
            total["cost_nano"]
        )
    previous = next(r for r in rows if r["section"] == "previous_total")
    assert (
        usd_to_nano(Decimal(previous["previous_cost_usd"]))
        == (report["comparison"]["total"]["b_cost_nano"])
    )


def test_pdf_text_holds_the_json_totals_and_pages_render(tmp_path: Path) -> None:
    two_months()
    out = tmp_path / "r.pdf"
    result = run("costs", "report", *_range(), "--pdf", str(out), "--json")
    assert result.exit_code == 0, result.stderr
    report = result.json()
    data = out.read_bytes()
    assert data.startswith(b"%PDF")
    text = pdf_text(data)
    assert format_usd(report["total"]["cost_nano"]) in text
    assert format_usd(report["comparison"]["total"]["b_cost_nano"]) in text
    for name in ("azure", "openai", "agency_a", "t-b", "gpt-4o"):
        assert name in text
    assert "Unpriced requests" in text
    pdftoppm = shutil.which("pdftoppm")
    if pdftoppm is None:
        if os.environ.get("CI"):
            pytest.fail("pdftoppm is missing: .ci/run installs poppler-utils")
        pytest.skip("pdftoppm (poppler-utils) is not installed")
    done = subprocess.run(
        [pdftoppm, "-png", "-r", "40", str(out), str(tmp_path / "page")],
        capture_output=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == b""
    assert sorted(tmp_path.glob("page*.png"))


def test_http_report_in_every_format(serve: Callable[..., Served], tmp_path: Path) -> None:
    two_months()
    client = serve(worker=False).client()
    this, _ = month_starts()
    params = {"since": this.isoformat(), "until": this.replace(day=28).isoformat()}
    body = client.get("/api/v2/costs/report", params=params)
    assert body.status_code == 200, body.text
    cli = _json()
    http = body.json()
    http.pop("generated_at"), cli.pop("generated_at")
    assert http == cli
    got = client.get("/api/v2/costs/report", params={**params, "format": "csv"})
    assert got.headers["content-type"].startswith("text/csv")
    assert "attachment" in got.headers["content-disposition"]
    run("costs", "report", *_range(), "--csv", str(tmp_path / "cli.csv"))
    assert got.content == (tmp_path / "cli.csv").read_bytes()
    pdf = client.get("/api/v2/costs/report", params={**params, "format": "pdf"})
    assert pdf.headers["content-type"] == "application/pdf"
    assert format_usd(http["total"]["cost_nano"]) in pdf_text(pdf.content)
    bad = client.get("/api/v2/costs/report", params={"format": "docx"})
    assert bad.status_code == 422 and "format" in bad.text


def test_bad_input_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    result = run("costs", "report", "--since", "soon", "--pdf", str(tmp_path / "x.pdf"))
    assert result.exit_code == 2 and "--since" in result.stderr
    assert not (tmp_path / "x.pdf").exists()
    result = run("costs", "report", "--csv", str(tmp_path / "missing" / "x.csv"))
    assert result.exit_code == 2 and "--csv" in result.stderr


def test_pdf_prints_names_in_other_scripts_as_themselves(tmp_path: Path) -> None:
    """The embedded DejaVu Sans covers Latin Extended, Greek and Cyrillic: such names read
    back from the PDF's text exactly; characters it lacks (CJK, most emoji) print as "?"."""
    this, _ = month_starts()
    names = {
        "campaign_id": "Łódź-Čeština-Ærø",
        "tenant": "Ελληνικά-τ",
        "model": "модель-кириллица",
    }
    record([make_event(40, ts=at(this, 4), provider="azure", cost_nano=7_000_000, **names),
            make_event(41, ts=at(this, 5), provider="azure", cost_nano=1_000_000,
                       campaign_id="夏の🎉セール")])  # fmt: skip
    out = tmp_path / "r.pdf"
    result = run("costs", "report", *_range(), "--pdf", str(out))
    assert result.exit_code == 0, result.stderr
    text = pdf_text(out.read_bytes())
    for name in names.values():
        assert name in text
    assert "?????" in text and "夏" not in text
