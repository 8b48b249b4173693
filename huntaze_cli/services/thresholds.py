"""The threshold use case: evaluate, alert once per period, publish to CloudWatch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from huntaze_cli.errors import HuntazeError

if TYPE_CHECKING:
    from huntaze_cli.models import ThresholdReport
    from huntaze_cli.services import Services


@dataclass
class ThresholdCheck:
    """The report, plus what could not be done (alerts unsent, CloudWatch failing)."""

    report: ThresholdReport
    cloudwatch_error: str | None = None

    @property
    def alert_errors(self) -> list[tuple[str, str]]:
        """(threshold name, error) of every alert that could not be sent."""
        return [(r.name, e) for r in self.report.thresholds for e in r.alert_errors]

    @property
    def failed(self) -> bool:
        return bool(self.alert_errors) or self.cloudwatch_error is not None


def check(services: Services, *, send_alerts: bool) -> ThresholdCheck:
    """Evaluate every threshold; alerts (and CloudWatch) failing do not stop the rest."""
    from huntaze_cli.alerts.thresholds import evaluate_thresholds, publish_cloudwatch

    config, ledger = services.config(), services.ledger()
    report = evaluate_thresholds(config, ledger, services.alert_store(), send_alerts=send_alerts)
    result = ThresholdCheck(report)
    try:
        publish_cloudwatch(config, ledger, result.report)
    except HuntazeError as exc:
        result.cloudwatch_error = exc.message
    return result
