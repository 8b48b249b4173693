"""Routes of optimization: recommendations, experiments and ROI (same JSON as the CLI)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import FastAPI, Path, Query
from fastapi.responses import Response

from huntaze_cli.costs.experiments import ExperimentReport
from huntaze_cli.costs.optimize import OptimizeReport
from huntaze_cli.costs.roi import RoiReport
from huntaze_cli.jsondoc import dump_json

if TYPE_CHECKING:
    from huntaze_cli.server.runtime import Runtime

JSON = "application/json"


def register(app: FastAPI, runtime: Runtime, errors: dict[int | str, dict[str, Any]]) -> None:
    @app.get(
        "/api/v2/costs/optimize",
        response_model=OptimizeReport,
        responses=errors,
        tags=["costs"],
    )
    def costs_optimize(
        days: Annotated[int, Query(ge=1, le=400, description="last N UTC days")] = 30,
    ) -> Response:
        """Recommendations with their monthly saving, evidence and action."""
        from huntaze_cli.services.optimization import optimize_report

        report = optimize_report(runtime.http, days=days, lock=runtime.store_lock)
        return Response(dump_json(report), media_type=JSON)

    @app.get(
        "/api/v2/experiments/{name}",
        response_model=ExperimentReport,
        responses={**errors, 404: {"description": "unknown experiment"}},
        tags=["experiments"],
    )
    def experiment(
        name: Annotated[str, Path(min_length=1, max_length=64, description="experiment name")],
        days: Annotated[int, Query(ge=1, le=400, description="last N UTC days")] = 30,
    ) -> Response:
        """Per arm figures and each difference to the baseline with its 95 % interval."""
        from huntaze_cli.services.optimization import experiment_report

        report = experiment_report(runtime.http, name, days=days, lock=runtime.store_lock)
        return Response(dump_json(report), media_type=JSON)

    @app.get(
        "/api/v2/costs/roi",
        response_model=RoiReport,
        responses={**errors, 404: {"description": "unknown campaign"}},
        tags=["costs"],
    )
    def costs_roi(
        campaign: Annotated[
            str | None, Query(min_length=1, max_length=256, description="one campaign id")
        ] = None,
    ) -> Response:
        """Per campaign and arm: cost, revenue, conversions, cost per conversion, ROI %."""
        from huntaze_cli.services.optimization import roi

        report = roi(runtime.http, campaign=campaign, lock=runtime.store_lock)
        return Response(dump_json(report), media_type=JSON)
