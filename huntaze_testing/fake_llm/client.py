"""Programs and reads a fake server living in another process, over its control endpoints."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterable, Mapping
from typing import Any

from huntaze_testing.fake_llm.controls import count_in_stats
from huntaze_testing.fake_llm.faults import ANY


class FakeLLMClient:
    """Programs and reads a FakeLLM on another process over its HTTP control endpoints.

    Mirrors the in-process API: ``configure``, ``script``, ``set_mix``, ``set_latency``,
    ``update_settings`` (as control keys), ``reset``, ``clear_faults``, ``clear_stats``,
    ``stats``, ``count`` and ``requests`` (JSON dicts, auth headers redacted).
    """

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://{self.host}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        """``base_url`` for ``AsyncOpenAI``."""
        return f"{self.base_url}/v1"

    @property
    def azure_endpoint(self) -> str:
        """``azure_endpoint`` for ``AsyncAzureOpenAI``."""
        return self.base_url

    def _call(self, method: str, path: str, payload: Any = None) -> Any:
        """One JSON request to the control endpoints (no proxies: plain loopback socket)."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        try:
            body = None if payload is None else json.dumps(payload).encode()
            headers = {"content-type": "application/json"} if body is not None else {}
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            data = json.loads(resp.read() or b"null")
            if resp.status != 200:
                raise ValueError(f"{method} {path} -> {resp.status}: {data}")
            return data
        finally:
            conn.close()

    def control(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """``POST /_control`` (see :meth:`FakeLLM.control`); returns the stats."""
        result: dict[str, Any] = self._call("POST", "/_control", dict(payload))
        return result

    def configure(self, kind: str = ANY, target: str = ANY, **rule: Any) -> None:
        """Same as :meth:`FakeLLM.configure`."""
        self.control({"kind": kind, "target": target, **rule})

    def script(self, kind: str, outcomes: Iterable[str], target: str = ANY) -> None:
        """Same as :meth:`FakeLLM.script` (appends)."""
        self.configure(kind, target, script_append=list(outcomes))

    def set_mix(
        self, kind: str, mix: Mapping[str, float], *, seed: int = 0, target: str = ANY
    ) -> None:
        """Same as :meth:`FakeLLM.set_mix`."""
        self.configure(kind, target, mix=dict(mix), seed=seed)

    def set_latency(
        self, latency_ms: float, jitter_ms: float = 0.0, *, kind: str = ANY, target: str = ANY
    ) -> None:
        """Same as :meth:`FakeLLM.set_latency`."""
        self.configure(kind, target, latency_ms=latency_ms, jitter_ms=jitter_ms)

    def reset(self) -> None:
        """Same as :meth:`FakeLLM.reset`."""
        self.control({"reset": True})

    def clear_faults(self) -> None:
        """Same as :meth:`FakeLLM.clear_faults`."""
        self.control({"clear_faults": True})

    def clear_stats(self) -> None:
        """Same as :meth:`FakeLLM.clear_stats`."""
        self.control({"clear_stats": True})

    def stats(self) -> dict[str, Any]:
        """``GET /_stats``."""
        result: dict[str, Any] = self._call("GET", "/_stats")
        return result

    def count(
        self, kind: str | None = None, target: str | None = None, outcome: str | None = None
    ) -> int:
        """Same as :meth:`FakeLLM.count`."""
        return count_in_stats(self.stats(), kind, target, outcome)

    def requests(self, limit: int | None = None) -> list[dict[str, Any]]:
        """``GET /_requests``: the last ``limit`` recorded requests (all if None)."""
        path = "/_requests" if limit is None else f"/_requests?limit={limit}"
        result: list[dict[str, Any]] = self._call("GET", path)
        return result
