"""Nothing paid is unrecorded: send-campaign killed with SIGKILL mid-generation, 3 times.

The drill itself is bench/kill_drill.py (20 kills there); this runs a short one and
holds it to the target: every call the upstream answered has a cost event.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))


def test_no_answered_call_is_missing_from_the_ledger_after_kill_9() -> None:
    from kill_drill import run_drill  # type: ignore[import-not-found]

    huntaze = shutil.which("huntaze") or str(Path(sys.executable).parent / "huntaze")
    result = run_drill(kills=3, recipients=300, huntaze=huntaze, seed=7)
    assert result.answered > 0
    assert result.missing == 0, result
    # Calls in flight at each kill were recovered from the journal, not dropped.
    assert result.events >= result.answered
