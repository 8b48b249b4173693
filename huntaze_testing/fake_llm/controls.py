"""The fake server's programmable state: settings, fault scopes, recorded requests, counters.

:class:`Controls` is everything about a :class:`~huntaze_testing.fake_llm.server.FakeLLM`
except the network: how tests program it (``configure``, ``script``, ``set_mix``,
``control``...) and read it back (``requests``, ``count``, ``stats``). It is thread-safe:
tests program it from their thread while the server's loop runs on another.
"""

from __future__ import annotations

import enum
import random
import threading
from collections import Counter, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from huntaze_testing.fake_llm.faults import (
    ANY,
    Outcome,
    Scope,
    decide,
    parse_mix,
    parse_script,
)
from huntaze_testing.fake_llm.wire import KINDS


@dataclass(slots=True)
class RecordedRequest:
    """One request seen on a chat-completions route (or an unknown route, kind ``other``).

    ``target`` is the model (OpenAI) or deployment (Azure); ``outcome`` is the outcome name
    chosen (``ok``, ``429``, ``timeout``...); ``status`` the HTTP status sent (0 = none);
    ``time`` is ``time.time()`` at arrival.
    """

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    kind: str
    target: str
    outcome: str
    status: int
    time: float

    def to_json(self, *, redact: bool = True) -> dict[str, Any]:
        """A JSON-able dict; auth header values are replaced by ``***`` when ``redact``."""
        headers = dict(self.headers)
        if redact:
            for name in ("authorization", "api-key"):
                if name in headers:
                    headers[name] = "***"
        return {
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "headers": headers,
            "body": self.body,
            "kind": self.kind,
            "target": self.target,
            "outcome": self.outcome,
            "status": self.status,
            "time": self.time,
        }


class _Unset(enum.Enum):
    """Sentinel type for "leave this setting unchanged"."""

    UNSET = 0


UNSET: Final = _Unset.UNSET

_RULE_KEYS: Final = frozenset(
    {"kind", "target", "script", "script_append", "mix", "seed", "latency_ms", "jitter_ms"}
)
_SETTING_KEYS: Final = frozenset(
    {
        "openai_keys",
        "azure_keys",
        "deployment_models",
        "reply_tokens",
        "cache_min_tokens",
        "cache_block",
        "timeout_sleep_s",
    }
)


def count_in_stats(
    stats: Mapping[str, Any],
    kind: str | None = None,
    target: str | None = None,
    outcome: str | None = None,
) -> int:
    """Sum ``stats["counts"]`` rows matching the given kind/target/outcome (None = any)."""
    total = 0
    for row in stats["counts"]:
        if kind is not None and row["kind"] != kind:
            continue
        if target is not None and row["target"] != target:
            continue
        if outcome is not None and row["outcome"] != outcome:
            continue
        total += int(row["count"])
    return total


