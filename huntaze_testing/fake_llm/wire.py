"""The OpenAI and Azure OpenAI wire formats the fake server speaks: bodies, errors, HTTP.

Everything here is pure: JSON error envelopes in each provider's real shape, the
``chat.completion`` body (serialized once per route and filled per request, so a response
costs a few string joins), request validation, and the bytes of an HTTP/1.1 response.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterable
from itertools import cycle, islice
from typing import Any, Final
from urllib.parse import parse_qs

KINDS: Final = ("openai", "azure")

_REASONS: Final[dict[int, str]] = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    409: "Conflict",
    413: "Payload Too Large",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}

_SAFE_FILTER: Final[dict[str, Any]] = {
    "hate": {"filtered": False, "severity": "safe"},
    "self_harm": {"filtered": False, "severity": "safe"},
    "sexual": {"filtered": False, "severity": "safe"},
    "violence": {"filtered": False, "severity": "safe"},
}

_CONTENT_FILTER_MESSAGE: Final = (
    "The response was filtered due to the prompt triggering Azure OpenAI's content management "
    "policy. Please modify your prompt and retry. To learn more about our content filtering "
    "policies please read our documentation: https://go.microsoft.com/fwlink/?linkid=2198766"
)


def dumps(obj: Any) -> bytes:
    """Compact JSON bytes (what every response body is made of)."""
    return json.dumps(obj, separators=(",", ":")).encode()


def openai_error(message: str, type_: str | None, code: str | None, param: str | None) -> bytes:
    """The OpenAI error envelope: ``{"error": {message, type, param, code}}``."""
    return dumps({"error": {"message": message, "type": type_, "param": param, "code": code}})


def azure_error(code: str, message: str) -> bytes:
    """The Azure gateway error envelope: ``{"error": {code, message}}``."""
    return dumps({"error": {"code": code, "message": message}})


def _content_filter_body() -> bytes:
    """Azure's real 400 body for a prompt blocked by the content filter."""
    result = dict(_SAFE_FILTER)
    result["sexual"] = {"filtered": True, "severity": "medium"}
    result["jailbreak"] = {"filtered": False, "detected": False}
    return dumps(
        {
            "error": {
                "message": _CONTENT_FILTER_MESSAGE,
                "type": None,
                "param": "prompt",
                "code": "content_filter",
                "status": 400,
                "innererror": {
                    "code": "ResponsibleAIPolicyViolation",
                    "content_filter_result": result,
                },
            }
        }
    )


def error_bodies(name: str, status: int) -> tuple[bytes, bytes]:
    """The (OpenAI, Azure) error bodies for an outcome, in each provider's real shape."""
    if name == "content_filter":
        body = _content_filter_body()
        return body, body
    if status == 429:
        return (
            openai_error(
                "Rate limit reached for requests in organization org-fake on requests per min "
                "(RPM): Limit 500, Used 500, Requested 1. Please try again in 120ms. Visit "
                "https://platform.openai.com/account/rate-limits to learn more.",
                "requests",
                "rate_limit_exceeded",
                None,
            ),
            azure_error(
                "429",
                "Requests to the ChatCompletions_Create Operation under Azure OpenAI API "
                "version 2024-10-21 have exceeded token rate limit of your current OpenAI S0 "
                "pricing tier. Please retry after 1 second. Please go here: "
                "https://aka.ms/oai/quotaincrease if you would like to further increase the "
                "default rate limit.",
            ),
        )
    if status == 401:
        return (
            openai_error(
                "Incorrect API key provided. You can find your API key at "
                "https://platform.openai.com/account/api-keys.",
                "invalid_request_error",
                "invalid_api_key",
                None,
            ),
            azure_error(
                "401",
                "Access denied due to invalid subscription key or wrong API endpoint. Make sure "
                "to provide a valid key for an active subscription and use a correct regional "
                "API endpoint for your resource.",
            ),
        )
    if status == 400:
        body = openai_error(
            "Invalid value for 'messages': the request could not be processed.",
            "invalid_request_error",
            None,
            "messages",
        )
        return body, body
    if status == 403:
        return (
            openai_error(
                "You are not allowed to sample from this model",
                "invalid_request_error",
                "model_not_allowed",
                None,
            ),
            azure_error(
                "403",
                "Access denied due to Virtual Network/Firewall rules.",
            ),
        )
    if status == 503:
        return (
            openai_error("The server is overloaded or not ready yet.", "server_error", None, None),
            azure_error(
                "ServiceUnavailable",
                "The service is temporarily unable to process your request. Please try again "
                "later.",
            ),
        )
    if status >= 500:
        body = openai_error(
            "The server had an error while processing your request. Sorry about that!",
            "server_error",
            None,
            None,
        )
        return body, body
    body = openai_error(
        f"Request failed with status {status}.", "invalid_request_error", None, None
    )
    return body, body


