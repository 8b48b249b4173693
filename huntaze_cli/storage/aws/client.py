"""What the AWS backends share: clients, error messages and DynamoDB tables.

* ``make_client``: a boto3 client that fails in seconds on an unreachable endpoint;
* ``Resource.error``: a botocore exception as a one-line ``BackendError`` naming the
  table or queue, the endpoint or region, and what to do about it;
* ``TableSetup``: a DynamoDB table created on first use (when the config asks for it),
  waited for until ACTIVE, checked against the keys and index huntaze needs, and given
  its TTL attribute.

Only the DynamoDB and SQS backends import this module, and with it boto3:
``huntaze_cli.storage`` and the SQLite backends never do.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    CredentialRetrievalError,
    HTTPClientError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from huntaze_cli.errors import BackendError
from huntaze_cli.retry import backoff_s
from huntaze_cli.text import one_line

DEFAULT_ENDPOINT = "the default AWS endpoint"

# AWS refused the credentials, or what they may do (DynamoDB's and SQS's spellings).
AUTH_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "InvalidSecurity",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
        "IncompleteSignature",
        "ExpiredToken",
        "ExpiredTokenException",
        "MissingAuthenticationToken",
        "MissingAuthenticationTokenException",
    }
)
# DynamoDB errors worth another try after a pause.
THROTTLE_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
        "LimitExceededException",
    }
)
TABLE_MISSING_CODES = frozenset({"ResourceNotFoundException"})

# The region in an SQS queue URL's host: sqs.<region>.amazonaws.com, <region>.queue...,
# or an SQS-compatible server that names hosts the same way.
_REGION_IN_HOST = re.compile(r"^(?:sqs\.)?([a-z]{2}(?:-[a-z]+)+-\d+)\.")

ErrorFactory = Callable[[Exception, str], BackendError]


# --- botocore errors -------------------------------------------------------------------


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def error_message(exc: ClientError) -> str:
    return one_line(exc.response.get("Error", {}).get("Message", "") or exc)


def action_name(operation: str) -> str:
    """``put_item`` -> ``PutItem``, the API and IAM action name."""
    return "".join(part.capitalize() for part in operation.split("_"))


def backoff(retries: int, *, base_s: float, max_s: float) -> None:
    """Sleep before try ``retries + 1``: exponential from ``base_s``, jittered, capped."""
    time.sleep(backoff_s(retries, base_s=base_s, max_s=max_s))


def call_with_backoff(
    client: Any,
    operation: str,
    params: dict[str, Any],
    *,
    error: ErrorFactory,
    retry_codes: frozenset[str],
    max_retries: int,
    base_s: float,
    max_s: float,
    raw_codes: frozenset[str] = frozenset(),
) -> Any:
    """``client.<operation>(**params)``, tried again after a pause while it is throttled.

    A ClientError whose code is in ``retry_codes`` is retried up to ``max_retries``
    times (see ``backoff``); one in ``raw_codes`` is raised as it is, for the caller to
    handle; every other botocore error becomes ``error(exc, "<ApiAction>")``.
    """
    method = getattr(client, operation)
    retries = 0
    while True:
        try:
            return method(**params)
        except ClientError as exc:
            code = error_code(exc)
            if code in raw_codes:
                raise
            if code in retry_codes and retries < max_retries:
                backoff(retries, base_s=base_s, max_s=max_s)
                retries += 1
                continue
            raise error(exc, action_name(operation)) from exc
        except BotoCoreError as exc:
            raise error(exc, action_name(operation)) from exc


# --- clients ---------------------------------------------------------------------------


def make_client(
    service: str,
    *,
    region: str | None,
    endpoint_url: str | None,
    connect_timeout: float,
    read_timeout: float,
    **options: Any,
) -> Any:
    """A boto3 client with short timeouts and a single retry in botocore.

    An unreachable endpoint fails in seconds; longer throttling is the caller's to wait
    out (see ``call_with_backoff``). Unset ``region``/``endpoint_url`` fall through to boto3's own
    AWS_DEFAULT_REGION, AWS_ENDPOINT_URL and profile lookup. ``options`` go to botocore's
    Config (``max_pool_connections``, ``parameter_validation``). Raises BotoCoreError
    (NoRegionError, say) or ValueError (a malformed endpoint).
    """
    config = BotoConfig(
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        retries={"max_attempts": 2, "mode": "standard"},
        **options,
    )
    session = boto3.session.Session(region_name=region)
    return session.client(service, endpoint_url=endpoint_url, config=config)


def endpoint_of(client: Any | None, hint: str | None) -> str:
    """The endpoint a client talks to; before there is one, the one it was given."""
    if client is not None:
        return str(client.meta.endpoint_url)
    return hint or DEFAULT_ENDPOINT


def region_from_queue_url(url: str) -> str | None:
    """The region in an SQS queue URL (``https://sqs.eu-west-1.amazonaws.com/...``)."""
    match = _REGION_IN_HOST.match(urlsplit(url).hostname or "")
    return match.group(1) if match else None


# --- one-line errors -------------------------------------------------------------------


@dataclass(frozen=True)
class Resource:
    """The table or queue a backend error is about, and how its messages name it."""

    service: str  # "DynamoDB", "SQS"; lower-cased, the IAM action prefix
    noun: str  # "table 'costs'", "queue https://..."
    where: str  # the endpoint
    section: str  # the config section that sets it up: "ledger", "queue", ...
    missing_codes: frozenset[str]
    missing_fix: str  # what to do when it does not exist
    located: bool = True  # say "at <endpoint>" after the noun (a queue URL already does)
    failed_note: str = ""  # appended to a plain failure

    @property
    def place(self) -> str:
        return f"{self.noun} at {self.where}" if self.located else self.noun

    def error(self, exc: Exception, action: str) -> BackendError:
        """A one-line BackendError for ``exc`` naming this resource and the next step."""
        service, noun = self.service, self.noun
        if isinstance(exc, ClientError):
            code, message = error_code(exc), error_message(exc)
            if code in self.missing_codes:
                return BackendError(
                    f"{service} {noun} does not exist at {self.where}: {self.missing_fix}"
                )
            if code in AUTH_CODES:
                return BackendError(
                    f"{service} refused {action} on {self.place} ({code}: {message}): check "
                    "the AWS credentials and that their IAM policy allows "
                    f"{service.lower()}:{action}"
                )
            return BackendError(
                f"{service} {action} on {self.place} failed ({code}: {message}){self.failed_note}"
            )
        if isinstance(exc, NoCredentialsError | PartialCredentialsError | CredentialRetrievalError):
            return BackendError(
                f"no usable AWS credentials for {service} {noun} ({one_line(exc)}): set "
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or an IAM role"
            )
        if isinstance(exc, NoRegionError):
            return BackendError(
                f"no AWS region for {service} {noun}: set [{self.section}] region "
                f"(HUNTAZE_{self.section.upper()}__REGION) or AWS_DEFAULT_REGION"
            )
        if isinstance(exc, BotoConnectionError | HTTPClientError):
            return BackendError(
                f"cannot reach {service} at {self.where} for {noun} ({one_line(exc)}): check "
                f"[{self.section}] endpoint_url / AWS_ENDPOINT_URL and the network"
            )
        return BackendError(f"{service} {action} on {self.place} failed: {one_line(exc)}")

    def kept_failing(self, action: str, code: str, message: str, note: str = "") -> BackendError:
        """The error for a call still throttled (or conflicting) after every retry."""
        return BackendError(
            f"{self.service} {action} on {self.place} kept failing ({code}: {message}): "
            f"retry later{note}"
        )


# --- DynamoDB tables -------------------------------------------------------------------


@dataclass(frozen=True)
class TableSpec:
    """A DynamoDB table of huntaze's: string keys, on-demand billing, TTL.

    ``section`` is the config section naming the table, ``label`` how errors name it
    ("rate-limit table"), ``role`` what a foreign table is not ("not a huntaze ledger").
    ``index`` is an optional global secondary index ``(name, hash key, range key)`` that
    projects every attribute.
    """

    section: str
    label: str = "table"
    role: str = "table"
    keys: tuple[str, str] = ("pk", "sk")
    index: tuple[str, str, str] | None = None
    ttl_attribute: str = "expires_at"

    def resource(self, table: str, where: str) -> Resource:
        """What errors about ``table`` at ``where`` say, and what they tell to do."""
        section = self.section
        return Resource(
            "DynamoDB",
            f"{self.label} {table!r}",
            where,
            section,
            TABLE_MISSING_CODES,
            f"set [{section}] create_tables = true (or HUNTAZE_{section.upper()}__CREATE_TABLES"
            f"=true) to create it on first use, or create table {table!r} yourself",
        )

    def validate(
        self, table: str, description: dict[str, Any], where: str, *, create: bool
    ) -> None:
        """Raise BackendError unless the described table has our keys (and index).

        ``create``: whether the config already sets ``create_tables``; if not, the
        message also says to set it, for the new table it points at.
        """
        keys = {k["AttributeName"]: k["KeyType"] for k in description.get("KeySchema", [])}
        indexes = {i["IndexName"] for i in description.get("GlobalSecondaryIndexes") or []}
        hash_key, range_key = self.keys
        if keys == {hash_key: "HASH", range_key: "RANGE"} and (
            self.index is None or self.index[0] in indexes
        ):
            return
        needs = f"string keys {hash_key}/{range_key}"
        if self.index is not None:
            needs += f" and the index {self.index[0]!r}"
        then = "" if create else f" and set [{self.section}] create_tables = true"
        raise BackendError(
            f"DynamoDB table {table!r} at {where} is not a huntaze {self.role} (it needs "
            f"{needs}): point [{self.section}] table at a new name{then}"
        )


class TableSetup:
    """Makes a DynamoDB table ready on first use, once per process, when asked to.

    Without ``create`` no call is spent up front: a missing table surfaces as
    ResourceNotFoundException on the first real call and gets the same message.
    With it: DescribeTable; CreateTable if missing (when another process is creating
    it at the same moment, wait for theirs); wait until ACTIVE; check the keys and
    index; enable TTL on the spec's attribute.
    """

    def __init__(self, spec: TableSpec, *, create: bool) -> None:
        self.spec = spec
        self.create = create
        self._lock = threading.Lock()
        self._ready = False

    def ensure(self, client: Any, table: str, error: ErrorFactory) -> None:
        """Make ``table`` ready; ``error`` turns a botocore exception and action into ours."""
        if self._ready or not self.create:
            return
        with self._lock:
            if self._ready:
                return
            try:
                description = client.describe_table(TableName=table)["Table"]
            except ClientError as exc:
                if error_code(exc) != "ResourceNotFoundException":
                    raise error(exc, "DescribeTable") from exc
                description = self._create(client, table, error)
            except BotoCoreError as exc:
                raise error(exc, "DescribeTable") from exc
            if description.get("TableStatus") == "CREATING":
                description = _wait_active(client, table, error)
            self.spec.validate(table, description, endpoint_of(client, None), create=True)
            self._ensure_ttl(client, table, error)
            self._ready = True

    def _create(self, client: Any, table: str, error: ErrorFactory) -> dict[str, Any]:
        spec = self.spec
        names = spec.keys + (spec.index[1:] if spec.index is not None else ())
        params: dict[str, Any] = {
            "TableName": table,
            "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": [{"AttributeName": n, "AttributeType": "S"} for n in names],
            "KeySchema": _key_schema(*spec.keys),
            "Tags": [{"Key": "app", "Value": "huntaze"}],
        }
        if spec.index is not None:
            name, hash_key, range_key = spec.index
            params["GlobalSecondaryIndexes"] = [
                {
                    "IndexName": name,
                    "KeySchema": _key_schema(hash_key, range_key),
                    "Projection": {"ProjectionType": "ALL"},
                }
            ]
        try:
            client.create_table(**params)
        except ClientError as exc:
            # Another process is creating it at the same moment: wait for theirs.
            if error_code(exc) != "ResourceInUseException":
                raise error(exc, "CreateTable") from exc
        except BotoCoreError as exc:
            raise error(exc, "CreateTable") from exc
        return _wait_active(client, table, error)

    def _ensure_ttl(self, client: Any, table: str, error: ErrorFactory) -> None:
        attribute = self.spec.ttl_attribute
        try:
            ttl = client.describe_time_to_live(TableName=table)
            description = ttl.get("TimeToLiveDescription", {})
            if description.get("TimeToLiveStatus", "DISABLED") in ("ENABLED", "ENABLING"):
                if description.get("AttributeName", attribute) != attribute:
                    raise BackendError(
                        f"DynamoDB table {table!r} expires items by "
                        f"{description.get('AttributeName')!r}, but huntaze uses "
                        f"{attribute!r}: change its TTL attribute or use another table"
                    )
                return
            client.update_time_to_live(
                TableName=table,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": attribute},
            )
        except ClientError as exc:
            # Another process enabled it between our two calls.
            if error_code(exc) == "ValidationException" and "already enabled" in error_message(exc):
                return
            raise error(exc, "UpdateTimeToLive") from exc
        except BotoCoreError as exc:
            raise error(exc, "UpdateTimeToLive") from exc


def _key_schema(hash_key: str, range_key: str) -> list[dict[str, str]]:
    return [
        {"AttributeName": hash_key, "KeyType": "HASH"},
        {"AttributeName": range_key, "KeyType": "RANGE"},
    ]


def _wait_active(client: Any, table: str, error: ErrorFactory) -> dict[str, Any]:
    try:
        waiter = client.get_waiter("table_exists")
        waiter.wait(TableName=table, WaiterConfig={"Delay": 1, "MaxAttempts": 180})
        description: dict[str, Any] = client.describe_table(TableName=table)["Table"]
    except (ClientError, BotoCoreError) as exc:
        raise error(exc, "DescribeTable") from exc
    return description
