"""The LLM provider adapters: Azure OpenAI and OpenAI through the openai SDK, and an offline
simulator.

Each adapter makes exactly one attempt per ``complete`` call. The SDK client is built on
first use with ``max_retries=0`` (the orchestrator owns every retry, DESIGN.md invariant 5)
and then reused for every call, so its connection pool stays warm. Every exception an
attempt can raise is turned into a ``ProviderFailure`` by one function, ``classify``.

``openai`` is imported only inside functions: commands that never call a provider must not
pay for importing it (invariant 7).
"""

from __future__ import annotations

import asyncio
import re
import sys
import zlib
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from huntaze_cli.config import (
    DEFAULT_AZURE_API_VERSION,
    Config,
    ProviderConfig,
    secret_from_env,
)
from huntaze_cli.errors import ConfigError
from huntaze_cli.llm.tokens import estimate_input_tokens
from huntaze_cli.llm.types import (
    Completion,
    FailureKind,
    GenerationRequest,
    Provider,
    ProviderFailure,
    Usage,
)
from huntaze_cli.llm.wire import MESSAGE_LIMIT, parse_completion
from huntaze_cli.retry import retry_after_s
from huntaze_cli.text import scrub

if TYPE_CHECKING:
    from huntaze_cli.llm.upstream import Upstream

_MIN_KEEPALIVE = 100  # the SDK's own default


def effective_provider_configs(config: Config) -> dict[str, ProviderConfig]:
    """The providers in config order; with none configured, the offline ``simulated`` one."""
    if config.providers:
        return dict(config.providers)
    return {"simulated": ProviderConfig(kind="simulated")}


def build_providers(config: Config) -> dict[str, Provider]:
    """One adapter per effective provider, in config order; no network, no key read yet."""
    return {
        name: make_provider(
            name,
            cfg,
            concurrency=config.routing.concurrency,
            timeout_s=config.routing.timeout_s,
        )
        for name, cfg in effective_provider_configs(config).items()
    }


def make_provider(
    name: str, cfg: ProviderConfig, *, concurrency: int = 32, timeout_s: float = 30.0
) -> Provider:
    """The adapter for one ``[providers.<name>]`` table."""
    if cfg.kind == "azure":
        return AzureProvider(name, cfg, concurrency=concurrency, timeout_s=timeout_s)
    if cfg.kind == "openai":
        return OpenAIProvider(name, cfg, concurrency=concurrency, timeout_s=timeout_s)
    return SimulatedProvider(name, cfg)


