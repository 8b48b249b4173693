"""Chat completions passed through as they are: the call path of the /v1 gateway.

A campaign message is a few fields the orchestrator builds; a gateway request is whatever
an OpenAI client sent (content parts, tools and tool calls, response_format, seed, n,
fields this code has never heard of). So the body travels as a dict, and only ``model``
is rewritten (to the Azure deployment) and, for streams, ``stream_options.include_usage``
set, so the upstream reports the usage every attempt is priced from. The answer travels
back as the upstream's bytes: a non-streaming body is parsed once for its usage and
served model, a stream is forwarded event by event and read only for its usage chunk.

The call goes out through the provider's ``llm.upstream.Upstream`` (one pooled HTTP
session per provider, the body posted as bytes): the SDK's typed ``create`` would reject
unknown fields, and its HTTP stack costs several times the CPU of the whole pass-through.
A stream's events are forwarded in the groups they arrived in (one write for all the
events of one upstream read), the first as soon as it came.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Any

from huntaze_cli.llm.types import (
    Completion,
    GenerationRequest,
    ProviderFailure,
    UpstreamEvents,
    Usage,
)
from huntaze_cli.llm.wire import MESSAGE_LIMIT, parse_completion, read_usage
from huntaze_cli.text import one_line

if TYPE_CHECKING:
    from huntaze_cli.llm.upstream import Upstream

_USAGE_NULL = re.compile(rb'"usage"\s*:\s*null')

Classify = Callable[[BaseException], ProviderFailure]
# A non-2xx answer (status, headers, body) as the attempt's failure.
Refused = Callable[[int, Mapping[str, str], bytes], ProviderFailure]


def _as_failure(exc: BaseException) -> ProviderFailure:
    return ProviderFailure("connection", one_line(exc, MESSAGE_LIMIT))


def upstream_body(request: GenerationRequest, deployment: str | None) -> dict[str, Any]:
    """The body sent upstream: the client's, the model mapped, usage asked for streams."""
    assert request.body is not None
    body = dict(request.body)
    body["model"] = deployment or request.model
    if request.stream:
        options = body.get("stream_options")
        body["stream_options"] = {
            **(options if isinstance(options, dict) else {}),
            "include_usage": True,
        }
    return body


