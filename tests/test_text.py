"""Folding foreign text into our one-line errors, secrets masked."""

from __future__ import annotations

from huntaze_cli.text import MASK, one_line, scrub


def test_one_line_folds_every_kind_of_white_space() -> None:
    assert one_line("a\n  b\tc\r\n d ") == "a b c d"
    assert one_line(ValueError("bad\nvalue")) == "bad value"
    assert one_line("") == ""


def test_one_line_cuts_to_the_limit_and_says_so() -> None:
    assert one_line("short", 10) == "short"
    assert one_line("x" * 10, 10) == "x" * 10
    cut = one_line("y" * 50, 10)
    assert cut == "yyyyyyy..." and len(cut) == 10
    # A huge body is cut without folding all of it.
    assert one_line("z " * 1_000_000, 12) == "z z z z z..."


def test_scrub_masks_secrets_and_bearer_tokens_on_one_line() -> None:
    text = "auth failed for key sk-123456\nheader Authorization: Bearer tok-abc.def"
    out = scrub(text, ("sk-123456", None, ""))
    assert "sk-123456" not in out and "tok-abc.def" not in out
    assert out == f"auth failed for key {MASK} header Authorization: Bearer {MASK}"
    long = scrub("secret " * 100, ("secret",), limit=20)
    assert "secret" not in long and len(long) == 20