class _SDKProvider:
    """What the OpenAI and Azure adapters share: one lazily built client, one call shape."""

    kind = ""

    def __init__(
        self, name: str, cfg: ProviderConfig, *, concurrency: int = 32, timeout_s: float = 30.0
    ) -> None:
        self.name = name
        self.cfg = cfg
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self._client: Any = None
        self._upstream: Upstream | None = None
        self._api_key: str | None = None

    def deployment_for(self, model: str) -> str | None:
        return None

    def client(self) -> Any:
        """The SDK client, built on first use; raises ConfigError when config is incomplete.

        Reading the key here rather than at construction lets ``health`` report a missing
        key per provider while the others keep serving.
        """
        if self._client is None:
            api_key = self._key()
            try:
                self._client = self._build_client(api_key, self._http_client())
            except Exception as exc:  # the SDK rejects e.g. a malformed endpoint URL
                raise ConfigError(
                    f"provider {self.name}: cannot set up the client: "
                    + scrub(f"{type(exc).__name__}: {exc}", (api_key,), limit=MESSAGE_LIMIT)
                ) from None
            self._api_key = api_key
        return self._client

    def _key(self) -> str:
        """The provider's API key, its settings checked; ConfigError naming what is missing."""
        self._check_config()
        key_setting = f"providers.{self.name}.api_key_env"
        try:
            api_key = secret_from_env(
                self.cfg.api_key_env, what=f"provider {self.name} API key", key=key_setting
            )
        except ConfigError as exc:
            raise ConfigError(
                exc.message,
                hint=f"export the variable, or point {key_setting} at the one that holds it",
            ) from None
        self._api_key = api_key
        return api_key

    def upstream(self) -> Upstream:
        """The pass-through's HTTP client (``llm.upstream``), built on first use."""
        if self._upstream is None:
            from huntaze_cli.llm.upstream import Upstream

            self._upstream = Upstream(
                self.kind,
                api_key=self._key(),
                base_url=self.cfg.base_url,
                endpoint=self.cfg.endpoint,
                api_version=self.cfg.api_version or DEFAULT_AZURE_API_VERSION,
                concurrency=self.concurrency,
            )
        return self._upstream

    def _check_config(self) -> None:
        """Raise ConfigError when a setting the client needs is missing."""

    def _build_client(self, api_key: str, http_client: Any) -> Any:
        raise NotImplementedError

    def _http_client(self) -> Any:
        import openai

        # The SDK's default pool allows 1000 connections but keeps only 100 alive; both
        # must cover the configured concurrency. The Limits class is taken from the SDK's
        # own default so this works whichever httpx flavour the SDK is built on.
        defaults = openai.DEFAULT_CONNECTION_LIMITS
        ceiling = defaults.max_connections  # None: unlimited
        limits = type(defaults)(
            max_connections=None if ceiling is None else max(self.concurrency, ceiling),
            max_keepalive_connections=max(self.concurrency, _MIN_KEEPALIVE),
        )
        return openai.DefaultAsyncHttpxClient(limits=limits, timeout=self.timeout_s)

    async def complete(self, request: GenerationRequest, *, timeout: float) -> Completion:
        """One chat completion attempt; raises ProviderFailure (or ConfigError on first use)."""
        deployment = self.deployment_for(request.model)
        if request.body is not None:
            from huntaze_cli.llm import passthrough

            upstream = self.upstream()
            secrets = (self._api_key,)
            return await passthrough.complete(
                upstream,
                request,
                deployment=deployment,
                timeout=timeout,
                classify=lambda exc: classify(exc, secrets=secrets),
                refused=lambda status, headers, raw: failure_for_status(
                    status, headers, raw, secrets=secrets
                ),
            )
        client = self.client()
        body: dict[str, Any] = {
            "model": deployment or request.model,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
        }
        if request.max_tokens is not None:
            body["max_tokens"] = request.max_tokens
        if request.temperature is not None:
            body["temperature"] = request.temperature
        try:
            # The SDK's own request path (auth, the Azure deployment URL and api-version,
            # errors as APIStatusError) with the body as built here and the answer as
            # bytes: ``chat.completions.create`` would also walk the body against its
            # typed parameters and build response models, most of an attempt's CPU.
            raw = await client.post(
                "/chat/completions", body=body, cast_to=bytes, options={"timeout": timeout}
            )
        except Exception as exc:
            # `from None`: the SDK exception may quote the server's message verbatim, and a
            # chained traceback in a log must not carry what the scrubbed message removed.
            raise classify(exc, secrets=(self._api_key,)) from None
        return parse_completion(raw, deployment=deployment)

    async def aclose(self) -> None:
        client, self._client = self._client, None
        upstream, self._upstream = self._upstream, None
        if upstream is not None:
            await upstream.aclose()
        if client is not None:
            await client.close()


class OpenAIProvider(_SDKProvider):
    """OpenAI (or any OpenAI-compatible endpoint at ``base_url``) through ``AsyncOpenAI``."""

    kind = "openai"

    def _build_client(self, api_key: str, http_client: Any) -> Any:
        import openai

        return openai.AsyncOpenAI(
            api_key=api_key,
            base_url=self.cfg.base_url,
            max_retries=0,
            timeout=self.timeout_s,
            http_client=http_client,
        )


class AzureProvider(_SDKProvider):
    """Azure OpenAI through ``AsyncAzureOpenAI``; a model is served by its deployment."""

    kind = "azure"

    def deployment_for(self, model: str) -> str | None:
        # No map entry: the deployment is named after the model (CONTRACT.md).
        return self.cfg.deployments.get(model, model)

    def _check_config(self) -> None:
        if not self.cfg.endpoint:
            raise ConfigError(
                f"provider {self.name}: providers.{self.name}.endpoint is not set",
                hint=f"set AZURE_OPENAI_ENDPOINT or add endpoint to [providers.{self.name}]",
            )

    def _build_client(self, api_key: str, http_client: Any) -> Any:
        import openai

        return openai.AsyncAzureOpenAI(
            azure_endpoint=self.cfg.endpoint or "",
            api_key=api_key,
            api_version=self.cfg.api_version or DEFAULT_AZURE_API_VERSION,
            max_retries=0,
            timeout=self.timeout_s,
            http_client=http_client,
        )