class UpstreamStream:
    """One attempt's upstream SSE stream, forwarded as it comes.

    ``open`` reads up to the first event, so an upstream that fails before sending
    anything fails the attempt while the orchestrator may still fall back; after that,
    events go to the client as they come, the events of one upstream read in one piece.
    Usage and the served model are read on the way (only the usage chunk and the first
    chunk are parsed). A stream that breaks after its first event raises ProviderFailure
    from the iteration, with what usage was seen; ``aclose`` (the client went away)
    closes the upstream connection.
    """

    def __init__(
        self,
        response: Any,
        *,
        classify: Classify,
        deployment: str | None,
        forward_usage: bool = True,
    ) -> None:
        self._response = response
        self._classify = classify
        # Usage was asked for on the client's behalf: its chunk (no choices) goes to a
        # client that asked for it only, as code reading choices[0] would trip on it.
        self._forward_usage = forward_usage
        self.deployment = deployment
        self._chunks: AsyncIterator[bytes] = response.aiter_bytes()
        self._buffer = b""
        self._first: list[bytes] = []  # read by ``open``: up to the first data event
        self._rest: list[bytes] = []  # the events that came in the same read after it
        self.usage: Usage | None = None
        self.response_model: str | None = None
        self.done = False
        self.closed = False

    async def open(self) -> None:
        """Read until the first event: raises ProviderFailure if none comes."""
        try:
            async for events in self._reads():
                for n, event in enumerate(events):
                    self._first.append(event)
                    if self._first_chunk(event):
                        self._rest = events[n + 1 :]
                        return
        except BaseException:
            await self.aclose()
            raise
        await self.aclose()
        raise ProviderFailure("malformed", "the stream ended before its first event")

    def _first_chunk(self, event: bytes) -> bool:
        """Note the model of the first chunk; True once a data event was seen."""
        data = _data(event)
        if data is None:
            return False
        if data.startswith(b'{"error"'):
            raise _stream_error(data)
        if data != b"[DONE]":
            try:
                doc = json.loads(data)
            except ValueError:
                raise ProviderFailure("malformed", "unreadable first stream chunk") from None
            model = doc.get("model") if isinstance(doc, dict) else None
            if isinstance(model, str) and model:
                self.response_model = model
            self._note_usage(data)
        return True

    async def _reads(self) -> AsyncIterator[list[bytes]]:
        """The upstream's SSE events (without their blank-line terminator), grouped by
        the read they completed in."""
        try:
            async for chunk in self._chunks:
                self._buffer += chunk.replace(b"\r\n", b"\n") if b"\r" in chunk else chunk
                if b"\n\n" not in self._buffer:
                    continue
                *events, self._buffer = self._buffer.split(b"\n\n")
                events = [event for event in events if event]
                if events:
                    yield events
        except ProviderFailure:
            raise
        except Exception as exc:
            raise self._classify(exc) from None
        if self._buffer.strip():
            event, self._buffer = self._buffer.strip(b"\n"), b""
            yield [event]

    def _forwarded(self, events: list[bytes]) -> tuple[bytes, ProviderFailure | None]:
        """The SSE bytes to send for ``events`` (each ``data: ...\\n\\n``), and the
        failure an error event among them stands for (the events before it are sent)."""
        out: list[bytes] = []
        failure = None
        for event in events:
            data = _data(event)
            if data is not None:
                if data == b"[DONE]":
                    self.done = True
                elif data.startswith(b'{"error"'):
                    failure = _stream_error(data)
                    break
                elif b'"usage"' in data and self._note_usage(data) and not self._forward_usage:
                    continue
            out.append(event)
            out.append(b"\n\n")
        return b"".join(out), failure

    async def __aiter__(self) -> AsyncIterator[bytes]:
        """The events as SSE bytes, a group of them per piece; ProviderFailure if the
        upstream breaks off before ``[DONE]`` (or its last chunk)."""
        try:
            head = b"".join(event + b"\n\n" for event in self._first)
            self._first = []
            rest, failure = self._forwarded(self._rest)
            self._rest = []
            if head or rest:
                yield head + rest
            if failure is not None:
                raise failure
            async for events in self._reads():
                out, failure = self._forwarded(events)
                if out:
                    yield out
                if failure is not None:
                    raise failure
        finally:
            await self.aclose()
        if not self.done and self.usage is None:
            raise ProviderFailure("connection", "the upstream stream broke off before its end")
        self.done = True

    def _note_usage(self, data: bytes) -> bool:
        """Read the usage of a chunk that has some; True if it was a usage-only chunk."""
        if b'"usage"' not in data or b'"usage":null' in data or _USAGE_NULL.search(data):
            return False
        try:
            doc = json.loads(data)
            self.usage = read_usage(doc.get("usage"))
        except (ValueError, AttributeError, ProviderFailure):
            return False  # unreadable: the attempt is priced from what was seen
        return not doc.get("choices")

    async def aclose(self) -> None:
        if not self.closed:
            self.closed = True
            await self._response.aclose()


def _data(event: bytes) -> bytes | None:
    """The payload of an event's ``data:`` line(s), or None for a comment/other field."""
    if event.startswith(b"data:"):
        if b"\n" not in event:
            return event[5:].strip()
        lines = [line[5:].strip() for line in event.split(b"\n") if line.startswith(b"data:")]
        return b"\n".join(lines)
    return None


def _stream_error(data: bytes) -> ProviderFailure:
    """An ``{"error": ...}`` event in a stream: the upstream failed mid-answer."""
    try:
        error = json.loads(data).get("error") or {}
        message = str(error.get("message") or "error event in the stream")
    except (ValueError, AttributeError):
        message = "error event in the stream"
    return ProviderFailure("server_error", f"server_error (stream): {one_line(message, 200)}")