BAD_HTTP: Final = openai_error("Malformed HTTP request.", "invalid_request_error", None, None)


def _content_text(content: Any) -> str:
    """The text of a message's ``content`` (a string or a list of content parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def missing_key_body(kind: str) -> bytes:
    """The provider's 401 body when no key was sent at all."""
    if kind == "azure":
        return azure_error(
            "401",
            "Access denied due to missing subscription key. Make sure to include subscription "
            "key when making requests to an API.",
        )
    return openai_error(
        "You didn't provide an API key. You need to provide your API key in an Authorization "
        "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
        "invalid_request_error",
        None,
        None,
    )


def validate(kind: str, body: Any) -> str | None:
    """A 400 message if the chat-completions body is unusable, else None."""
    if not isinstance(body, dict):
        return "The request body must be a JSON object."
    if kind == "openai" and not isinstance(body.get("model"), str):
        return "you must provide a model parameter"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "Missing required parameter: 'messages'."
    if not all(isinstance(m, dict) and isinstance(m.get("role"), str) for m in messages):
        return "Invalid type for 'messages': each message needs a 'role'."
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        return "Invalid type for 'stream': expected a boolean."
    return None


def _completion_template(kind: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The ``chat.completion`` JSON of route ``kind``, serialized once and split at its slots.

    Returns ``(literals, slot_names)``; a response is ``literals[0] + value(slot_names[0]) +
    literals[1] + ...``, so per request only the reply text and model are JSON-encoded.
    """

    def slot(name: str) -> str:
        return f"@@{name}@@"

    choice: dict[str, Any] = {
        "index": 0,
        "message": {
            "role": "assistant",
            "content": slot("content"),
            "refusal": None,
            "annotations": [],
        },
        "logprobs": None,
        "finish_reason": slot("finish_reason"),
    }
    result: dict[str, Any] = {
        "id": slot("id"),
        "object": "chat.completion",
        "created": slot("created"),
        "model": slot("model"),
        "choices": [choice],
        "usage": {
            "prompt_tokens": slot("prompt_tokens"),
            "completion_tokens": slot("completion_tokens"),
            "total_tokens": slot("total_tokens"),
            "prompt_tokens_details": {"cached_tokens": slot("cached_tokens"), "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        },
        "system_fingerprint": "fp_fake",
    }
    if kind == "azure":
        choice["content_filter_results"] = _SAFE_FILTER
        result["prompt_filter_results"] = [
            {"prompt_index": 0, "content_filter_results": _SAFE_FILTER}
        ]
    else:
        result["service_tier"] = "default"
    parts = re.split(r'"@@(\w+)@@"', json.dumps(result, separators=(",", ":")))
    return tuple(parts[0::2]), tuple(parts[1::2])


_TEMPLATES: Final = {kind: _completion_template(kind) for kind in KINDS}


def completion_body(
    kind: str,
    model: str,
    body: dict[str, Any],
    seq: int,
    reply_tokens: int,
    cache_min: int,
    cache_block: int,
) -> bytes:
    """The ``chat.completion`` JSON for a request, with deterministic text and usage.

    A request with ``tools`` (and ``tool_choice`` not ``none``) is answered with a call
    of the chosen (or first) function; ``response_format`` json_object or json_schema
    with a JSON object as content.
    """
    if _tool_to_call(body) is not None or _json_mode(body):
        return dumps(_answer_doc(kind, model, body, seq, reply_tokens, cache_min, cache_block))
    content, n, finish, prompt_tokens, cached = _reply(body, reply_tokens, cache_min, cache_block)
    values = {
        "id": f'"chatcmpl-fake{seq:012d}"',
        "created": str(int(time.time())),
        "model": json.dumps(model),
        "content": json.dumps(content),
        "finish_reason": f'"{finish}"',
        "prompt_tokens": str(prompt_tokens),
        "completion_tokens": str(n),
        "total_tokens": str(prompt_tokens + n),
        "cached_tokens": str(cached),
    }
    literals, names = _TEMPLATES[kind]
    out = [literals[0]]
    for name, literal in zip(names, literals[1:], strict=True):
        out.append(values[name])
        out.append(literal)
    return "".join(out).encode()


def _reply(
    body: dict[str, Any], reply_tokens: int, cache_min: int, cache_block: int
) -> tuple[str, int, str, int, int]:
    """(text, completion tokens, finish_reason, prompt tokens, cached tokens)."""
    words = 0
    last_user = ""
    for message in body["messages"]:
        text = _content_text(message.get("content"))
        words += len(text.split())
        if message.get("role") == "user":
            last_user = text
    prompt_tokens = max(1, (words * 13 + 9) // 10)
    n = reply_tokens
    finish = "stop"
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    if isinstance(limit, int) and 0 < limit < n:
        n, finish = limit, "length"
    source = last_user.split() or ["there"]
    content = " ".join(["Hi", *islice(cycle(source), n - 1)])
    cached = prompt_tokens - prompt_tokens % cache_block if prompt_tokens >= cache_min else 0
    return content, n, finish, prompt_tokens, cached


def _tool_to_call(body: dict[str, Any]) -> str | None:
    """The function a request with tools gets a call of, or None."""
    tools = body.get("tools")
    choice = body.get("tool_choice")
    if not isinstance(tools, list) or not tools or choice == "none":
        return None
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        if isinstance(name, str):
            return name
    first = tools[0] if isinstance(tools[0], dict) else {}
    name = (first.get("function") or {}).get("name")
    return name if isinstance(name, str) else "tool"


def _json_mode(body: dict[str, Any]) -> bool:
    fmt = body.get("response_format")
    return isinstance(fmt, dict) and fmt.get("type") in ("json_object", "json_schema")


def _usage_doc(prompt_tokens: int, n: int, cached: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": n,
        "total_tokens": prompt_tokens + n,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _answer_parts(
    body: dict[str, Any], seq: int, reply_tokens: int, cache_min: int, cache_block: int
) -> tuple[str | None, dict[str, Any] | None, str, dict[str, Any]]:
    """(content, tool call, finish_reason, usage) of a request's answer."""
    content, n, finish, prompt_tokens, cached = _reply(body, reply_tokens, cache_min, cache_block)
    usage = _usage_doc(prompt_tokens, n, cached)
    tool = _tool_to_call(body)
    if tool is not None:
        call = {
            "id": f"call_fake{seq:012d}",
            "type": "function",
            "function": {"name": tool, "arguments": json.dumps({"text": content})},
        }
        return None, call, "tool_calls", usage
    if _json_mode(body):
        content = json.dumps({"reply": content})
    return content, None, finish, usage


def _answer_doc(
    kind: str,
    model: str,
    body: dict[str, Any],
    seq: int,
    reply_tokens: int,
    cache_min: int,
    cache_block: int,
) -> dict[str, Any]:
    content, call, finish, usage = _answer_parts(body, seq, reply_tokens, cache_min, cache_block)
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
    if call is not None:
        message["tool_calls"] = [call]
    choice: dict[str, Any] = {
        "index": 0,
        "message": message,
        "logprobs": None,
        "finish_reason": finish,
    }
    doc: dict[str, Any] = {
        "id": f"chatcmpl-fake{seq:012d}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [choice],
        "usage": usage,
        "system_fingerprint": "fp_fake",
    }
    if kind == "azure":
        choice["content_filter_results"] = _SAFE_FILTER
        doc["prompt_filter_results"] = [{"prompt_index": 0, "content_filter_results": _SAFE_FILTER}]
    return doc


def stream_events(
    kind: str,
    model: str,
    body: dict[str, Any],
    seq: int,
    reply_tokens: int,
    cache_min: int,
    cache_block: int,
) -> list[bytes]:
    """The SSE events of a streamed answer, as OpenAI (and Azure) send them.

    A role chunk, one content chunk per word (or one tool-call chunk), a chunk with the
    finish_reason, the usage chunk when ``stream_options.include_usage`` is set (every
    chunk then carries ``"usage": null``), then ``[DONE]``. Azure first sends a chunk
    with the prompt filter results and an empty model.
    """
    content, call, finish, usage = _answer_parts(body, seq, reply_tokens, cache_min, cache_block)
    options = body.get("stream_options")
    with_usage = isinstance(options, dict) and options.get("include_usage") is True
    head: dict[str, Any] = {
        "id": f"chatcmpl-fake{seq:012d}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "fp_fake",
    }
    deltas: list[dict[str, Any]] = [{"role": "assistant", "content": "", "refusal": None}]
    if call is not None:
        deltas.append({"tool_calls": [{"index": 0, **call}]})
    else:
        assert content is not None
        words = content.split(" ")
        deltas.extend({"content": w if i == 0 else " " + w} for i, w in enumerate(words))
    chunks: list[dict[str, Any]] = []
    if kind == "azure":
        filters = [{"prompt_index": 0, "content_filter_results": _SAFE_FILTER}]
        chunks.append({**head, "model": "", "choices": [], "prompt_filter_results": filters})
    for delta in deltas:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}
        chunks.append({**head, "choices": [choice]})
    last = {"index": 0, "delta": {}, "logprobs": None, "finish_reason": finish}
    chunks.append({**head, "choices": [last]})
    if with_usage:
        for chunk in chunks:
            chunk["usage"] = None
        chunks.append({**head, "choices": [], "usage": usage})
    events = [b"data: " + dumps(chunk) + b"\n\n" for chunk in chunks]
    events.append(b"data: [DONE]\n\n")
    return events