# --- failure classification -------------------------------------------------------------

_CONTENT_FILTER_CODES = frozenset({"content_filter", "ResponsibleAIPolicyViolation"})


def classify(exc: BaseException, *, secrets: Iterable[str | None] = ()) -> ProviderFailure:
    """The ProviderFailure for any exception one attempt raised (SDK, httpx or plain).

    ``secrets`` (the API key) are removed from the message, which is always one line.
    """
    if isinstance(exc, ProviderFailure):
        return exc
    kind, status, retry_after = _kind_of(exc)
    detail = getattr(exc, "message", None) or str(exc) or "no details"
    cause = exc.__cause__ or exc.__context__
    if kind in ("connection", "timeout") and cause is not None and str(cause) not in detail:
        detail = f"{detail} ({cause})"  # the SDK says "Connection error."; why is in its cause
    origin = type(exc).__name__ if status is None else f"{type(exc).__name__}, HTTP {status}"
    message = scrub(f"{kind} ({origin}): {detail}", secrets, limit=MESSAGE_LIMIT)
    return ProviderFailure(kind, message, status=status, retry_after_s=retry_after)


def _kind_of(exc: BaseException) -> tuple[FailureKind, int | None, float | None]:
    # An exception from the SDK can only exist once the SDK is imported; looking it up
    # rather than importing it keeps classify free for plain exceptions.
    openai: Any = sys.modules.get("openai")
    if openai is not None and isinstance(exc, openai.OpenAIError):
        return _kind_of_sdk_error(openai, exc)
    names = {cls.__name__ for cls in type(exc).__mro__}
    if "DecodingError" in names:  # httpx: the body could not be decoded
        return "malformed", None, None
    if "TimeoutException" in names or isinstance(exc, TimeoutError):
        return "timeout", None, None
    if names & {"TransportError", "RequestError"} or isinstance(exc, OSError):
        return "connection", None, None
    if "ClientError" in names and type(exc).__module__.startswith("aiohttp"):
        # The pass-through's transport (llm.upstream): a dropped or refused connection.
        return "connection", None, None
    if isinstance(exc, ValueError):  # json, UnicodeDecodeError, pydantic ValidationError
        return "malformed", None, None
    return "bad_request", None, None


def _kind_of_sdk_error(openai: Any, exc: Any) -> tuple[FailureKind, int | None, float | None]:
    if isinstance(exc, openai.APITimeoutError):
        return "timeout", None, None
    if isinstance(exc, openai.APIConnectionError):
        return "connection", None, None
    if isinstance(exc, openai.APIResponseValidationError):
        return "malformed", exc.status_code, None
    if isinstance(exc, openai.ContentFilterFinishReasonError):
        return "content_filter", None, None
    if not isinstance(exc, openai.APIStatusError):
        return "bad_request", None, None
    return _kind_of_status(exc.status_code, exc.response.headers, exc.code, exc.body)


def failure_for_status(
    status: int, headers: Mapping[str, str], raw: bytes, *, secrets: Iterable[str | None] = ()
) -> ProviderFailure:
    """The ProviderFailure of a non-2xx answer (status, headers, body) on the pass-through
    path: the kind, status and Retry-After ``classify`` gives the SDK's error for it."""
    from huntaze_cli.llm.upstream import error_details

    error, code, detail = error_details(raw)
    kind, status_, retry_after = _kind_of_status(status, headers, code, error)
    message = scrub(f"{kind} (HTTP {status}): {detail}", secrets, limit=MESSAGE_LIMIT)
    return ProviderFailure(kind, message, status=status_, retry_after_s=retry_after)


