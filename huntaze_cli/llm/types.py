"""The vocabulary of LLM calls shared by providers, routing and the orchestrator.

A ``Provider`` makes exactly one attempt per ``complete`` call: it never retries (the SDK
clients are built with ``max_retries=0``); every retry and failover decision belongs to
the orchestrator. A failed attempt raises ``ProviderFailure`` carrying its class.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

# Failure classes (DESIGN.md invariant 5) and whether another attempt may help.
FailureKind = Literal[
    "rate_limited",  # 429: retry after Retry-After / retry-after-ms / x-ms-retry-after-ms
    "server_error",  # 5xx
    "timeout",  # no answer within the attempt timeout
    "connection",  # refused, reset, dropped
    "malformed",  # 2xx with a body that is not a completion
    "content_filter",  # Azure refused the prompt; another provider may accept it
    "auth",  # 401/403: the provider is misconfigured
    "bad_request",  # other 4xx: the request itself is wrong; no retry helps
    "cancelled",  # the caller went away mid-answer (a /v1 client hung up on a stream)
]


@dataclass(slots=True)
class Message:
    role: Literal["system", "user", "assistant"]
    content: str


@dataclass(slots=True)
class GenerationRequest:
    """One message to write: what to ask, and whom it is for (for routing and the ledger)."""

    request_id: str
    model: str
    messages: list[Message]
    max_tokens: int | None = None
    temperature: float | None = None
    provider: str = "auto"  # "auto" or a provider name to pin
    account: str | None = None
    campaign_id: str | None = None
    tenant: str = "default"
    strategy: str | None = None  # overrides [routing] strategy (an experiment arm)
    experiment: str | None = None  # set with arm when an experiment assigned the request
    arm: str | None = None
    # The /v1 gateway: the client's chat-completions body, passed through as it is
    # (``messages`` then holds its text, for estimates), and the providers that may serve
    # the model (None: any).
    body: dict[str, Any] | None = None
    stream: bool = False
    only: frozenset[str] | None = None
    budget_action: str | None = None  # set when a budget changed the call (ledger field)


@dataclass(slots=True)
class Usage:
    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0


@dataclass(slots=True)
class Completion:
    """A provider's answer to one attempt."""

    text: str
    usage: Usage
    deployment: str | None = None
    response_model: str | None = None  # what the provider says served it (response.model)
    raw: bytes | None = None  # a pass-through answer: the upstream's body as it came
    stream: UpstreamEvents | None = None  # a pass-through stream, its first event read


class ProviderFailure(Exception):
    """One attempt failed; ``kind`` says how, ``retry_after_s`` what the server asked."""

    def __init__(
        self,
        kind: FailureKind,
        message: str,
        *,
        status: int | None = None,
        retry_after_s: float | None = None,
        usage: Usage | None = None,
    ) -> None:
        super().__init__(message)
        self.kind: FailureKind = kind
        self.message = message
        self.status = status
        self.retry_after_s = retry_after_s
        self.usage = usage or Usage()


class Provider(Protocol):
    """One configured LLM endpoint (Azure OpenAI, OpenAI, or the offline simulator)."""

    name: str
    kind: str

    def deployment_for(self, model: str) -> str | None:
        """The deployment that serves ``model`` (Azure), else None."""
        ...

    async def complete(self, request: GenerationRequest, *, timeout: float) -> Completion:
        """Make exactly one attempt; raise ProviderFailure when it fails."""
        ...

    async def aclose(self) -> None: ...


@dataclass(slots=True)
class Attempt:
    """What one attempt did, as the ledger and the result report it."""

    attempt_id: str
    provider: str
    route_reason: str
    latency_ms: float
    status: Literal["ok", "error"]
    error_kind: str | None = None
    cost_nano: int = 0
    priced: bool = True
    response_model: str | None = None


@dataclass(slots=True)
class GenerationResult:
    text: str
    provider: str
    model: str
    deployment: str | None
    usage: Usage
    cost_nano: int
    priced: bool
    route_reason: str
    attempts: list[Attempt] = field(default_factory=list)
    response_model: str | None = None
    raw: bytes | None = None  # a pass-through answer, as the upstream sent it
    # A pass-through stream: its attempt is recorded (and the breaker told) when it ends.
    stream: RecordedStream | None = None


class UpstreamEvents(Protocol):
    """A provider's open stream (``passthrough.UpstreamStream``): its SSE events, and
    the usage and served model it reported (usage once its last chunk came)."""

    usage: Usage | None
    response_model: str | None

    def __aiter__(self) -> Any: ...

    async def aclose(self) -> None: ...


class RecordedStream(Protocol):
    """The events of a streamed answer; the attempt is recorded when it ends or closes."""

    def __aiter__(self) -> Any: ...

    async def aclose(self) -> None: ...
