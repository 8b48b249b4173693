"""A local OpenAI / Azure OpenAI chat-completions server with injectable latency and faults.

Tests and benchmarks point the real ``openai`` SDK (``AsyncOpenAI``, ``AsyncAzureOpenAI``) at
this server over loopback, so provider calls, retries, failover and cost accounting are
exercised against the real wire format instead of mocks. It is a small hand-written HTTP/1.1
server on ``asyncio.start_server`` (keep-alive, ``Content-Length`` and chunked request bodies,
``Connection: close``) with no dependency beyond the standard library, and it is cheap per
request so a benchmark at 2,000 requests x concurrency 32 measures the client, not the server.

Ways to run it:

* in-process, on a background thread with its own event loop::

      with FakeLLM(latency_ms=50) as srv:
          client = openai.AsyncOpenAI(base_url=srv.openai_base_url, api_key="k", max_retries=0)

* in the current event loop: ``await srv.astart()`` / ``await srv.astop()``;
* as a separate process (so its CPU is not in the measured process)::

      python -m huntaze_testing.fake_llm --port 0 --latency-ms 50   # prints FAKE_LLM_PORT=<port>

  or ``with FakeLLMProcess(latency_ms=50) as srv: ...``, programmed over HTTP through
  ``POST /_control`` (same settings as :meth:`FakeLLM.control`) and read through
  ``GET /_stats`` and ``GET /_requests``.

Answers follow the request: ``stream: true`` gets an SSE stream of
``chat.completion.chunk`` events (the usage chunk last with
``stream_options.include_usage``, then ``[DONE]``); ``tools`` get a call of the chosen
(or first) function; ``response_format`` json_object/json_schema a JSON object.

Routes:

* ``POST /v1/chat/completions``: OpenAI; auth ``Authorization: Bearer <key>``; the response
  model is the request's ``model``; faults are targeted by that model name.
* ``POST /openai/deployments/{deployment}/chat/completions?api-version=...``: Azure; auth
  ``api-key: <key>``; a missing ``api-version`` is a 404 like Azure's; the response model is
  ``deployment_models.get(deployment, deployment)``; faults are targeted by deployment name.
* ``POST /_control``, ``GET /_stats``, ``GET /_requests?limit=N``, ``GET /_health``.

Outcome specs (strings, used in scripts and in probability mixes):

* ``ok``: a ``chat.completion`` (``200`` is an alias);
* ``429`` with optional retry hints ``429:retry-after=1``, ``429:retry-after-ms=200``,
  ``429:x-ms-retry-after-ms=200`` (several may be combined with commas);
* ``500``, ``503``, ``400`` (invalid_request_error), ``401``, ``403``, or any other 4xx/5xx
  code with a generic error body;
* ``content_filter``: Azure's 400 body with ``code: content_filter`` and the
  ``ResponsibleAIPolicyViolation`` inner error (sent on either route);
* ``timeout``: reads the request, sends nothing for ``timeout_sleep_s``, then closes;
* ``drop``: reads the request, waits the latency, then closes without a response;
* ``stream_drop``: a streamed request gets the head and about half of its events, then
  the connection closes mid-answer (a request without ``stream`` is dropped as ``drop``);
* ``malformed``: ``200`` with ``Content-Type: application/json`` and a truncated JSON body.

Every spec also takes ``latency-ms=N`` to override the latency for that one response, e.g.
``"429:retry-after-ms=200,latency-ms=0"``.  ``ok`` and ``stream_drop`` take ``event-ms=N``: a
streamed answer then pauses N ms between events (``"ok:event-ms=100"``), and a client
that hangs up meanwhile is counted in ``stats()["streams_abandoned"]``.

Fault rules live in scopes ``(kind, target)`` where kind is ``openai``, ``azure`` or ``*`` and
target is a model (OpenAI), a deployment (Azure) or ``*``. For a request the scopes are tried
most specific first: ``(kind, target)``, ``(kind, *)``, ``(*, target)``, ``(*, *)``; each
setting is resolved on its own:

1. the first scope with a non-empty FIFO script gives the outcome (and consumes it);
2. otherwise the first scope with a probability mix draws from it (its own seeded RNG, so the
   sequence of outcomes drawn from one scope is reproducible; which request gets which one
   follows arrival order);
3. otherwise ``ok``.

Latency (``latency_ms`` + uniform ``[0, jitter_ms]``) comes from the first scope that sets it;
the constructor's ``latency_ms`` / ``jitter_ms`` are the ``(*, *)`` scope. Latency applies to
every outcome (errors included) except ``timeout``.

Requests that fail auth (401) or validation (400) never reach the fault rules, so they do not
consume scripted outcomes.

Modules: ``wire`` (bodies, errors, HTTP bytes), ``faults`` (outcome specs, scopes, the
draw), ``controls`` (programmable state and counters), ``server`` (:class:`FakeLLM`),
``client`` (:class:`FakeLLMClient`), ``process`` (:class:`FakeLLMProcess`, the command line).
"""

from __future__ import annotations

from huntaze_testing.fake_llm.client import FakeLLMClient
from huntaze_testing.fake_llm.controls import RecordedRequest, count_in_stats
from huntaze_testing.fake_llm.faults import Outcome, parse_outcome
from huntaze_testing.fake_llm.process import FakeLLMProcess
from huntaze_testing.fake_llm.server import FakeLLM

__all__ = [
    "FakeLLM",
    "FakeLLMClient",
    "FakeLLMProcess",
    "Outcome",
    "RecordedRequest",
    "count_in_stats",
    "parse_outcome",
]
