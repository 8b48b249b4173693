"""Shared fixtures: no test touches a real home directory or a real AWS account."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# Never let a test reach real AWS: fake credentials and a fixed region for boto3/moto.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_SESSION_TOKEN", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Point config and data dirs at tmp_path and drop inherited huntaze/SDK settings."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    for name in list(os.environ):
        if name.startswith("HUNTAZE_") or name in {
            "OPENAI_API_KEY",
            "OPENAI_BASE_URL",
            "AZURE_OPENAI_API_KEY",
            "AZURE_OPENAI_ENDPOINT",
            "OPENAI_API_VERSION",
            "AWS_ENDPOINT_URL",
            "NO_COLOR",
        }:
            monkeypatch.delenv(name, raising=False)
    yield tmp_path
