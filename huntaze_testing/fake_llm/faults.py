"""Fault programming: outcome specs, the per-scope rules, and how one request's fate is drawn.

An outcome spec (``"ok"``, ``"429:retry-after-ms=200"``, ``"timeout"``...) parses to an
:class:`Outcome`; a :class:`Scope` holds the FIFO script, seeded probability mix and
latency of one ``(kind, target)``; :func:`decide` walks the scopes most specific first.
The grammar and resolution order are in the package docstring.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from huntaze_testing.fake_llm.wire import error_bodies

ANY: Final = "*"
_RETRY_HEADERS: Final = ("retry-after", "retry-after-ms", "x-ms-retry-after-ms")


@dataclass(frozen=True, slots=True)
class Outcome:
    """A parsed outcome spec: what the server answers to one request.

    ``status`` is 200 for ``ok`` and ``malformed``, 0 for ``timeout`` and ``drop`` (no
    response), else the HTTP error status. ``latency_ms`` overrides the scope's latency.
    """

    spec: str
    name: str
    status: int
    headers: tuple[tuple[str, str], ...] = ()
    latency_ms: float | None = None
    bodies: tuple[bytes, bytes] = (b"", b"")
    event_ms: float = 0.0  # a streamed answer: pause between its events

    def body_for(self, kind: str) -> bytes:
        """The error body in the shape of route ``kind`` (``openai`` or ``azure``)."""
        return self.bodies[1] if kind == "azure" else self.bodies[0]


def parse_outcome(spec: str) -> Outcome:
    """Parse an outcome spec such as ``"ok"``, ``"429:retry-after-ms=200"`` or ``"drop"``.

    Raises ``ValueError`` for an unknown outcome or parameter.
    """
    text = spec.strip()
    head, _, raw_params = text.partition(":")
    name = head.strip().lower()
    params: dict[str, str] = {}
    if raw_params.strip():
        for item in raw_params.split(","):
            key, sep, value = item.partition("=")
            if not sep or not key.strip():
                raise ValueError(f"bad parameter {item!r} in outcome {spec!r} (want key=value)")
            params[key.strip().lower()] = value.strip()
    latency: float | None = None
    if "latency-ms" in params:
        latency = float(params.pop("latency-ms"))
        if latency < 0:
            raise ValueError(f"negative latency-ms in outcome {spec!r}")
    event_ms = 0.0
    if "event-ms" in params:
        event_ms = float(params.pop("event-ms"))
        if event_ms < 0:
            raise ValueError(f"negative event-ms in outcome {spec!r}")
    headers: list[tuple[str, str]] = []
    if name == "200":
        name = "ok"
    if name == "429":
        for header in _RETRY_HEADERS:
            if header in params:
                value = params.pop(header)
                float(value)  # must be numeric, like the real headers
                headers.append((header, value))
    if params:
        raise ValueError(f"unknown parameter(s) {sorted(params)} in outcome {spec!r}")
    if name in ("ok", "malformed"):
        return Outcome(text, name, 200, (), latency, event_ms=event_ms)
    if name in ("timeout", "drop", "stream_drop"):
        return Outcome(text, name, 0, (), latency, event_ms=event_ms)
    if name == "content_filter":
        return Outcome(text, name, 400, (), latency, error_bodies(name, 400))
    if len(name) == 3 and name.isdigit() and 400 <= int(name) <= 599:
        status = int(name)
        return Outcome(text, name, status, tuple(headers), latency, error_bodies(name, status))
    raise ValueError(
        f"unknown outcome {spec!r}: use ok, 429[:retry-after=S|retry-after-ms=MS|"
        "x-ms-retry-after-ms=MS], 500, 503, 400, 401, 403, <4xx/5xx>, timeout, drop, "
        "stream_drop, content_filter or malformed"
    )


OK: Final = parse_outcome("ok")
AUTH_WRONG: Final = parse_outcome("401")
AUTH_MISSING: Final = Outcome("401", "401", 401, (), 0.0, AUTH_WRONG.bodies)
INVALID: Final = Outcome("400", "400", 400, (), 0.0, error_bodies("400", 400))


def parse_mix(mix: Mapping[str, float]) -> list[tuple[float, Outcome]]:
    """A probability mix as ``(cumulative probability, outcome)`` pairs; checks the sum."""
    cumulative = 0.0
    parsed: list[tuple[float, Outcome]] = []
    for spec, prob in mix.items():
        if prob < 0:
            raise ValueError(f"negative probability for {spec!r}")
        cumulative += float(prob)
        parsed.append((cumulative, parse_outcome(spec)))
    if cumulative > 1.0 + 1e-9:
        raise ValueError(f"mix probabilities sum to {cumulative} > 1")
    return parsed


def parse_script(specs: Sequence[str] | None) -> list[Outcome] | None:
    """A script's outcomes (None stays None: "leave the script unchanged")."""
    return None if specs is None else [parse_outcome(s) for s in specs]


@dataclass(slots=True)
class Scope:
    """Fault settings for one ``(kind, target)`` scope."""

    script: deque[Outcome] = field(default_factory=deque)
    mix: list[tuple[float, Outcome]] | None = None
    mix_spec: dict[str, float] | None = None
    rng: random.Random = field(default_factory=lambda: random.Random(0))
    latency_ms: float | None = None
    jitter_ms: float | None = None
    jitter_rng: random.Random = field(default_factory=lambda: random.Random(1))


def decide(
    scopes: Mapping[tuple[str, str], Scope], kind: str, target: str
) -> tuple[Outcome, float]:
    """Pick the outcome and latency (seconds) for one request; the caller holds the lock.

    Consumes a scripted outcome or draws from a mix (advancing that scope's RNG).
    """
    chain = [
        s
        for s in (
            scopes.get((kind, target)),
            scopes.get((kind, ANY)),
            scopes.get((ANY, target)),
            scopes.get((ANY, ANY)),
        )
        if s is not None
    ]
    outcome: Outcome | None = None
    for scope in chain:
        if scope.script:
            outcome = scope.script.popleft()
            break
    if outcome is None:
        for scope in chain:
            if scope.mix is not None:
                r = scope.rng.random()
                for threshold, candidate in scope.mix:
                    if r < threshold:
                        outcome = candidate
                        break
                break
    if outcome is None:
        outcome = OK
    latency_ms = 0.0
    for scope in chain:
        if scope.latency_ms is not None:
            latency_ms = scope.latency_ms
            break
    for scope in chain:
        if scope.jitter_ms is not None:
            if scope.jitter_ms > 0:
                latency_ms += scope.jitter_rng.uniform(0.0, scope.jitter_ms)
            break
    if outcome.latency_ms is not None:
        latency_ms = outcome.latency_ms
    return outcome, latency_ms / 1000.0
