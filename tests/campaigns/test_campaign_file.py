"""Campaign files: every validation error names its field or line; recipients stream."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import pytest

from huntaze_cli.campaigns.file import load_campaign, parse_campaign, placeholders
from huntaze_cli.errors import InputError

BASE = """
name = "November PPV"
account = "creator_123"
prompt = "Write a two-line thank-you to {name}, who loves {interest}."
"""


def campaign(tmp_path: Path, extra: str, *, name: str = "c.toml") -> Path:
    path = tmp_path / name
    path.write_text(BASE + extra, encoding="utf-8")
    return path


def ids(path: Path) -> list[str]:
    return [rid for rid, _ in load_campaign(str(path)).iter_recipients()]


def test_inline_recipients_and_defaults(tmp_path: Path) -> None:
    path = campaign(
        tmp_path,
        '[[recipients]]\nid = "fan_1"\nname = "Alex"\ninterest = "cosplay"\n'
        '[[recipients]]\nid = "fan_2"\nname = "Sam"\ninterest = "art"\n',
    )
    loaded = load_campaign(str(path))
    assert loaded.spec.tenant == "default" and loaded.spec.provider == "auto"
    assert loaded.fields == ["name", "interest"]
    rows = list(loaded.iter_recipients())
    assert rows[0] == ("fan_1", {"name": "Alex", "interest": "cosplay", "id": "fan_1"})


def test_csv_relative_to_the_campaign_file(tmp_path: Path) -> None:
    (tmp_path / "fans.csv").write_text("id,name,interest\nf1,Alex,cosplay\nf2,Sam,art\n")
    assert ids(campaign(tmp_path, 'recipients_file = "fans.csv"\n')) == ["f1", "f2"]


def test_jsonl_recipients(tmp_path: Path) -> None:
    lines = [{"id": "a", "name": "A", "interest": "x"}, {"id": "b", "name": "B", "interest": 7}]
    (tmp_path / "fans.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    assert ids(campaign(tmp_path, 'recipients_file = "fans.jsonl"\n')) == ["a", "b"]


def test_json_campaign_from_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    doc = {
        "name": "n",
        "account": "a",
        "prompt": "Hi {name}",
        "recipients": [{"id": "1", "name": "Z"}],
    }
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps(doc)))
    loaded = load_campaign("-")
    assert [r for r, _ in loaded.iter_recipients()] == ["1"]


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ('colour = "red"\n[[recipients]]\nid="1"\nname="a"\ninterest="b"\n', "colour: unknown key"),
        ("", "give recipients_file or [[recipients]]"),
        ("recipients = []\n", "recipients: the list is empty"),
        ('max_tokens = 0\nrecipients_file = "x.csv"\n', "max_tokens: "),
        ('temperature = "hot"\nrecipients_file = "x.csv"\n', "temperature: "),
    ],
)
def test_invalid_campaign_keys(tmp_path: Path, extra: str, needle: str) -> None:
    with pytest.raises(InputError, match=needle.replace("[", r"\[").replace("]", r"\]")):
        load_campaign(str(campaign(tmp_path, extra)))


def test_missing_required_key(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('name = "x"\nprompt = "hi"\nrecipients_file = "f.csv"\n')
    with pytest.raises(InputError, match="account: Field required"):
        load_campaign(str(path))


def test_bad_placeholder_syntax(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('name="x"\naccount="a"\nprompt="Hi {name.upper}"\nrecipients_file="f.csv"\n')
    with pytest.raises(InputError, match="prompt: .*plain field name"):
        load_campaign(str(path))
    assert placeholders("{a} and {b} and {a}") == ["a", "b"]


@pytest.mark.parametrize(
    ("csv_text", "needle"),
    [
        ("id,name,interest\nf1,Alex,cosplay\nf2,Sam\n", "fans.csv line 3: expected 3 columns"),
        ("id,name,interest\nf1,Alex,cosplay\nf1,Sam,art\n", "line 3: duplicate recipient id 'f1'"),
        ("id,name\nf1,Alex\n", "line 2: interest: missing"),
        ("id,name,interest\nf1,Alex,\n", "line 2: interest: missing"),
        ("id,name,interest\n,Alex,art\n", "line 2: id: missing"),
        ("name,interest\nAlex,art\n", "line 1: the header has no id column"),
        ("", "empty file"),
        ("id,name,interest\n", "no recipients"),
        ('id,name,interest\nf1,"Alex,cosplay\n', "invalid CSV"),
    ],
)
def test_bad_csv_names_the_line(tmp_path: Path, csv_text: str, needle: str) -> None:
    (tmp_path / "fans.csv").write_text(csv_text)
    path = campaign(tmp_path, 'recipients_file = "fans.csv"\n')
    with pytest.raises(InputError, match=needle):
        ids(path)


def test_duplicates_are_told_from_colliding_hashes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every id hashes alike: only the rescan can tell a repeated id from another one.
    import huntaze_cli.campaigns.file as campaign_file

    monkeypatch.setattr(campaign_file, "hash", lambda value: 7, raising=False)
    (tmp_path / "fans.csv").write_text("id,name,interest\nf1,A,x\nf2,B,y\n\nf3,C,z\n 2 ,D,w\n")
    path = campaign(tmp_path, 'recipients_file = "fans.csv"\n')
    assert ids(path) == ["f1", "f2", "f3", "2"]
    (tmp_path / "fans.csv").write_text("id,name,interest\nf1,A,x\nf2,B,y\nf3,C,z\nf2,D,w\n")
    with pytest.raises(
        InputError, match=r"line 5: duplicate recipient id 'f2' \(first seen at 3\)"
    ):
        ids(path)
    inline = campaign(
        tmp_path,
        "[[recipients]]\nid = 0\nname = 'A'\ninterest = 'x'\n"
        "[[recipients]]\nid = '1'\nname = 'B'\ninterest = 'y'\n"
        "[[recipients]]\nid = ' 0'\nname = 'C'\ninterest = 'z'\n",
        name="inline.toml",
    )
    with pytest.raises(
        InputError, match=r"recipients\[3\]: duplicate recipient id '0' \(first seen at 1\)"
    ):
        ids(inline)


def test_bad_jsonl_names_the_line(tmp_path: Path) -> None:
    (tmp_path / "fans.jsonl").write_text(
        '{"id": "a", "name": "A", "interest": "x"}\n{"id": "b", "name": \n'
    )
    with pytest.raises(InputError, match="fans.jsonl line 2: invalid JSON"):
        ids(campaign(tmp_path, 'recipients_file = "fans.jsonl"\n'))


def test_missing_recipients_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="recipients_file: cannot read"):
        ids(campaign(tmp_path, 'recipients_file = "nope.csv"\n'))


def test_bad_toml_and_json(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('name = "x\n')
    with pytest.raises(InputError, match="invalid TOML"):
        load_campaign(str(path))
    with pytest.raises(InputError, match="invalid JSON"):
        parse_campaign("{", fmt="json", source="<stdin>", base_dir=tmp_path)


def test_100k_recipients_stream_in_bounded_memory(tmp_path: Path) -> None:
    with (tmp_path / "fans.csv").open("w") as fh:
        fh.write("id,name,interest\n")
        for n in range(100_000):
            fh.write(f"fan_{n},Name {n},interest number {n % 50}\n")
    loaded = load_campaign(str(campaign(tmp_path, 'recipients_file = "fans.csv"\n')))
    tracemalloc.start()
    count = sum(1 for _ in loaded.iter_recipients())
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert count == 100_000
    # Only the set of seen id hashes grows (~90 bytes each); rows are never all held.
    assert peak < 30 * 1024 * 1024
