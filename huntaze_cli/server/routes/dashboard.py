"""GET /dashboard and its views; POST forms for sign-in, requeue and ack (CSRF-checked).

Each view renders the documents of the matching API routes (``server.dashboard.views``);
the export buttons download the finance report the report route serves. Sign-in keeps
an HMAC of the API token in an HttpOnly, SameSite=Strict cookie (``dashboard.session``).
Templates, jinja2 and the charts load on the first dashboard request, not at start-up.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from huntaze_cli.errors import HuntazeError
from huntaze_cli.server.errors import status_for
from huntaze_cli.server.routes import CurrentRuntime

if TYPE_CHECKING:
    from huntaze_cli.server.dashboard.session import Viewer
    from huntaze_cli.server.runtime import Runtime
    from huntaze_cli.services import Services

router = APIRouter(include_in_schema=False)

_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _viewer(request: Request, runtime: Runtime) -> Viewer | None:
    from huntaze_cli.server.dashboard.session import COOKIE, viewer

    return viewer(runtime.tokens, request.cookies.get(COOKIE))


def _html(name: str, *, status: int = 200, **context: Any) -> HTMLResponse:
    from huntaze_cli.server.dashboard.render import page

    context.setdefault("error", None)
    context.setdefault("viewer", None)
    return HTMLResponse(page(name, **context), status_code=status, headers=_HEADERS)


def _to_login(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/dashboard/login?next={quote(target)}", 303, headers=_HEADERS)


async def _view(
    request: Request,
    runtime: Runtime,
    template: str,
    active: str,
    build: Callable[[Services, str | None], dict[str, Any]],
    *,
    admin_only: bool = False,
    **extra: Any,
) -> Response:
    """Render ``template`` with what ``build(services, tenant)`` gathers for the viewer."""
    viewer = _viewer(request, runtime)
    if viewer is None:
        return _to_login(request)
    if admin_only and not viewer.admin:
        return _html("error.html", status=403, viewer=viewer, active=active,
                     error="This view needs the admin token.")  # fmt: skip
    try:
        context = await runtime.on_store(lambda services: build(services, viewer.tenant))
    except HuntazeError as exc:
        return _html("error.html", status=status_for(exc), viewer=viewer, active=active,
                     error=exc.message)  # fmt: skip
    return _html(template, viewer=viewer, active=active, **context, **extra)


@router.get("/dashboard")
async def overview(request: Request, runtime: CurrentRuntime) -> Response:
    from huntaze_cli.server.dashboard import views

    return await _view(request, runtime, "overview.html", "Overview", views.overview)


@router.get("/dashboard/campaigns")
async def campaigns(request: Request, runtime: CurrentRuntime) -> Response:
    from huntaze_cli.server.dashboard import views

    return await _view(request, runtime, "campaigns.html", "Campaigns", views.campaigns_page)


@router.get("/dashboard/campaigns/{campaign_id}")
async def campaign(
    request: Request, runtime: CurrentRuntime, campaign_id: str, requeued: str | None = None
) -> Response:
    from huntaze_cli.server.dashboard import views

    return await _view(
        request, runtime, "campaign.html", "Campaigns",
        lambda services, tenant: views.campaign_page(services, campaign_id, tenant=tenant),
        notice=f"Requeued: {requeued}." if requeued else None,
    )  # fmt: skip


@router.get("/dashboard/costs")
async def costs(
    request: Request,
    runtime: CurrentRuntime,
    by: str = "provider",
    a_since: str | None = None,
    a_until: str | None = None,
    b_since: str | None = None,
    b_until: str | None = None,
) -> Response:
    from huntaze_cli.server.dashboard import views

    # A date input left empty arrives as "": the same as not given.
    ranges = {"a_since": a_since or None, "a_until": a_until or None,
              "b_since": b_since or None, "b_until": b_until or None}  # fmt: skip
    return await _view(
        request, runtime, "costs.html", "Costs",
        lambda services, tenant: views.costs_page(services, by=by, ranges=ranges, tenant=tenant),
    )  # fmt: skip


@router.get("/dashboard/alerts")
async def alerts(request: Request, runtime: CurrentRuntime) -> Response:
    from huntaze_cli.server.dashboard import views

    return await _view(request, runtime, "alerts.html", "Alerts", views.alerts_page)


@router.get("/dashboard/budgets")
async def budgets(request: Request, runtime: CurrentRuntime) -> Response:
    from huntaze_cli.server.dashboard import views

    return await _view(request, runtime, "budgets.html", "Budgets", views.budgets_page)


@router.get("/dashboard/tenants")
async def tenants(request: Request, runtime: CurrentRuntime) -> Response:
    from huntaze_cli.server.dashboard import views

    return await _view(
        request, runtime, "tenants.html", "Tenants", views.tenants_page, admin_only=True
    )


@router.get("/dashboard/export")
async def export(
    request: Request,
    runtime: CurrentRuntime,
    format: Literal["csv", "pdf", "json"] = "csv",
    since: str | None = None,
    until: str | None = None,
) -> Response:
    """The finance report as ``GET /api/v2/costs/report`` serves it, for the buttons."""
    from huntaze_cli.server.routes.reports import report_response
    from huntaze_cli.services import costs as cost_service

    viewer = _viewer(request, runtime)
    if viewer is None:
        return _to_login(request)
    try:
        report = await runtime.on_store(
            lambda services: cost_service.finance_report(
                services, since=since, until=until, tenant=viewer.tenant
            )
        )
    except HuntazeError as exc:
        return _html("error.html", status=status_for(exc), viewer=viewer, active="Costs",
                     error=exc.message)  # fmt: skip
    return report_response(report, format)


# --- forms -----------------------------------------------------------------------------


async def _form(request: Request) -> dict[str, str]:
    body = (await request.body()).decode("utf-8", "replace")
    return {key: values[0] for key, values in parse_qs(body).items()}


def _safe_next(target: str | None) -> str:
    """Only a dashboard path of this site: never an open redirect."""
    if target and target.startswith("/dashboard") and "//" not in target and "\\" not in target:
        return target
    return "/dashboard"


@router.get("/dashboard/login")
async def login_form(
    request: Request, runtime: CurrentRuntime, next: str | None = None
) -> Response:
    if not runtime.tokens.configured:
        return RedirectResponse(_safe_next(next), 303)
    return _html("login.html", next=_safe_next(next))


@router.post("/dashboard/login")
async def login(request: Request, runtime: CurrentRuntime) -> Response:
    from huntaze_cli.server.dashboard.session import COOKIE, PATH, sign_in

    form = await _form(request)
    target = _safe_next(form.get("next"))
    if not runtime.tokens.configured:
        return RedirectResponse(target, 303)
    session = sign_in(runtime.tokens, form.get("token", ""))
    if session is None:
        return _html("login.html", status=401, next=target,
                     error="That token is not one of this daemon's API tokens.")  # fmt: skip
    response = RedirectResponse(target, 303, headers=_HEADERS)
    response.set_cookie(
        COOKIE,
        session,
        path=PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


async def _checked(
    request: Request, runtime: Runtime, *, admin: bool = False
) -> tuple[Viewer | None, Response | None]:
    """The viewer of a POST whose CSRF token holds (and who is the admin, if ``admin``);
    else the answer to give instead."""
    viewer = _viewer(request, runtime)
    if viewer is None:
        return None, _html("login.html", status=401, next="/dashboard",
                           error="Sign in first.")  # fmt: skip
    form = await _form(request)
    if not viewer.csrf_ok(form.get("csrf")):
        return None, _html("error.html", status=403, viewer=viewer, active="",
                           error="This form has expired or came from another page; reload "
                           "the page and try again.")  # fmt: skip
    if admin and not viewer.admin:
        return None, _html("error.html", status=403, viewer=viewer, active="",
                           error="Only the admin token may do this.")  # fmt: skip
    return viewer, None


@router.post("/dashboard/logout")
async def logout(request: Request, runtime: CurrentRuntime) -> Response:
    from huntaze_cli.server.dashboard.session import COOKIE, PATH

    _, refused = await _checked(request, runtime)
    if refused is not None:
        return refused
    response = RedirectResponse("/dashboard/login", 303, headers=_HEADERS)
    response.delete_cookie(COOKIE, path=PATH, httponly=True, samesite="strict")
    return response


async def _act(
    request: Request, runtime: Runtime, active: str, call: Callable[[Services], Any]
) -> tuple[Any, Response | None]:
    """Run a form's action for a signed-in admin with a valid CSRF token: (its result,
    None), or (None, the page to answer instead)."""
    viewer, refused = await _checked(request, runtime, admin=True)
    if refused is not None:
        return None, refused
    try:
        return await runtime.on_store(call), None
    except HuntazeError as exc:
        return None, _html("error.html", status=status_for(exc), viewer=viewer, active=active,
                           error=exc.message)  # fmt: skip


@router.post("/dashboard/campaigns/{campaign_id}/requeue")
async def requeue(request: Request, runtime: CurrentRuntime, campaign_id: str) -> Response:
    from huntaze_cli.services import campaigns as campaign_service

    report, refused = await _act(
        request,
        runtime,
        "Campaigns",
        lambda services: campaign_service.requeue(services, campaign_id),
    )
    if refused is not None:
        return refused
    if report.regenerate:
        runtime.schedule_generation(campaign_id)
    done = quote(f"{report.requeued} to deliver again, {report.regenerate} to write again")
    return RedirectResponse(
        f"/dashboard/campaigns/{quote(campaign_id, safe='')}?requeued={done}", 303
    )


@router.post("/dashboard/alerts/{alert_id}/ack")
async def ack(request: Request, runtime: CurrentRuntime, alert_id: str) -> Response:
    from huntaze_cli.services import alerts as alert_service

    _, refused = await _act(
        request, runtime, "Alerts", lambda services: alert_service.ack(services, alert_id)
    )
    return refused or RedirectResponse("/dashboard/alerts", 303)
