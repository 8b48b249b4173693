"""The fake server as a child process (its CPU outside the measured one), and its command line.

python -m huntaze_testing.fake_llm --port 0 --latency-ms 50   # prints FAKE_LLM_PORT=<port>
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import subprocess
import sys
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Self

from huntaze_testing.fake_llm.client import FakeLLMClient
from huntaze_testing.fake_llm.server import FakeLLM


class FakeLLMProcess(FakeLLMClient):
    """Runs ``python -m huntaze_testing.fake_llm`` as a child process on a free port.

    Keyword arguments are the command-line options (``latency_ms``, ``jitter_ms``,
    ``openai_keys``, ``azure_keys``, ``deployment_models``, ``reply_tokens``, ``seed``,
    ``timeout_sleep_s``); everything else is programmed through the control endpoint.
    """

    def __init__(
        self,
        *,
        latency_ms: float = 0.0,
        jitter_ms: float = 0.0,
        openai_keys: Sequence[str] = (),
        azure_keys: Sequence[str] = (),
        deployment_models: Mapping[str, str] | None = None,
        reply_tokens: int = 24,
        seed: int = 0,
        timeout_sleep_s: float = 30.0,
    ) -> None:
        super().__init__(0)
        args = [
            sys.executable,
            "-m",
            "huntaze_testing.fake_llm",
            "--port",
            "0",
            "--latency-ms",
            str(latency_ms),
            "--jitter-ms",
            str(jitter_ms),
            "--reply-tokens",
            str(reply_tokens),
            "--seed",
            str(seed),
            "--timeout-sleep-s",
            str(timeout_sleep_s),
        ]
        for key in openai_keys:
            args += ["--openai-key", key]
        for key in azure_keys:
            args += ["--azure-key", key]
        for dep, model in (deployment_models or {}).items():
            args += ["--deployment-model", f"{dep}={model}"]
        self._args = args
        self._proc: subprocess.Popen[str] | None = None

    def start(self) -> Self:
        """Start the child and wait for it to report its port."""
        proc = subprocess.Popen(self._args, stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("FAKE_LLM_PORT="):
            proc.kill()
            proc.wait()
            raise RuntimeError(f"fake LLM process did not start (got {line!r})")
        self.port = int(line.strip().split("=", 1)[1])
        self._proc = proc
        return self

    @property
    def pid(self) -> int:
        """The child's process id."""
        if self._proc is None:
            raise RuntimeError("FakeLLMProcess is not started")
        return self._proc.pid

    def stop(self) -> None:
        """Terminate the child (by its pid) and wait for it."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options of the standalone server."""
    p = argparse.ArgumentParser(description="Fake OpenAI / Azure OpenAI chat-completions server")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 = a free port (printed at start)")
    p.add_argument("--latency-ms", type=float, default=0.0)
    p.add_argument("--jitter-ms", type=float, default=0.0)
    p.add_argument("--openai-key", action="append", default=[], help="accepted key (repeat)")
    p.add_argument("--azure-key", action="append", default=[], help="accepted key (repeat)")
    p.add_argument(
        "--deployment-model", action="append", default=[], help="DEPLOYMENT=MODEL (repeat)"
    )
    p.add_argument("--reply-tokens", type=int, default=24)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout-sleep-s", type=float, default=30.0)
    p.add_argument("--control", default=None, help="a JSON control document applied at start")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the server in this process until interrupted; prints ``FAKE_LLM_PORT=<port>``."""
    args = _parse_args(argv)
    models = dict(item.split("=", 1) for item in args.deployment_model)
    server = FakeLLM(
        host=args.host,
        port=args.port,
        latency_ms=args.latency_ms,
        jitter_ms=args.jitter_ms,
        openai_keys=args.openai_key or None,
        azure_keys=args.azure_key or None,
        deployment_models=models,
        reply_tokens=args.reply_tokens,
        seed=args.seed,
        timeout_sleep_s=args.timeout_sleep_s,
    )
    if args.control:
        server.control(json.loads(args.control))

    async def run() -> None:
        await server.astart()
        print(f"FAKE_LLM_PORT={server.port}", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await server.astop()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())