async def complete(
    upstream: Upstream,
    request: GenerationRequest,
    *,
    deployment: str | None,
    timeout: float,
    classify: Classify,
    refused: Refused,
) -> Completion:
    """One pass-through attempt: the raw answer, or an open stream (first event read).

    ``classify`` turns whatever the call raised into the attempt's ProviderFailure
    (``providers.classify``, with the provider's key to scrub), ``refused`` a non-2xx
    answer (``providers.failure_for_status``).
    """
    from huntaze_cli.llm.upstream import Body

    body = upstream_body(request, deployment)
    options = request.body.get("stream_options") if request.body else None
    asked = isinstance(options, dict) and options.get("include_usage") is True
    try:
        response = await upstream.post(
            json.dumps(body).encode(),
            deployment=deployment,
            timeout=timeout,
            stream=request.stream,
        )
    except Exception as exc:
        raise classify(exc) from None
    try:
        if response.status >= 300 or not request.stream:
            raw = await response.read()
            response.release()
            if response.status >= 300:
                raise refused(response.status, response.headers, raw)
            return parse_completion(raw, deployment=deployment, keep_raw=True)
    except ProviderFailure:
        raise
    except BaseException as exc:
        response.close()
        if isinstance(exc, Exception):
            raise classify(exc) from None
        raise
    stream = UpstreamStream(
        Body(response), classify=classify, deployment=deployment, forward_usage=asked
    )
    await stream.open()
    return Completion(
        text="",
        usage=Usage(),
        deployment=deployment,
        response_model=stream.response_model,
        stream=stream,
    )


class _Replay:
    """A finished HTTP body as ``UpstreamStream`` reads one (the simulated provider)."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        yield self._body

    async def aclose(self) -> None:
        return None


async def simulated_answer(request: GenerationRequest, completion: Completion) -> Completion:
    """The offline simulator's answer in OpenAI's shapes (a body, or a stream of chunks)."""
    import time

    usage = {
        "prompt_tokens": completion.usage.input_tokens,
        "completion_tokens": completion.usage.output_tokens,
        "total_tokens": completion.usage.input_tokens + completion.usage.output_tokens,
    }
    head = {"id": "chatcmpl-simulated", "created": int(time.time()), "model": request.model}
    if not request.stream:
        message = {"role": "assistant", "content": completion.text}
        choice = {"index": 0, "message": message, "finish_reason": "stop"}
        doc = {**head, "object": "chat.completion", "choices": [choice], "usage": usage}
        return parse_completion(json.dumps(doc).encode(), deployment=None, keep_raw=True)
    chunk = {**head, "object": "chat.completion.chunk"}
    events = [
        {**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
        {**chunk, "choices": [{"index": 0, "delta": {"content": completion.text}}]},
        {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        {**chunk, "choices": [], "usage": usage},
    ]
    body = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events)
    stream = UpstreamStream(
        _Replay(body + b"data: [DONE]\n\n"), classify=_as_failure, deployment=None
    )
    await stream.open()
    return Completion(text="", usage=Usage(), response_model=request.model, stream=stream)


class RecordingStream:
    """A pass-through stream that reports how it ended, exactly once.

    ``on_end(None)`` after its last event, ``on_end(failure)`` when the upstream broke
    off, ``on_end(cancelled)`` when ``aclose`` comes first (the client went away); the
    orchestrator records the attempt then, with the usage the stream reported.
    """

    def __init__(
        self, upstream: UpstreamEvents, on_end: Callable[[ProviderFailure | None], None]
    ) -> None:
        self._upstream = upstream
        self._on_end = on_end
        self._ended = False

    def _end(self, failure: ProviderFailure | None) -> None:
        if not self._ended:
            self._ended = True
            self._on_end(failure)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for event in self._upstream:
                yield event
        except ProviderFailure as failure:
            self._end(failure)
            raise
        self._end(None)

    async def aclose(self) -> None:
        """Close the upstream (cancelling the call if it still runs) and record."""
        self._end(ProviderFailure("cancelled", "the client closed the stream before its end"))
        await self._upstream.aclose()
