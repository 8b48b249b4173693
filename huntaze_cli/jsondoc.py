"""The one JSON form of a result, shared by the CLI's ``--json`` and the HTTP API.

Both layers call ``to_jsonable``, so a command's ``--json`` document and the route's
body cannot drift apart. Duck-typed so that importing this module does not import
pydantic (start-up time of the CLI).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import BaseModel


def to_jsonable(result: BaseModel | dict[str, Any] | list[Any]) -> Any:
    """``result`` as plain JSON types (a pydantic model is dumped in JSON mode)."""
    dump = getattr(result, "model_dump", None)
    return dump(mode="json") if dump is not None else result


def dump_json(result: BaseModel | dict[str, Any]) -> bytes:
    """The exact JSON document the CLI's ``--json`` prints for ``result`` (no newline)."""
    return json.dumps(to_jsonable(result), ensure_ascii=False).encode()