class Controls:
    """Settings, fault scopes and observations of one fake server (no networking here).

    Arguments have the meaning documented on :class:`~huntaze_testing.fake_llm.FakeLLM`.
    """

    def __init__(
        self,
        *,
        latency_ms: float,
        jitter_ms: float,
        openai_keys: Iterable[str] | None,
        azure_keys: Iterable[str] | None,
        deployment_models: Mapping[str, str] | None,
        reply_tokens: int,
        cache_min_tokens: int,
        cache_block: int,
        timeout_sleep_s: float,
        max_recorded: int,
        seed: int,
    ) -> None:
        self._seed = seed
        self._lock = threading.Lock()
        self._defaults: dict[str, Any] = {
            "latency_ms": latency_ms,
            "jitter_ms": jitter_ms,
            "openai_keys": None if openai_keys is None else list(openai_keys),
            "azure_keys": None if azure_keys is None else list(azure_keys),
            "deployment_models": dict(deployment_models or {}),
            "reply_tokens": reply_tokens,
            "cache_min_tokens": cache_min_tokens,
            "cache_block": cache_block,
            "timeout_sleep_s": timeout_sleep_s,
        }
        self._records: deque[RecordedRequest] = deque(maxlen=max_recorded)
        self._counts: Counter[tuple[str, str, str]] = Counter()
        self._answered: Counter[str] = Counter()  # responses sent, by outcome
        self._scopes: dict[tuple[str, str], Scope] = {}
        self._openai_keys: frozenset[str] | None = None
        self._azure_keys: frozenset[str] | None = None
        self._deployment_models: dict[str, str] = {}
        self.reply_tokens = reply_tokens
        self.cache_min_tokens = cache_min_tokens
        self.cache_block = cache_block
        self.timeout_sleep_s = timeout_sleep_s
        self._seq = 0
        self._connections_total = 0
        self._streams_abandoned = 0  # paced streams whose client hung up mid-answer
        self._in_flight = 0
        self._max_in_flight = 0
        self._apply_defaults()

    def _apply_defaults(self) -> None:
        """Restore the constructor's settings and fault scopes."""
        self._reset_scopes()
        d = self._defaults
        self.update_settings(
            openai_keys=d["openai_keys"],
            azure_keys=d["azure_keys"],
            deployment_models=d["deployment_models"],
            reply_tokens=d["reply_tokens"],
            cache_min_tokens=d["cache_min_tokens"],
            cache_block=d["cache_block"],
            timeout_sleep_s=d["timeout_sleep_s"],
        )

    def _reset_scopes(self) -> None:
        """Back to the single default ``(*, *)`` scope built from the constructor."""
        d = self._defaults
        with self._lock:
            self._scopes = {
                (ANY, ANY): Scope(
                    rng=random.Random(self._seed),
                    latency_ms=float(d["latency_ms"]),
                    jitter_ms=float(d["jitter_ms"]),
                    jitter_rng=random.Random(self._seed + 1),
                )
            }

    def update_settings(
        self,
        *,
        openai_keys: Iterable[str] | _Unset | None = UNSET,
        azure_keys: Iterable[str] | _Unset | None = UNSET,
        deployment_models: Mapping[str, str] | _Unset = UNSET,
        reply_tokens: int | _Unset = UNSET,
        cache_min_tokens: int | _Unset = UNSET,
        cache_block: int | _Unset = UNSET,
        timeout_sleep_s: float | _Unset = UNSET,
    ) -> None:
        """Change server-wide settings (same meaning as the constructor); UNSET = unchanged.

        ``deployment_models`` replaces the whole mapping; keys ``None`` = any non-empty key.
        """
        with self._lock:
            if not isinstance(openai_keys, _Unset):
                self._openai_keys = None if openai_keys is None else frozenset(openai_keys)
            if not isinstance(azure_keys, _Unset):
                self._azure_keys = None if azure_keys is None else frozenset(azure_keys)
            if not isinstance(deployment_models, _Unset):
                self._deployment_models = dict(deployment_models)
            if not isinstance(reply_tokens, _Unset):
                if reply_tokens < 1:
                    raise ValueError("reply_tokens must be >= 1")
                self.reply_tokens = int(reply_tokens)
            if not isinstance(cache_min_tokens, _Unset):
                self.cache_min_tokens = int(cache_min_tokens)
            if not isinstance(cache_block, _Unset):
                if cache_block < 1:
                    raise ValueError("cache_block must be >= 1")
                self.cache_block = int(cache_block)
            if not isinstance(timeout_sleep_s, _Unset):
                self.timeout_sleep_s = float(timeout_sleep_s)

    def configure(
        self,
        kind: str = ANY,
        target: str = ANY,
        *,
        script: Sequence[str] | None = None,
        script_append: Sequence[str] | None = None,
        mix: Mapping[str, float] | None = None,
        seed: int | None = None,
        latency_ms: float | None = None,
        jitter_ms: float | None = None,
    ) -> None:
        """Program the fault scope ``(kind, target)``; arguments left ``None`` are unchanged.

        * ``script`` replaces the scope's FIFO of next outcomes, ``script_append`` appends;
        * ``mix`` maps outcome specs to probabilities (sum <= 1, the rest is ``ok``); ``{}``
          removes the mix; ``seed`` (re)seeds the scope's mix RNG (default seed 0);
        * ``latency_ms`` / ``jitter_ms`` set the scope's latency.

        Specs are validated here, so a typo raises ``ValueError`` at once.
        """
        if kind not in (*KINDS, ANY):
            raise ValueError(f"kind must be 'openai', 'azure' or '*', not {kind!r}")
        new_script = parse_script(script)
        appended = parse_script(script_append)
        new_mix = None if mix is None else parse_mix(mix)
        if latency_ms is not None and latency_ms < 0:
            raise ValueError("latency_ms must be >= 0")
        if jitter_ms is not None and jitter_ms < 0:
            raise ValueError("jitter_ms must be >= 0")
        with self._lock:
            scope = self._scopes.get((kind, target))
            if scope is None:
                scope = self._scopes[(kind, target)] = Scope()
            if new_script is not None:
                scope.script = deque(new_script)
            if appended is not None:
                scope.script.extend(appended)
            if new_mix is not None:
                scope.mix = new_mix or None
                scope.mix_spec = {k: float(v) for k, v in mix.items()} if mix else None
                scope.rng = random.Random(0 if seed is None else seed)
            elif seed is not None:
                scope.rng = random.Random(seed)
            if latency_ms is not None:
                scope.latency_ms = float(latency_ms)
            if jitter_ms is not None:
                scope.jitter_ms = float(jitter_ms)
                scope.jitter_rng = random.Random(0 if seed is None else seed + 1)

    def script(self, kind: str, outcomes: Iterable[str], target: str = ANY) -> None:
        """Append outcomes to the FIFO of scope ``(kind, target)``: ``script("azure", ["429",
        "ok"])`` makes the next Azure request a 429 and the one after a success."""
        self.configure(kind, target, script_append=list(outcomes))

    def set_mix(
        self, kind: str, mix: Mapping[str, float], *, seed: int = 0, target: str = ANY
    ) -> None:
        """Give scope ``(kind, target)`` a seeded probabilistic mix of outcomes."""
        self.configure(kind, target, mix=mix, seed=seed)

    def set_latency(
        self, latency_ms: float, jitter_ms: float = 0.0, *, kind: str = ANY, target: str = ANY
    ) -> None:
        """Set the latency of scope ``(kind, target)`` (default: every request)."""
        self.configure(kind, target, latency_ms=latency_ms, jitter_ms=jitter_ms)

    def clear_faults(self) -> None:
        """Drop every scope's script, mix and latency, back to the constructor's latency.

        Server-wide settings (keys, deployment models...) and counters are kept.
        """
        self._reset_scopes()

    def clear_stats(self) -> None:
        """Forget recorded requests and counters (faults stay as programmed)."""
        with self._lock:
            self._records.clear()
            self._counts.clear()
            self._answered.clear()
            self._connections_total = 0
            self._streams_abandoned = 0
            self._max_in_flight = self._in_flight

    def reset(self) -> None:
        """Back to a fresh server: constructor settings, no faults, no records or counters."""
        self._apply_defaults()
        self.clear_stats()

    def control(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """Apply a control document (what ``POST /_control`` takes); returns :meth:`stats`.

        Keys, applied in this order, all optional:

        * ``"reset": true`` -> :meth:`reset`; ``"clear_faults": true``;
          ``"clear_stats": true``;
        * settings of :meth:`update_settings` (``openai_keys``, ``azure_keys``,
          ``deployment_models``, ``reply_tokens``, ``cache_min_tokens``, ``cache_block``,
          ``timeout_sleep_s``);
        * one rule given inline (``kind``, ``target``, ``script``, ``script_append``, ``mix``,
          ``seed``, ``latency_ms``, ``jitter_ms``), then ``"rules": [rule, ...]``, each
          passed to :meth:`configure`.

        Raises ``ValueError`` for unknown keys or bad specs.
        """
        allowed = _RULE_KEYS | _SETTING_KEYS | {"reset", "clear_faults", "clear_stats", "rules"}
        unknown = set(payload) - allowed
        if unknown:
            raise ValueError(f"unknown control key(s): {sorted(unknown)}")
        rules: list[Mapping[str, Any]] = []
        inline = {k: v for k, v in payload.items() if k in _RULE_KEYS}
        if inline:
            rules.append(inline)
        extra = payload.get("rules") or []
        if not isinstance(extra, list):
            raise ValueError("'rules' must be a list")
        rules.extend(extra)
        for rule in rules:
            if not isinstance(rule, Mapping) or set(rule) - _RULE_KEYS:
                raise ValueError(f"bad rule {rule!r}: keys must be among {sorted(_RULE_KEYS)}")
        if payload.get("reset"):
            self.reset()
        if payload.get("clear_faults"):
            self.clear_faults()
        if payload.get("clear_stats"):
            self.clear_stats()
        settings = {k: v for k, v in payload.items() if k in _SETTING_KEYS}
        if settings:
            self.update_settings(**settings)
        for rule in rules:
            self.configure(**rule)
        return self.stats()

    # ------------------------------------------------------------------ observation

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of the recorded requests, oldest first (bounded by ``max_recorded``)."""
        with self._lock:
            return list(self._records)

    def count(
        self, kind: str | None = None, target: str | None = None, outcome: str | None = None
    ) -> int:
        """How many requests matched ``kind`` / ``target`` / ``outcome`` (None = any).

        Counted at arrival, so a request still held by latency is already counted.
        """
        with self._lock:
            return sum(
                n
                for (k, t, o), n in self._counts.items()
                if (kind is None or k == kind)
                and (target is None or t == target)
                and (outcome is None or o == outcome)
            )

    def stats(self) -> dict[str, Any]:
        """Counters as JSON (what ``GET /_stats`` returns)."""
        with self._lock:
            counts = [
                {"kind": k, "target": t, "outcome": o, "count": n}
                for (k, t, o), n in sorted(self._counts.items())
            ]
            by_kind: Counter[str] = Counter()
            for (k, _t, _o), n in self._counts.items():
                by_kind[k] += n
            scopes = [
                {
                    "kind": k,
                    "target": t,
                    "script_remaining": [o.spec for o in s.script],
                    "mix": s.mix_spec,
                    "latency_ms": s.latency_ms,
                    "jitter_ms": s.jitter_ms,
                }
                for (k, t), s in self._scopes.items()
            ]
            return {
                "requests_total": sum(self._counts.values()),
                # Requests counted above at arrival; these got a response (by outcome).
                "answered_total": sum(self._answered.values()),
                "answered": dict(self._answered),
                "by_kind": dict(by_kind),
                "counts": counts,
                "connections_total": self._connections_total,
                "streams_abandoned": self._streams_abandoned,
                "in_flight": self._in_flight,
                "max_in_flight": self._max_in_flight,
                "scopes": scopes,
            }

    def _record(self, rec: RecordedRequest) -> None:
        """Keep one request and count it; the caller holds the lock."""
        self._records.append(rec)
        self._counts[(rec.kind, rec.target, rec.outcome)] += 1

    def _decide(self, kind: str, target: str) -> tuple[Outcome, float]:
        """The outcome and latency (seconds) of one request; the caller holds the lock."""
        return decide(self._scopes, kind, target)
