"""Turning foreign text (exception messages, response bodies) into our one-line errors.

Every error huntaze shows is one line; text from a library or a server is folded to one
line with ``one_line``, and with ``scrub`` when it may echo a secret (an API key in an
SDK message, a webhook secret in a receiver's body, a bearer token in a header dump).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MASK = "********"
_BEARER = re.compile(r"(?i)(bearer\s+)\S+")
_CUT = "..."


def one_line(value: object, limit: int | None = None) -> str:
    """``str(value)`` with its white space folded to single spaces.

    With ``limit``, a longer result is cut to ``limit`` characters ending in "...";
    only the first few times ``limit`` characters are read, so a huge body costs little.
    """
    text = str(value)
    if limit is None:
        return " ".join(text.split())
    head = text[: limit * 4]
    folded = " ".join(head.split())
    if len(folded) <= limit and len(head) == len(text):
        return folded
    return folded[: max(limit - len(_CUT), 0)] + _CUT


def scrub(value: object, secrets: Iterable[str | None] = (), *, limit: int | None = None) -> str:
    """``one_line`` of ``value`` with each of ``secrets`` and any bearer token masked."""
    text = str(value)
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    return one_line(_BEARER.sub(r"\1" + MASK, text), limit)
