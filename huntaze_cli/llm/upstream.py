"""The pass-through's HTTP client: the gateway's body posted as it is, the answer as bytes.

The /v1 gateway forwards whatever an OpenAI client sent, so it needs none of the SDK's
typed machinery; measured on the bench's fake upstream, the SDK's HTTP stack costs
about 1.2 ms of CPU per call where a pooled ``aiohttp`` session posting bytes costs
about 0.12 ms, and the gateway pays that on every call. So each OpenAI/Azure provider
keeps one ``Upstream``: one aiohttp session (pooled keep-alive connections, no cookie
jar) and the URL and auth header of its kind, spelt exactly as the SDK spells them:

* OpenAI: ``POST {base_url}/chat/completions``, ``Authorization: Bearer <key>``
  (``base_url`` defaults as the SDK's does: ``OPENAI_BASE_URL``, then api.openai.com);
* Azure: ``POST {endpoint}/openai/deployments/{deployment}/chat/completions
  ?api-version=...``, ``api-key: <key>``.

A non-2xx answer becomes the ProviderFailure ``providers.classify`` gives the SDK's
error for the same status, headers and body (``failure_for_status``), so a 429 with
Retry-After, a 5xx or Azure's content filter are handled alike on both paths.
``aiohttp`` is imported only here, on the gateway's first call.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit
from urllib.request import getproxies, proxy_bypass

from huntaze_cli import __version__

if TYPE_CHECKING:
    import aiohttp

OPENAI_DEFAULT_BASE_URL = "https://api.openai.com/v1"
_MIN_POOL = 100  # as the SDK's default keep-alive pool
_SDK_ENV_HEADERS = (
    ("OpenAI-Organization", "OPENAI_ORG_ID"),
    ("OpenAI-Project", "OPENAI_PROJECT_ID"),
)


class Upstream:
    """One provider's endpoint and pooled session; ``post`` returns the open response."""

    def __init__(
        self,
        kind: str,
        *,
        api_key: str,
        base_url: str | None = None,
        endpoint: str | None = None,
        api_version: str | None = None,
        concurrency: int = 32,
    ) -> None:
        self.kind = kind
        self.concurrency = concurrency
        headers = {
            "content-type": "application/json",
            "accept": "application/json",
            "user-agent": f"huntaze/{__version__}",
        }
        # The SDK sends these when its environment variables are set; so does this.
        for header, var in _SDK_ENV_HEADERS:
            if os.environ.get(var):
                headers[header] = os.environ[var]
        if kind == "azure":
            headers["api-key"] = api_key
            self._root = f"{(endpoint or '').rstrip('/')}/openai/deployments/"
            self._query = "?api-version=" + quote(api_version or "", safe="")
            probe = self._root
        else:
            headers["authorization"] = f"Bearer {api_key}"
            base = base_url or os.environ.get("OPENAI_BASE_URL") or OPENAI_DEFAULT_BASE_URL
            self._url = f"{base.rstrip('/')}/chat/completions"
            probe = self._url
        self.headers = headers
        self._proxy = _env_proxy(probe)
        self._urls: dict[str | None, Any] = {}
        self._session: aiohttp.ClientSession | None = None

    def url(self, deployment: str | None) -> Any:
        """The request URL (a parsed ``yarl.URL``, built once per deployment)."""
        url = self._urls.get(deployment)
        if url is None:
            from yarl import URL

            if self.kind == "azure":
                text = self._root + quote(deployment or "", safe="") + "/chat/completions"
                text += self._query
            else:
                text = self._url
            url = self._urls[deployment] = URL(text)
        return url

    def _open(self) -> aiohttp.ClientSession:
        import aiohttp

        connector = aiohttp.TCPConnector(
            limit=max(self.concurrency, _MIN_POOL), limit_per_host=0, ttl_dns_cache=300
        )
        return aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            headers=self.headers,
            raise_for_status=False,
        )

    async def post(
        self, payload: bytes, *, deployment: str | None, timeout: float, stream: bool
    ) -> aiohttp.ClientResponse:
        """POST ``payload``; the response with its headers read and its body not yet.

        A complete answer must arrive within ``timeout``; a stream must start within it
        and never pause longer (as the SDK's per-read timeout).
        """
        import aiohttp

        session = self._session
        if session is None or session.closed:
            session = self._session = self._open()
        limit = (
            aiohttp.ClientTimeout(total=None, sock_connect=timeout, sock_read=timeout)
            if stream
            else aiohttp.ClientTimeout(total=timeout)
        )
        return await session.post(
            self.url(deployment), data=payload, timeout=limit, proxy=self._proxy
        )

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()


def _env_proxy(url: str) -> str | None:
    """The proxy the environment names for ``url`` (as httpx reads it), or None."""
    parts = urlsplit(url)
    proxies = getproxies()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if proxy is None or (parts.hostname and proxy_bypass(parts.hostname)):
        return None
    return proxy


class Body:
    """An aiohttp response's body as ``passthrough.UpstreamStream`` reads one."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    def aiter_bytes(self) -> AsyncIterator[bytes]:
        """Whatever has arrived, as it arrives (no generator of its own in between)."""
        return self._response.content.iter_any()

    async def aclose(self) -> None:
        response = self._response
        if response.content.at_eof():
            response.release()  # read to its end: the connection goes back to the pool
        else:
            response.close()  # mid-answer: closing the connection cancels the call


def error_details(raw: bytes) -> tuple[Any, str | None, str]:
    """The error object of an error body (its ``error`` member, or the body), its code
    and its message, as the SDK reads them."""
    try:
        doc: Any = json.loads(raw)
    except ValueError:
        doc = None
    error = doc.get("error", doc) if isinstance(doc, dict) else doc
    code = error.get("code") if isinstance(error, Mapping) else None
    if isinstance(error, Mapping) and isinstance(error.get("message"), str):
        message = error["message"]
    elif doc is not None:
        message = json.dumps(doc)
    else:
        message = raw.decode("utf-8", "replace")
    return error, code if isinstance(code, str) else None, message
