"""Campaign files: TOML or JSON (``-`` reads JSON from stdin), recipients inline or streamed.

The campaign's own keys are validated once by ``CampaignSpec``. Recipients are streamed
(``iter_recipients``) from inline tables, a CSV file with a header row, or a JSONL file,
so a 100k-row file is never held in memory; each one is checked as it goes by (id
present and unique, every prompt placeholder present) and a bad one raises InputError
naming the file and line.
"""

from __future__ import annotations

import csv
import json
import string
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from huntaze_cli import textfile
from huntaze_cli.errors import InputError

MAX_ID = 256


class CampaignSpec(BaseModel):
    """A campaign as written in its file or POSTed to the daemon."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(..., min_length=1, max_length=200)
    account: str = Field(..., min_length=1, max_length=MAX_ID)
    tenant: str = Field("default", min_length=1, max_length=MAX_ID)
    model: str | None = Field(None, min_length=1, max_length=256)
    provider: str = Field("auto", min_length=1, max_length=128)
    system: str | None = Field(None, max_length=20_000)
    prompt: str = Field(..., min_length=1, max_length=20_000)
    # strict: `max_tokens = true` or `temperature = "0.5"` is an error, not 1 or 0.5.
    max_tokens: int | None = Field(None, ge=1, le=100_000, strict=True)
    temperature: float | None = Field(None, ge=0, le=2, strict=True, allow_inf_nan=False)
    recipients_file: str | None = None
    recipients: list[dict[str, Any]] | None = None

    @field_validator("prompt")
    @classmethod
    def _placeholders_are_names(cls, value: str) -> str:
        placeholders(value)
        return value

    @model_validator(mode="after")
    def _one_recipient_source(self) -> CampaignSpec:
        if self.recipients_file is None and self.recipients is None:
            raise ValueError("give recipients_file or [[recipients]]")
        if self.recipients_file is not None and self.recipients is not None:
            raise ValueError("give recipients_file or [[recipients]], not both")
        if self.recipients is not None and not self.recipients:
            raise ValueError("recipients: the list is empty")
        return self


def placeholders(template: str) -> list[str]:
    """The ``{field}`` names a prompt uses; raises ValueError for anything fancier."""
    names: list[str] = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"invalid placeholder syntax: {exc}") from None
    for _, field_name, spec, conversion in parsed:
        if field_name is None:
            continue
        if not field_name.isidentifier() or spec or conversion:
            raise ValueError(
                f"placeholder {{{field_name}}} must be a plain field name like {{name}}"
            )
        if field_name not in names:
            names.append(field_name)
    return names


def render(template: str, fields: dict[str, str]) -> str:
    return template.format_map(fields)


class LoadedCampaign:
    """A validated spec plus where its recipients come from (for error messages)."""

    def __init__(self, spec: CampaignSpec, base_dir: Path, source: str) -> None:
        self.spec = spec
        self.base_dir = base_dir
        self.source = source
        self.fields = placeholders(spec.prompt)

    @property
    def recipients_path(self) -> Path | None:
        if self.spec.recipients_file is None:
            return None
        path = Path(self.spec.recipients_file).expanduser()
        return path if path.is_absolute() else self.base_dir / path

    def iter_recipients(self) -> Iterator[tuple[str, dict[str, str]]]:
        """(recipient id, fields) for every recipient, validated, in file order.

        Ids are checked for uniqueness by their hashes alone (70 to 90 bytes per
        recipient, against 120 to 130 for keeping each id and its line); a hash seen
        before rescans the recipients for the first line with that id, which also tells
        a duplicate from a mere collision of hashes.
        """
        seen: set[int] = set()
        for where, line, record in self._raw():
            if not isinstance(record, dict):
                raise InputError(f"{where}: expected an object with an id", field="recipients")
            fields = {str(k): _text(v) for k, v in record.items() if v is not None}
            rid = fields.pop("id", "").strip()
            if not rid:
                raise InputError(
                    f"{where}: id: missing (every recipient needs a unique id)", field="recipients"
                )
            if len(rid) > MAX_ID:
                raise InputError(
                    f"{where}: id: longer than {MAX_ID} characters", field="recipients"
                )
            key = hash(rid)
            if key in seen:
                first = self._first_line(rid, before=line)
                if first is not None:
                    raise InputError(
                        f"{where}: duplicate recipient id {rid!r} (first seen at {first})",
                        field="recipients",
                    )
            seen.add(key)
            fields["id"] = rid  # `{id}` is a placeholder like any other field
            for name in self.fields:
                if name not in fields or fields[name] == "":
                    raise InputError(
                        f"{where}: {name}: missing; the prompt uses {{{name}}} (recipient {rid!r})",
                        field="recipients",
                    )
            yield rid, fields
        if not seen:
            raise InputError(f"{self.source}: recipients: no recipients", field="recipients")

    def _first_line(self, rid: str, *, before: int) -> int | None:
        """The line (or index) where ``rid`` first appears, if before ``before``."""
        for _, line, record in self._raw():
            if line >= before:
                return None
            if not isinstance(record, dict) or record.get("id") is None:
                continue
            if _text(record["id"]).strip() == rid:
                return line
        return None

    def _raw(self) -> Iterator[tuple[str, int, Any]]:
        if self.spec.recipients is not None:
            for index, record in enumerate(self.spec.recipients, start=1):
                yield f"{self.source}: recipients[{index}]", index, record
            return
        path = self.recipients_path
        assert path is not None
        try:
            fh = path.open("rb")
        except OSError as exc:
            raise InputError(
                f"{self.source}: recipients_file: cannot read {path}: {exc.strerror}"
            ) from None
        with fh:
            text = textfile.lines(fh, str(path))
            if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
                yield from _jsonl(text, path)
            else:
                yield from _csv(text, path)


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, ensure_ascii=False)


def _jsonl(fh: Any, path: Path) -> Iterator[tuple[str, int, Any]]:
    for number, line in enumerate(fh, start=1):
        if not line.strip():
            continue
        where = f"{path} line {number}"
        try:
            yield where, number, json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{where}: invalid JSON: {exc.msg} at column {exc.colno}") from None


def _csv(fh: Any, path: Path) -> Iterator[tuple[str, int, Any]]:
    reader = csv.reader(fh, strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise InputError(f"{path}: empty file; expected a header row with an id column") from None
    except csv.Error as exc:
        raise InputError(f"{path} line 1: invalid CSV: {exc}") from None
    header = [name.strip() for name in header]
    if "id" not in header:
        raise InputError(f"{path} line 1: the header has no id column")
    if len(set(header)) != len(header):
        raise InputError(f"{path} line 1: repeated column name in the header")
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise InputError(f"{path} line {reader.line_num}: invalid CSV: {exc}") from None
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise InputError(
                f"{path} line {reader.line_num}: expected {len(header)} columns, found {len(row)}"
            )
        yield f"{path} line {reader.line_num}", reader.line_num, dict(zip(header, row, strict=True))


def load_campaign(file: str) -> LoadedCampaign:
    """Read and validate a campaign file (or JSON on stdin for ``-``)."""
    if file == "-":
        stdin = getattr(sys.stdin, "buffer", None)
        raw = stdin.read() if stdin is not None else sys.stdin.read().encode()
        text = textfile.decode(raw, "<stdin>")
        return parse_campaign(text, fmt="json", source="<stdin>", base_dir=Path.cwd())
    path = Path(file).expanduser()
    try:
        text = textfile.read_text(path, str(path))
    except OSError as exc:
        raise InputError(f"{path}: cannot read campaign file: {exc.strerror}") from None
    fmt = "json" if path.suffix.lower() == ".json" else "toml"
    return parse_campaign(text, fmt=fmt, source=str(path), base_dir=path.parent)


def parse_campaign(text: str, *, fmt: str, source: str, base_dir: Path) -> LoadedCampaign:
    try:
        data = json.loads(text) if fmt == "json" else tomllib.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{source}: invalid JSON: {exc.msg} (line {exc.lineno})") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{source}: invalid TOML: {exc}") from None
    if not isinstance(data, dict):
        raise InputError(f"{source}: expected a campaign object")
    return from_data(data, source=source, base_dir=base_dir)


def from_data(data: dict[str, Any], *, source: str, base_dir: Path) -> LoadedCampaign:
    try:
        spec = CampaignSpec.model_validate(data)
    except ValidationError as exc:
        raise InputError(f"{source}: {describe(exc)}") from None
    return LoadedCampaign(spec, base_dir, source)


def describe(exc: ValidationError) -> str:
    """pydantic errors as `field: message` parts, one per error."""
    parts = []
    for error in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in error["loc"]) or "campaign"
        message = "unknown key" if error["type"] == "extra_forbidden" else error["msg"]
        message = message.removeprefix("Value error, ")
        parts.append(f"{loc}: {message}")
    return "; ".join(parts)
