# ruff: noqa: RUF001
"""Dry-run token estimates hold for any script: no tokenizer, a bound by character class."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from huntaze_cli.llm.tokens import estimate_text_tokens, max_input_tokens
from huntaze_cli.llm.types import GenerationRequest, Message
from tests.helpers import run

CHINESE = "请为我们最忠实的粉丝写一段温暖的感谢信，感谢他们一直以来的支持与陪伴，我们非常感激。"


def _request(text: str) -> GenerationRequest:
    return GenerationRequest(request_id="r", model="m", messages=[Message("user", text)])


@pytest.mark.parametrize(
    ("text", "at_least"),
    [
        # What OpenAI's o200k/cl100k encodings give, or less: one token per CJK
        # character at most, a long run without spaces several characters per token.
        (CHINESE, 30),
        ("x" * 5_000_000, 1_250_000),
        ("Привет, как у тебя дела сегодня?", 8),
        ("🎉🎉🎉", 3),
    ],
)
def test_estimate_is_not_fooled_by_scripts_without_spaces(text: str, at_least: int) -> None:
    assert estimate_text_tokens(text) >= at_least
    assert estimate_text_tokens(text) <= len(text.encode())  # never above the hard bound


def test_english_estimate_stays_close() -> None:
    text = "Write a two-line thank-you to Alex, who loves cosplay."  # about 13 tokens
    assert 13 <= estimate_text_tokens(text) <= 26


def test_hard_bound_is_the_utf8_byte_count() -> None:
    assert max_input_tokens(_request(CHINESE)) == 3 + 4 + len(CHINESE.encode())


def test_dry_run_of_a_chinese_prompt_and_a_huge_field(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    big = "y" * 1_000_000
    path.write_text(
        json.dumps(
            {
                "name": "zh",
                "account": "a",
                "prompt": CHINESE + " {blob}",
                "recipients": [{"id": "f1", "blob": "ok"}, {"id": "f2", "blob": big}],
            },
            ensure_ascii=False,
        )
    )
    result = run("send-campaign", str(path), "--dry-run", "--json")
    assert result.exit_code == 0, result.stderr
    sim = result.json()["providers"]["simulated"]
    assert sim["input_tokens"] >= 2 * 30 + 250_000
    assert sim["input_tokens_max"] >= 2 * len(CHINESE.encode()) + 1_000_000
    assert sim["input_tokens"] <= sim["input_tokens_max"]
