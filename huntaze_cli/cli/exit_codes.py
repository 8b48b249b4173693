"""The one map from errors and outcomes to the CLI's exit codes (CONTRACT.md, "Exit codes").

0    success: sent, healthy, within thresholds
1    operational failure; unhealthy; some messages failed for good; alert unsent
2    bad input: usage error, invalid campaign file, invalid config
3    warning state: health degraded, a threshold breached, a budget paused a campaign
130  interrupted (Ctrl-C); the rest stays queued
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from huntaze_cli.errors import BudgetExceeded, ConfigError, HuntazeError, InputError, UsageError

if TYPE_CHECKING:
    from huntaze_cli.models import CampaignReport
    from huntaze_cli.services.thresholds import ThresholdCheck

OK = 0
FAILED = 1
BAD_INPUT = 2
WARNING = 3
INTERRUPTED = 130

_HEALTH = {"healthy": OK, "unhealthy": FAILED, "degraded": WARNING}


def for_error(exc: HuntazeError) -> int:
    """2 for what the user can fix in their input or config, 3 for a budget with no room,
    1 for everything else."""
    if isinstance(exc, BudgetExceeded):
        return WARNING
    return BAD_INPUT if isinstance(exc, UsageError | InputError | ConfigError) else FAILED


def flag(field: str) -> str:
    """The command-line flag for a parameter the core names as a field."""
    return "--" + field.replace("_", "-")


def for_health(status: str) -> int:
    return _HEALTH[status]


def for_thresholds(check: ThresholdCheck) -> int:
    """1 when an alert or the CloudWatch publish failed, else 3 when breached, else 0."""
    if check.failed:
        return FAILED
    return WARNING if check.report.breached else OK


def for_campaign(report: CampaignReport, *, interrupted: bool) -> int:
    """130 interrupted, 1 when some messages failed for good, else 0."""
    if interrupted:
        return INTERRUPTED
    if report.state == "completed_with_errors" or (
        report.counts["dead"] and report.state != "completed"
    ):
        return FAILED
    return OK