def sse_chunk(event: bytes) -> bytes:
    """One event as a chunk of a chunked HTTP body."""
    return f"{len(event):x}\r\n".encode() + event + b"\r\n"


def stream_response(
    events: Iterable[bytes], *, close: bool, request_id: str, kind: str, complete: bool = True
) -> bytes:
    """An HTTP/1.1 ``text/event-stream`` response, one chunk per event.

    Not ``complete``: without the final zero-length chunk (the ``stream_drop`` fault
    then closes the connection, as an upstream that dies mid-answer)."""
    head = [
        "HTTP/1.1 200 OK",
        "content-type: text/event-stream; charset=utf-8",
        "transfer-encoding: chunked",
        f"x-request-id: {request_id}",
    ]
    if kind == "azure":
        head.append(f"apim-request-id: {request_id}")
    if close:
        head.append("connection: close")
    out = [("\r\n".join(head) + "\r\n\r\n").encode("latin-1")]
    out.extend(map(sse_chunk, events))
    if complete:
        out.append(b"0\r\n\r\n")
    return b"".join(out)


def response(
    status: int,
    body: bytes,
    *,
    close: bool,
    request_id: str | None = None,
    kind: str | None = None,
    extra: Iterable[tuple[str, str]] = (),
) -> bytes:
    """Serialize one HTTP/1.1 response with a JSON body."""
    head = [
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}",
        "content-type: application/json",
        f"content-length: {len(body)}",
    ]
    if request_id is not None:
        head.append(f"x-request-id: {request_id}")
        if kind == "azure":
            head.append(f"apim-request-id: {request_id}")
    for name, value in extra:
        head.append(f"{name}: {value}")
    if close:
        head.append("connection: close")
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


def flat_query(query: str) -> dict[str, str]:
    """A query string as a dict (last value wins)."""
    return {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}


async def read_chunked(reader: asyncio.StreamReader) -> bytes:
    """Read a chunked request body (trailers are read and ignored)."""
    chunks: list[bytes] = []
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":
                pass
            return b"".join(chunks)
        chunks.append(await reader.readexactly(size))
        await reader.readexactly(2)