def _kind_of_status(
    status: int, headers: Mapping[str, str], code: object, body: object
) -> tuple[FailureKind, int | None, float | None]:
    """The failure class of an HTTP error status (``code``/``body``: its error object)."""
    retry_after = retry_after_s(headers)
    if status == 429:
        return "rate_limited", status, retry_after
    if status >= 500:
        return "server_error", status, retry_after
    if status in (401, 403):
        return "auth", status, None
    if status == 408:
        return "timeout", status, retry_after
    if _is_content_filter(code, body):
        return "content_filter", status, None
    if 400 <= status < 500:
        return "bad_request", status, None
    return "malformed", status, None


def _is_content_filter(code: object, body: object) -> bool:
    """Azure's prompt filter: ``code`` content_filter, at the top or in ``innererror``."""
    if code in _CONTENT_FILTER_CODES:
        return True
    if not isinstance(body, Mapping):
        return False
    if body.get("code") in _CONTENT_FILTER_CODES:
        return True
    inner = body.get("innererror") or body.get("inner_error")
    return isinstance(inner, Mapping) and inner.get("code") in _CONTENT_FILTER_CODES


# --- offline simulator -------------------------------------------------------------------

_OPENERS = (
    "Thank you so much, {a}!",
    "Hey {a}, you made my day!",
    "{a}, I am so grateful for you!",
    "You are the best, {a}!",
)
_CLOSERS = (
    "Your love for {b} means the world to me.",
    "Talking about {b} with you is my favourite part of the week.",
    "Can't wait to share more {b} with you soon.",
    "Stay amazing, and keep that {b} energy coming.",
)
_STOP_WORDS = frozenset(
    {
        "a", "about", "an", "and", "are", "as", "at", "be", "fan", "fans", "for", "from",
        "has", "have", "in", "is", "it", "its", "line", "lines", "loves", "me", "message",
        "my", "note", "of", "on", "one-line", "or", "quick", "say", "send", "short", "sweet",
        "thank-you", "thanks", "that", "the", "their", "them", "they", "this", "three-line",
        "to", "two", "two-line", "warm", "who", "with", "write", "you", "your",
    }
)  # fmt: skip
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")


class SimulatedProvider:
    """An offline provider for demos, dry runs and tests: same input, same answer, no network.

    The text is a short warm message built from the prompt's words; token counts follow
    the usual rule of thumb (about 1.3 tokens per word in, 4 characters per token out), so
    estimates and the ledger look like a real run. It never fails.
    """

    kind = "simulated"

    def __init__(self, name: str = "simulated", cfg: ProviderConfig | None = None) -> None:
        self.name = name
        self.cfg = cfg or ProviderConfig(kind="simulated")

    def deployment_for(self, model: str) -> str | None:
        return None

    async def complete(self, request: GenerationRequest, *, timeout: float) -> Completion:
        if self.cfg.latency_ms > 0:
            await asyncio.sleep(min(self.cfg.latency_ms / 1000, timeout))
        if request.body is not None:
            from huntaze_cli.llm.passthrough import simulated_answer

            return await simulated_answer(request, simulate(request))
        return simulate(request)

    async def aclose(self) -> None:
        return None


def simulate(request: GenerationRequest) -> Completion:
    """The simulated completion of ``request`` (deterministic)."""
    user = " ".join(m.content for m in request.messages if m.role == "user")
    salient = [w for w in _WORD.findall(user) if w.lower() not in _STOP_WORDS and len(w) > 2]
    # A capitalised word is most likely the fan's name, the last lowercase one an interest.
    a = next((w for w in salient if w[0].isupper()), salient[0] if salient else "friend")
    rest = [w for w in salient if w != a]
    b = next((w for w in reversed(rest) if w.islower()), rest[-1] if rest else "good vibes")
    seed = zlib.crc32(f"{request.model}\n{user}".encode())
    text = (
        f"{_OPENERS[seed % len(_OPENERS)].format(a=a)} "
        f"{_CLOSERS[(seed >> 8) % len(_CLOSERS)].format(b=b)}"
    )
    output_tokens = -(-len(text) // 4)
    if request.max_tokens is not None and output_tokens > request.max_tokens:
        output_tokens = max(request.max_tokens, 0)
        text = text[: output_tokens * 4].rsplit(" ", 1)[0] if output_tokens else ""
    return Completion(
        text=text,
        usage=Usage(input_tokens=estimate_input_tokens(request), output_tokens=output_tokens),
        deployment=None,
    )
