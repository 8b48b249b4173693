"""OpenAI's chat completion wire format: reading a non-streaming answer's body.

One reader for both paths: campaigns (``providers``, the SDK's request path with the
answer as bytes) and the gateway's pass-through (``passthrough``, which forwards the body
as it came and only needs its usage and served model).
"""

from __future__ import annotations

import json
from typing import Any

from huntaze_cli.llm.types import Completion, ProviderFailure, Usage
from huntaze_cli.text import one_line

# How long a failure's message may be, on every path (one line, secrets scrubbed).
MESSAGE_LIMIT = 300


def parse_completion(
    raw: bytes | str, *, deployment: str | None, keep_raw: bool = False
) -> Completion:
    """The Completion of a non-streaming answer's body; ProviderFailure when there is none.

    The body is read here, not by the SDK's models: the SDK builds them without checking
    (and returns the raw text when the content type is not JSON), and building them costs
    more CPU than the rest of an attempt. A body that is not a completion, or has no usage,
    is ``malformed``; an answer withheld by the content filter is ``content_filter`` (its
    tokens were billed, so its usage is kept when it has one). ``keep_raw``: the gateway's
    pass-through, which forwards the body as it came and needs no text.
    """
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise ProviderFailure(
            "malformed", f"unreadable completion: {one_line(exc, MESSAGE_LIMIT)}"
        ) from None
    if not isinstance(doc, dict):
        raise ProviderFailure("malformed", "2xx response that is not a JSON object")
    choices = doc.get("choices")
    first = choices[0] if isinstance(choices, list) and choices else None
    if isinstance(first, dict) and first.get("finish_reason") == "content_filter":
        raise ProviderFailure(
            "content_filter",
            "the output was withheld by the content filter",
            usage=_usage_if_any(doc.get("usage")),
        )
    usage = read_usage(doc.get("usage"))
    if first is None:
        raise ProviderFailure("malformed", "2xx response with no choices", usage=usage)
    text = ""
    if not keep_raw:
        message = first.get("message") if isinstance(first, dict) else None
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, str):
            raise ProviderFailure("malformed", "2xx response with no message content", usage=usage)
        text = content
    served = doc.get("model")
    return Completion(
        text=text,
        usage=usage,
        deployment=deployment,
        response_model=served if isinstance(served, str) and served else None,
        raw=(raw.encode() if isinstance(raw, str) else raw) if keep_raw else None,
    )


def _usage_if_any(raw: Any) -> Usage | None:
    try:
        return read_usage(raw)
    except ProviderFailure:
        return None


def read_usage(raw: Any) -> Usage:
    """The Usage of an OpenAI ``usage`` object; ``malformed`` when absent or unreadable."""
    if not isinstance(raw, dict):
        # Without usage the attempt cannot be priced; a real endpoint always reports it.
        raise ProviderFailure("malformed", "2xx response with no usage")
    details = raw.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    return Usage(
        input_tokens=_count(raw.get("prompt_tokens")),
        cached_input_tokens=0 if cached is None else _count(cached),
        output_tokens=_count(raw.get("completion_tokens")),
    )


def _count(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise ProviderFailure("malformed", f"2xx response with unreadable usage: {value!r:.40}")
