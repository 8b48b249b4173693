"""The OpenAI-compatible gateway's use cases: one chat completion, and the model list.

``POST /v1/chat/completions`` hands the client's body here; it is checked just enough
to route it (a model, a list of messages), turned into a pass-through
``GenerationRequest`` tagged with the caller's tenant, account and campaign, and run by
the same orchestrator as campaigns: routing, failover, circuit breakers, the ledger.
Everything else in the body is the upstream's to judge and goes there unchanged.

Which providers may serve a model is ``llm.routing.serves`` (an Azure provider with a
``deployments`` map serves the models in it; the others, any model); a model no
provider serves is unknown (404).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from huntaze_cli.errors import InputError, NotFoundError
from huntaze_cli.llm.routing import models_served, serves

if TYPE_CHECKING:
    from huntaze_cli.config import Config
    from huntaze_cli.llm.types import GenerationRequest, GenerationResult, Provider

# Ledger tags come from request headers: short and printable, like the CLI's names.
TAG_MAX = 256


class Generates(Protocol):
    """What runs a request: the daemon's ``Generator`` (or an ``Orchestrator``)."""

    @property
    def config(self) -> Config: ...

    @property
    def providers(self) -> dict[str, Any]: ...

    async def generate(self, request: GenerationRequest) -> GenerationResult: ...


def serving(providers: Mapping[str, Provider], model: str) -> frozenset[str] | None:
    """The providers that may serve ``model`` (None: every one); NotFoundError when none
    does, naming the routable models."""
    names = models_served(providers, model)
    if names is None or names:
        return names
    raise NotFoundError(
        f"model {model!r} is not routable: no configured provider serves it "
        f"(routable: {', '.join(routable_models(providers)) or 'none'})",
        hint="add it to an Azure provider's deployments, or configure an openai provider",
        field="model",
    )


def routable_models(providers: Mapping[str, Provider], config: Config | None = None) -> list[str]:
    """The models the configuration names: Azure deployments, priced overrides, the
    default model, in that order, each once (OpenAI providers take others as well)."""
    names: dict[str, None] = {}
    for provider in providers.values():
        cfg = getattr(provider, "cfg", None)
        for model in getattr(cfg, "deployments", None) or {}:
            names[model] = None
    if config is not None:
        for key in config.pricing.overrides:
            provider_name, _, model = key.partition("/")
            if provider_name in providers:
                names[model] = None
        names[config.routing.default_model] = None
    return [model for model in names if _routable(providers, model)]


def _routable(providers: Mapping[str, Provider], model: str) -> bool:
    return any(serves(provider, model) for provider in providers.values())


def models(generator: Generates) -> dict[str, Any]:
    """``GET /v1/models``: OpenAI's list shape, each model with the providers serving it."""
    providers = generator.providers
    created = int(time.time())
    data = []
    for model in routable_models(providers, generator.config):
        owners = [name for name, provider in providers.items() if serves(provider, model)]
        data.append(
            {
                "id": model,
                "object": "model",
                "created": created,
                "owned_by": owners[0],
                "providers": owners,
            }
        )
    return {"object": "list", "data": data}


def request_for(
    body: Any,
    providers: Mapping[str, Provider],
    *,
    tenant: str,
    account: str | None = None,
    campaign: str | None = None,
) -> GenerationRequest:
    """The pass-through request for a client's body; InputError (naming the field) or
    NotFoundError (the model) when it cannot be routed."""
    from huntaze_cli.llm.types import GenerationRequest, Message

    if not isinstance(body, dict):
        raise InputError("the request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise InputError("model: a model name is required", field="model")
    raw_messages = body.get("messages")
    if not isinstance(raw_messages, list) or not raw_messages:
        raise InputError("messages: a non-empty list of messages is required", field="messages")
    messages = []
    for n, message in enumerate(raw_messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise InputError(f"messages[{n}]: each message needs a role", field="messages")
        messages.append(Message(message["role"], _text(message.get("content"))))
    stream = body.get("stream", False)
    if stream is not None and not isinstance(stream, bool):
        raise InputError("stream: must be true or false", field="stream")
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    return GenerationRequest(
        request_id=f"gw{time.time_ns():016x}{os.urandom(4).hex()}",
        model=model,
        messages=messages,
        max_tokens=limit if isinstance(limit, int) and not isinstance(limit, bool) else None,
        account=_tag(account, "X-Huntaze-Account"),
        campaign_id=_tag(campaign, "X-Huntaze-Campaign"),
        tenant=tenant,
        body=body,
        stream=bool(stream),
        only=serving(providers, model),
    )


def _text(content: Any) -> str:
    """The text of a message's content (a string, or the text of its content parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def _tag(value: str | None, header: str) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if not value or len(value) > TAG_MAX or not value.isprintable():
        raise InputError(f"{header}: must be 1 to {TAG_MAX} printable characters", field=header)
    return value


async def chat_completion(
    generator: Generates,
    body: Any,
    *,
    tenant: str,
    account: str | None = None,
    campaign: str | None = None,
) -> GenerationResult:
    """Run one chat completion; GenerationFailed (or a ConfigError) when nothing served it.

    The result holds the upstream's body as it came (``raw``) or, for a stream, the
    events still to forward (``stream``); its attempt is recorded when the stream ends.
    """
    request = request_for(
        body, generator.providers, tenant=tenant, account=account, campaign=campaign
    )
    return await generator.generate(request)
