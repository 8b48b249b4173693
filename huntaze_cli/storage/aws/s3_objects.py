"""Objects written whole to one S3 bucket under a key prefix: the invoices' home when
``[invoices] s3_bucket`` is set.

A ``PutObject`` is atomic (a reader sees the old object or the new one, never half of
it), so a file that was written through a temporary name and a rename locally needs no
such dance here. The client is the one AWS client factory's (short timeouts, one retry),
made on first use, so importing this costs nothing until an invoice goes out.

IAM: ``s3:PutObject`` on ``arn:aws:s3:::<bucket>/<prefix>*``.
"""

from __future__ import annotations

from typing import Any

from huntaze_cli.errors import BackendError

_TIMEOUT_S = 10.0


class S3Objects:
    """``put`` whole objects into ``bucket`` under ``prefix``."""

    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "",
        region: str | None = None,
        endpoint_url: str | None = None,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self._region = region
        self._endpoint_url = endpoint_url
        self._client: Any = None

    def url(self, name: str) -> str:
        """Where ``name`` is put: ``s3://<bucket>/<prefix><name>``."""
        return f"s3://{self.bucket}/{self.prefix}{name}"

    def put(self, name: str, data: bytes, *, content_type: str) -> str:
        """Write ``data`` as ``<prefix><name>``; its ``s3://`` URL, or BackendError."""
        from botocore.exceptions import BotoCoreError, ClientError

        from huntaze_cli.storage.aws.client import error_code, error_message, make_client

        where = self.url(name)
        try:
            if self._client is None:
                self._client = make_client(
                    "s3",
                    region=self._region,
                    endpoint_url=self._endpoint_url,
                    connect_timeout=_TIMEOUT_S,
                    read_timeout=_TIMEOUT_S,
                )
            self._client.put_object(
                Bucket=self.bucket, Key=self.prefix + name, Body=data, ContentType=content_type
            )
        except ClientError as exc:
            raise BackendError(
                f"cannot write {where}: {error_code(exc)}: {error_message(exc)}",
                hint="check [invoices] s3_bucket, region and the s3:PutObject permission",
            ) from None
        except (BotoCoreError, ValueError) as exc:
            raise BackendError(
                f"cannot write {where}: {' '.join(str(exc).split())}",
                hint="check [invoices] region / endpoint_url and the network",
            ) from None
        return where
