"""Campaign files for tests and benchmarks: a TOML campaign and its recipients CSV."""

from __future__ import annotations

from pathlib import Path


def write_campaign(
    directory: Path, account: str, count: int, *, name: str = "mp", tenant: str | None = None
) -> Path:
    """``<account>.toml`` with ``count`` recipients in ``<account>.csv`` beside it."""
    fans = directory / f"{account}.csv"
    fans.write_text("id,name\n" + "".join(f"{account}_fan_{n},Name {n}\n" for n in range(count)))
    path = directory / f"{account}.toml"
    path.write_text(
        f'name = "{name}"\naccount = "{account}"\nprompt = "Hello {{name}}"\n'
        + (f'tenant = "{tenant}"\n' if tenant else "")
        + f'recipients_file = "{fans.name}"\n'
    )
    return path
