"""The base of every config section: unknown keys rejected, TOML types checked strictly.

A section model is pydantic with ``extra="forbid"``; a TOML value of the wrong scalar type
(`max_attempts = true`) is reported by its own field instead of being coerced, while text
from HUNTAZE_* variables keeps pydantic's usual conversions.
"""

from __future__ import annotations

from decimal import Decimal
from types import UnionType
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, model_validator

APP_NAME = "huntaze"
ENV_PREFIX = "HUNTAZE_"
CONFIG_ENV = "HUNTAZE_CONFIG"
DEFAULT_AZURE_API_VERSION = "2024-10-21"
# Money in config stays far below what nano-dollar integers (int64) can hold.
MAX_USD = Decimal(1_000_000_000)
DEFAULT_KEY_ENV = {"openai": "OPENAI_API_KEY", "azure": "AZURE_OPENAI_API_KEY"}


class _EnvText(str):
    """A value read from a HUNTAZE_* variable: text that may stand for a number or bool."""


class _WrongType:
    """Stands in for a file value of the wrong type, so the field reports its own error."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def __repr__(self) -> str:
        return repr(self.value)


_STRICT_SCALARS = (bool, int, float)


def _scalar(annotation: Any) -> Any:
    """bool, int or float when a field holds just that (or that or None)."""
    if annotation in _STRICT_SCALARS or annotation is Decimal:
        return annotation
    if get_origin(annotation) not in (Union, UnionType):
        return None  # list[int] and the like are not scalars
    args = [arg for arg in get_args(annotation) if arg is not type(None)]
    if len(args) == 1 and (args[0] in _STRICT_SCALARS or args[0] is Decimal):
        return args[0]
    return None


def _fits(kind: Any, value: Any) -> bool:
    if isinstance(value, _EnvText) or value is None:
        return True  # environment text is converted by pydantic's usual rules
    if kind is bool:
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False  # `concurrency = true` is not 1
    if kind is int:
        return isinstance(value, int)
    if kind is float:
        return isinstance(value, int | float)
    return True  # Decimal money may be written as a number or a string of digits


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)

    @model_validator(mode="before")
    @classmethod
    def _strict_file_types(cls, data: Any) -> Any:
        # TOML has real booleans, numbers and strings: `max_attempts = true` or
        # `timeout_s = "30"` is a mistake to report, not something to coerce.
        if not isinstance(data, dict):
            return data
        checked = dict(data)
        for name, value in data.items():
            field = cls.model_fields.get(name)
            kind = _scalar(field.annotation) if field is not None else None
            if kind is not None and not _fits(kind, value):
                checked[name] = _WrongType(value)
        return checked


class _AwsEndpoint(_Section):
    """Where a section's AWS service is reached (boto3's own defaults otherwise)."""

    region: str | None = Field(
        None, description="AWS region; default AWS_DEFAULT_REGION", examples=["eu-west-1"]
    )
    endpoint_url: str | None = Field(
        None,
        description="AWS endpoint override; default AWS_ENDPOINT_URL",
        examples=["http://127.0.0.1:5000"],
    )


class _AwsTable(_AwsEndpoint):
    create_tables: bool = Field(False, description="create the DynamoDB table on first use")
