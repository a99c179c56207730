"""`/ui/`: the admin dashboard, server-rendered HTML over the same service the JSON API uses.

Each view is a thin consumer of what the JSON API uses: `ScheduledJobService` (list_jobs, detail,
schedule, execute, cancel, pause, resume, delete), the archive's `History` (app.state.history: the jobs
page's strips, a job's history and trend, a run's diagnostics, the recent failures) and `ExecutionLogs`
(a run's log tail, its live follow and the download), with `presenters` for the looks.
Pages work without JavaScript (plain forms and links); htmx only swaps fragments in place. Every
mutation checks the session, its CSRF token and the permission, whatever the page showed.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal, get_args
from urllib.parse import quote, urlencode, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup
from scheduledjob.diagnostics import DEFAULT_LOG_MAX_BYTES
from scheduledjob.models import ExecutionStatus, Trigger
from scheduledjob.timefmt import parse_utc

from scheduledjob_api.errors import ApiError
from scheduledjob_api.execution_logs import Bounds, ExecutionLogs
from scheduledjob_api.history import Filters, History
from scheduledjob_api.listing import SORT_FIELDS, HealthFilter, ListQuery, SortDirection, SortField, StatusFilter
from scheduledjob_api.routers.logs import get_logs
from scheduledjob_api.security import CANCEL, DELETE, EXECUTE, MANAGE, READ, AuthenticationError
from scheduledjob_api.service import ScheduledJobService
from scheduledjob_api.ui import presenters as p
from scheduledjob_api.ui import session as sessions
from scheduledjob_api.ui.session import Session

PREFIX: Final = "/ui"
PAGE_SIZES: Final = (10, 20, 50, 100)
HISTORY_PAGE_SIZE: Final = 20
TREND_RUNS: Final = 200  # the duration chart's window: the newest runs, however long the archive
FAILURES_SHOWN: Final = 50
ACTIONS_SHOWN: Final = 10  # the newest pauses, resumes and skipped slots on a job page
UPCOMING_SHOWN: Final = 5
LOG_TAIL_LINES: Final = 200  # a run page shows the END of each container's output, never all of it
LOG_TAIL_BYTES: Final = 64 * 1024
_RUN_STATUSES: Final = get_args(ExecutionStatus)
_TRIGGERS: Final = get_args(Trigger)
PAUSE: Final = MANAGE  # pause/resume is a change of the job's configuration
_STATUSES: Final = get_args(StatusFilter)
_HEALTHS: Final = get_args(HealthFilter)
_COUNTED_HEALTHS: Final = ("late", "failing")  # the jobs page's counters: the states that need someone
_NAME: Final = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")

_HERE = Path(__file__).parent
templates = Environment(
    loader=FileSystemLoader(_HERE / "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
    auto_reload=False,  # templates are package files: no stat() per render
    trim_blocks=True,
    lstrip_blocks=True,
)
PERMISSIONS: Final = {"read": READ, "execute": EXECUTE, "cancel": CANCEL, "delete": DELETE, "pause": PAUSE}
templates.globals.update(
    job_badge=p.job_badge,
    health_badge=p.health_badge,
    run_badge=p.run_badge,
    action_badge=p.action_badge,
    action_words=p.action_words,
    record_href=p.record_href,
    run_title=p.run_title,
    schedule_words=p.schedule_words,
    duration=p.duration,
    success_rate=p.success_rate,
    PERMISSIONS=PERMISSIONS,
)

# Same-origin only: scripts, styles, fetches and images from this server; nothing inline, no frames.
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # no-referrer would make form POSTs say `Origin: null`
    "X-Frame-Options": "DENY",
}

router = APIRouter(prefix=PREFIX, include_in_schema=False)


def _time(value: Any, now: datetime) -> Markup:
    """`<time datetime>`: relative and absolute UTC as text, UTC on hover; ui.js shows local time."""
    moment = p.parse_time(value)
    if moment is None:
        return Markup('<span class="none">—</span>')
    iso = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    text = f"{p.relative(moment, now)} ({p.utc_text(moment)})"
    return Markup('<time datetime="{0}" title="{1}" data-local>{2}</time>').format(iso, p.utc_text(moment), text)


def _service(request: Request) -> ScheduledJobService:
    service: ScheduledJobService = request.app.state.service
    return service


def _history(request: Request) -> History:
    history: History = request.app.state.history
    return history


def _logs(request: Request) -> ExecutionLogs:
    return get_logs(request)  # built from app.state exactly as the logs endpoint builds it


def _is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def render(
    request: Request,
    template: str,
    session: Session | None,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
    **context: Any,
) -> HTMLResponse:
    now = datetime.now(UTC)
    html = templates.get_template(template).render(
        session=session,
        now=now,
        when=lambda value: _time(value, now),
        dev_mode=request.app.state.settings.dev_mode,
        path=request.url.path,
        **context,
    )
    return HTMLResponse(html, status_code=status, headers={**SECURITY_HEADERS, **(headers or {})})


def _to_login(request: Request) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if _is_htmx(request):
        # An expired session during a fragment refresh: send the whole page to the login, and back to
        # the page the browser shows (not to the fragment's URL).
        shown = urlsplit(request.headers.get("hx-current-url", ""))
        target = _safe_next(shown.path + (f"?{shown.query}" if shown.query else ""))
        location = f"{PREFIX}/login?{urlencode({'next': target})}"
        return Response(status_code=401, headers={**SECURITY_HEADERS, "HX-Redirect": location})
    location = f"{PREFIX}/login?{urlencode({'next': target})}"
    return RedirectResponse(location, status_code=303, headers=SECURITY_HEADERS)


def _safe_next(value: str | None) -> str:
    """Only a path inside the dashboard (no scheme, no host, no `//`): never an open redirect."""
    if value and value.startswith(f"{PREFIX}/") and "//" not in value and "\\" not in value:
        return value
    return f"{PREFIX}/"


def _error_page(request: Request, session: Session | None, error: ApiError) -> HTMLResponse:
    return render(request, "error.html", session, status=error.status, error=error.error, title=_title(error.status))


def _title(status: int) -> str:
    return {403: "Not allowed", 404: "Not found", 503: "Not available yet"}.get(status, "Something went wrong")


Page = Callable[[Request, Session], Awaitable[Response]]


async def _reader(request: Request, page: Page) -> Response:
    """A page for a logged-in caller with the read permission; service errors become error pages."""
    session = await sessions.current(request)
    if session is None:
        return _to_login(request)
    if not session.may(READ):
        return _error_page(request, session, ApiError(403, f"Viewing scheduled jobs needs {READ}."))
    try:
        return await page(request, session)
    except ApiError as error:
        return _error_page(request, session, error)


# ---- login and logout --------------------------------------------------------------------------


@router.get("")
async def root_without_slash() -> Response:
    return RedirectResponse(f"{PREFIX}/", status_code=307)


@router.get("/login")
async def login_page(request: Request) -> Response:
    return render(request, "login.html", None, next=_safe_next(request.query_params.get("next")), error=None)


@router.post("/login")
async def login(request: Request) -> Response:
    if not sessions.same_origin(request):
        return render(request, "error.html", None, status=403, error="Cross-site login refused.", title="Not allowed")
    try:
        fields = await sessions.form(request)
    except ValueError:
        return render(request, "login.html", None, status=413, next=f"{PREFIX}/", error="The form is too large.")
    target = _safe_next(fields.get("next"))
    try:
        session = await sessions.login(request, fields.get("token", ""))
    except AuthenticationError as exc:
        return render(request, "login.html", None, status=exc.status, next=target, error=f"Not logged in: {exc}")
    response = RedirectResponse(target, status_code=303, headers=SECURITY_HEADERS)
    sessions.set_cookie(response, request, session)
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    session = await sessions.current(request)
    if session is not None:
        refusal = await _refused(request, session, None)
        if refusal is not None:
            return refusal
    response = RedirectResponse(f"{PREFIX}/login", status_code=303, headers=SECURITY_HEADERS)
    sessions.clear_cookie(response, request)
    return response


# ---- jobs --------------------------------------------------------------------------------------


def _list_query(params: Mapping[str, str]) -> ListQuery:
    """The list's query from the page URL; anything unknown falls back to the default (a page of the
    dashboard is never an error because of a hand-edited URL)."""

    def number(name: str, default: int, allowed: tuple[int, ...] | None = None) -> int:
        raw = params.get(name, "")
        value = int(raw) if raw.isdigit() and len(raw) < 10 else default
        return value if value >= 1 and (allowed is None or value in allowed) else default

    status = params.get("status") or None
    health = params.get("health") or None
    sort = params.get("sort") or "id"
    direction = params.get("dir") or "asc"
    return ListQuery(
        page=number("page", 1),
        page_size=number("pageSize", 20, PAGE_SIZES),
        search=(params.get("search") or "").strip()[:256] or None,
        status=status if status in _STATUSES else None,  # type: ignore[arg-type]
        health=health if health in _HEALTHS else None,  # type: ignore[arg-type]
        namespace=(params.get("namespace") or "").strip()[:253] or None,
        sort=sort if sort in SORT_FIELDS else "id",  # type: ignore[arg-type]
        direction=direction if direction in ("asc", "desc") else "asc",  # type: ignore[arg-type]
    )


def _query_string(query: ListQuery, **changes: Any) -> str:
    values: dict[str, Any] = {
        "search": query.search,
        "status": query.status,
        "health": query.health,
        "namespace": query.namespace,
        "sort": query.sort,
        "dir": query.direction,
        "pageSize": query.page_size,
        "page": query.page,
        **changes,
    }
    defaults = {"sort": "id", "dir": "asc", "pageSize": 20, "page": 1}
    return urlencode({k: v for k, v in values.items() if v not in (None, "") and defaults.get(k) != v})


async def _jobs_context(request: Request, query: ListQuery, now: datetime) -> dict[str, Any]:
    service = _service(request)
    listing = service.list_jobs(query)
    if listing["totalPages"] and query.page > listing["totalPages"]:  # past the end after a filter change
        query = ListQuery(**{**query.__dict__, "page": listing["totalPages"]})
        listing = service.list_jobs(query)
    try:  # every shown job's strip in one archive query
        shown = [int(job["id"]) for job in listing["jobs"]]
        recent = await _history(request).recent(shown, p.STRIP_RUNS, p.RUN_STATUSES)  # runs, never pauses
    except ApiError:  # the archive down: the list still shows, the strips say why they are missing
        recent = None
    rows = []
    for job in listing["jobs"]:
        strip = p.strip_html(job["id"], p.strip(recent.get(int(job["id"]), []), now)) if recent is not None else None
        rows.append({"job": job, "strip": strip or p.STRIP_UNAVAILABLE})

    def sort_link(field: SortField) -> dict[str, str]:
        active = query.sort == field
        flipped: SortDirection = "desc" if active and query.direction == "asc" else "asc"
        aria = ("ascending" if query.direction == "asc" else "descending") if active else "none"
        return {"href": f"{PREFIX}/?{_query_string(query, sort=field, dir=flipped, page=1)}", "aria": aria}

    previous, following = p.page_window(query.page, listing["totalPages"])
    return {
        "query": query,
        "listing": listing,
        "rows": rows,
        "sort_link": sort_link,
        "statuses": _STATUSES,
        "healths": _HEALTHS,
        "page_sizes": PAGE_SIZES,
        "previous_href": f"{PREFIX}/?{_query_string(query, page=previous)}" if previous else None,
        "next_href": f"{PREFIX}/?{_query_string(query, page=following)}" if following else None,
        "fragment_url": f"{PREFIX}/fragments/jobs?{_query_string(query)}",
        "page_url": f"{PREFIX}/?{_query_string(query)}",
    }


def _counters(service: ScheduledJobService) -> dict[str, int]:
    """Jobs per state, and the late and failing ones, counted over the list's rows (no list items made: at
    20,000 jobs that was most of the page's time, `ui_jobs_page_p50_ms_20k`)."""
    statuses, healths = service.tally("status"), service.tally("health")
    return {
        "total": sum(statuses.values()),
        **{status: statuses.get(status, 0) for status in _STATUSES},
        **{status: n for status, n in statuses.items() if status not in _STATUSES},
        **{health: healths.get(health, 0) for health in _COUNTED_HEALTHS},
    }


@router.get("/")
async def jobs_page(request: Request) -> Response:
    async def page(request: Request, session: Session) -> Response:
        service = _service(request)
        query = _list_query(request.query_params)
        context = await _jobs_context(request, query, datetime.now(UTC))
        deleted = request.query_params.get("deleted")
        notice = f"Scheduled job “{deleted}” was deleted." if deleted and _NAME.fullmatch(deleted) else None
        return render(request, "jobs.html", session, counters=_counters(service), notice=notice, **context)

    return await _reader(request, page)


@router.get("/fragments/jobs")
async def jobs_fragment(request: Request) -> Response:
    async def page(request: Request, session: Session) -> Response:
        service = _service(request)
        context = await _jobs_context(request, _list_query(request.query_params), datetime.now(UTC))
        # The filter form (not the periodic refresh) announces the new result count.
        announce = request.headers.get("hx-trigger") == "filters"
        headers = {"HX-Replace-Url": context["page_url"]}
        return render(
            request, "_jobs_fragment.html", session, headers=headers, announce=announce,
            counters=_counters(service), **context,
        )  # fmt: skip

    return await _reader(request, page)


# ---- one job -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class HistoryQuery:
    """The history table's filters and page, from the page URL (the archive's filters, as the API's
    `/{jobId}/transactions` takes them); anything malformed is left out, never an error page."""

    status: ExecutionStatus | None = None
    trigger: Trigger | None = None
    user: str | None = None
    started_from: str | None = None  # as typed (YYYY-MM-DD or RFC 3339), shown back in the form
    started_to: str | None = None
    page: int = 1

    @classmethod
    def of(cls, params: Mapping[str, str]) -> HistoryQuery:
        raw_page = params.get("page", "1")
        status, trigger = params.get("status") or None, params.get("trigger") or None
        return cls(
            status=status if status in _RUN_STATUSES else None,  # type: ignore[arg-type]
            trigger=trigger if trigger in _TRIGGERS else None,  # type: ignore[arg-type]
            user=(params.get("user") or "").strip()[:253] or None,
            started_from=_day_or_time(params.get("from")),
            started_to=_day_or_time(params.get("to")),
            page=int(raw_page) if raw_page.isdigit() and 0 < len(raw_page) < 10 and int(raw_page) > 0 else 1,
        )

    def filters(self) -> Filters:
        return Filters(
            status=self.status,
            statuses=p.RUN_STATUSES,  # the history of runs; pauses and skipped slots are listed apart
            trigger=self.trigger,
            user=self.user,
            started_from=_moment(self.started_from),
            started_to=_moment(self.started_to),
        )

    def href(self, job_id: str, **changes: Any) -> str:
        values = {
            "status": self.status,
            "trigger": self.trigger,
            "user": self.user,
            "from": self.started_from,
            "to": self.started_to,
            "page": self.page,
            **changes,
        }
        kept = {k: v for k, v in values.items() if v not in (None, "") and not (k == "page" and v == 1)}
        return f"{PREFIX}/jobs/{job_id}" + (f"?{urlencode(kept)}" if kept else "")

    @property
    def filtered(self) -> bool:
        return any((self.status, self.trigger, self.user, self.started_from, self.started_to))


def _day_or_time(value: str | None) -> str | None:
    text = (value or "").strip()[:40]
    return text if text and _moment(text) is not None else None


def _moment(text: str | None) -> datetime | None:
    """A date (midnight UTC) or an RFC 3339 time; None when it is neither."""
    if not text:
        return None
    try:
        if len(text) == 10:
            return datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
        return parse_utc(text)
    except ValueError:
        return None


async def _history_page(request: Request, job_id: str, query: HistoryQuery) -> dict[str, Any]:
    rows, pagination = await _history(request).for_job(job_id, query.filters(), query.page, HISTORY_PAGE_SIZE)
    actions, counted = await _history(request).for_job(job_id, Filters(statuses=p.ACTION_STATUSES), 1, ACTIONS_SHOWN)
    total_pages = pagination["totalPages"]
    # The count and the page are two statements: a record written between them (READ COMMITTED) must not
    # show "1 in all" above two rows; the next refresh counts it anyway.
    shown = (query.page - 1) * HISTORY_PAGE_SIZE + len(rows)
    return {
        "actions": actions,
        "actions_total": max(counted["totalCount"], len(actions)),
        "actions_exact": counted["totalCountExact"],
        "rows": rows,
        "page": query.page,
        "total_count": max(pagination["totalCount"], shown),
        "total_exact": pagination["totalCountExact"],
        "total_pages": total_pages,
        "query": query,
        "statuses": _RUN_STATUSES,
        "triggers": _TRIGGERS,
        "previous_href": query.href(job_id, page=query.page - 1) if query.page > 1 else None,
        "next_href": query.href(job_id, page=query.page + 1) if pagination["nextCursor"] is not None else None,
        "live_url": f"{PREFIX}/fragments/jobs/{job_id}/live" + query.href(job_id).partition(f"/jobs/{job_id}")[2],
    }


async def _job_context(request: Request, session: Session, job_id: str) -> dict[str, Any]:
    service = _service(request)
    detail = service.detail(job_id)
    shown_state = "running" if detail["active_executions"] and detail["status"] == "idle" else detail["status"]
    history = await _history_page(request, job_id, HistoryQuery.of(request.query_params))
    controls = p.controls(detail, session.may, PERMISSIONS, service.execute_refusal(job_id))
    return {"job": detail, "state": shown_state, "history": history, "controls": controls}


@router.get("/jobs/{job_id}")
async def job_page(request: Request, job_id: str) -> Response:
    async def page(request: Request, session: Session) -> Response:
        return render(request, "job.html", session, **await _full_job_context(request, session, job_id), message=None)

    return await _reader(request, page)


async def _full_job_context(request: Request, session: Session, job_id: str) -> dict[str, Any]:
    context = await _job_context(request, session, job_id)
    window, _ = await _history(request).for_job(job_id, Filters(statuses=p.TREND_STATUSES), 1, TREND_RUNS)
    try:  # the API's schedule preview (GET .../schedule): one implementation, DST flags included
        preview = _service(request).schedule(job_id, UPCOMING_SHOWN)
        upcoming, preview_error = p.upcoming_runs(preview), None
    except ApiError as error:  # 409: no valid schedule (the job's state says error)
        upcoming, preview_error = [], error.error
    return {
        **context,
        "upcoming": upcoming,
        "preview_error": preview_error,
        "trend": p.trend(window),
        "trend_summary": p.trend_summary(window),
    }


@router.get("/fragments/jobs/{job_id}/live")
async def job_live(request: Request, job_id: str) -> Response:
    async def page(request: Request, session: Session) -> Response:
        try:
            context = await _job_context(request, session, job_id)
        except ApiError as error:
            if error.status != 404:
                raise
            # The page was open on it, so it existed: it was deleted (the stream's `deleted` asks for this).
            return render(request, "_job_gone.html", session, status=404)
        return render(request, "_job_live.html", session, **context)

    return await _reader(request, page)


async def _refused(request: Request, session: Session | None, permission: str | None) -> Response | None:
    """Why a mutation is refused (401 without session, 403 without CSRF token or permission), else None."""
    if session is None:
        return _to_login(request) if _is_htmx(request) else _message_page(request, None, 401, "Log in first.")
    try:
        fields = await sessions.form(request)
    except ValueError:
        return _message_page(request, session, 413, "The form is too large.")
    request.state.ui_form = fields
    presented = fields.get(sessions.CSRF_FIELD) or request.headers.get(sessions.CSRF_HEADER)
    if not sessions.csrf_ok(session, presented):
        return _message_page(request, session, 403, "Refused: the form's CSRF token is missing or wrong. Reload.")
    if permission is not None and not session.may(permission):
        return _message_page(request, session, 403, f"Not allowed: this needs the permission {permission}.")
    return None


def _message_page(
    request: Request, session: Session | None, status: int, text: str, target: str = "job-message"
) -> HTMLResponse:
    """A refusal: in place of the page's message line for htmx, else as a page of its own."""
    if _is_htmx(request):
        retarget = {"HX-Retarget": f"#{target}", "HX-Reswap": "outerHTML"}
        return render(
            request, "_message.html", session, status=status, headers=retarget, message=text, tone="bad", target=target
        )
    return render(request, "error.html", session, status=status, error=text, title=_title(status))


# An action answers with its message (the job page shows it), or with a response of its own (a redirect).
Action = Callable[[ScheduledJobService, Session, dict[str, str]], Awaitable[str | Response]]


async def _act(
    request: Request, job_id: str, permission: str, action: Action, *, errors_in: str | None = None
) -> Response:
    """Every mutation: session, CSRF token and permission checked, the action run with the caller as
    its principal, the job page (or its live part, for htmx) answered with the outcome. `errors_in`: a
    refusal goes to that message line instead (the delete dialog's)."""
    session = await sessions.current(request)
    refusal = await _refused(request, session, permission)
    if refusal is not None:
        return refusal
    assert session is not None
    fields: dict[str, str] = request.state.ui_form
    service = _service(request)
    try:
        outcome = await action(service, session, fields)
    except ApiError as error:
        if errors_in is not None:
            return _message_page(request, session, error.status, error.error, target=errors_in)
        if error.status == 404:
            return _error_page(request, session, error)
        message, tone, status = error.error, "bad", error.status
    else:
        if isinstance(outcome, Response):
            return outcome
        message, tone, status = outcome, "ok", 200
    if _is_htmx(request):
        return render(
            request, "_job_live.html", session, status=status, **await _job_context(request, session, job_id),
            oob_message={"text": message, "tone": tone},
        )  # fmt: skip
    return render(
        request, "job.html", session, status=status, **await _full_job_context(request, session, job_id),
        message={"text": message, "tone": tone},
    )  # fmt: skip


@router.post("/jobs/{job_id}/execute")
async def execute(request: Request, job_id: str) -> Response:
    async def run(service: ScheduledJobService, session: Session, fields: dict[str, str]) -> str:
        reason = (fields.get("reason") or "").strip()[:500]
        result = await service.execute(job_id, session.principal, reason or None)
        return f"Started run {result['execution_id']}."

    return await _act(request, job_id, EXECUTE, run)


@router.post("/jobs/{job_id}/cancel")
async def cancel(request: Request, job_id: str) -> Response:
    async def run(service: ScheduledJobService, session: Session, fields: dict[str, str]) -> str:
        result = await service.cancel(job_id, session.principal)
        return f"Cancelled {', '.join(result['cancelled_executions'])} (by {result['cancelled_by']})."

    return await _act(request, job_id, CANCEL, run)


@router.post("/jobs/{job_id}/pause")
async def pause(request: Request, job_id: str) -> Response:
    async def run(service: ScheduledJobService, session: Session, fields: dict[str, str]) -> str:
        reason = (fields.get("reason") or "").strip()[:500]
        state = await service.pause(job_id, session.principal, reason or None)
        return "Paused." if state["changed"] else "Already paused (who and why unchanged)."

    return await _act(request, job_id, PAUSE, run)


@router.post("/jobs/{job_id}/resume")
async def resume(request: Request, job_id: str) -> Response:
    async def run(service: ScheduledJobService, session: Session, fields: dict[str, str]) -> str:
        state = await service.resume(job_id, session.principal)
        return "Resumed." if state["changed"] else "Not paused: nothing to resume."

    return await _act(request, job_id, PAUSE, run)


@router.post("/jobs/{job_id}/delete")
async def delete(request: Request, job_id: str) -> Response:
    async def run(service: ScheduledJobService, session: Session, fields: dict[str, str]) -> Response:
        name = service.detail(job_id)["name"]
        if fields.get("confirm", "").strip() != name:
            raise ApiError(400, f"Not deleted: type the job's name, {name}, to confirm.")
        await service.delete(job_id, session.principal)  # recorded as deleted by the caller
        location = f"{PREFIX}/?{urlencode({'deleted': name})}"
        if _is_htmx(request):
            return Response(status_code=200, headers={**SECURITY_HEADERS, "HX-Redirect": location})
        return RedirectResponse(location, status_code=303, headers=SECURITY_HEADERS)

    return await _act(request, job_id, DELETE, run, errors_in="delete-message")


# ---- one run -----------------------------------------------------------------------------------


def _run_job(request: Request, job_id: str, run: dict[str, Any]) -> dict[str, Any]:
    """The job a run belongs to; after the ScheduledJob was deleted, what its archived run says of it."""
    try:
        job: dict[str, Any] = _service(request).detail(job_id)
        return {**job, "deleted": False}
    except ApiError as error:
        if error.status != 404:
            raise
        return {"id": run["job_id"], "name": run["name"], "namespace": run["namespace"], "deleted": True}


async def _log_tail(request: Request, job_id: str, execution_id: str) -> tuple[dict[str, Any] | None, str | None]:
    """Each container's last LOG_TAIL_LINES lines (bounded in bytes too), or why there are none."""
    try:
        logs = await _logs(request).logs(job_id, execution_id, Bounds(LOG_TAIL_LINES, LOG_TAIL_BYTES))
    except ApiError as error:
        return None, error.error
    return logs, None


@router.get("/jobs/{job_id}/runs/{execution_id}")
async def run_page(request: Request, job_id: str, execution_id: str) -> Response:
    async def page(request: Request, session: Session) -> Response:
        run = await _history(request).one(job_id, execution_id)
        if p.is_action(run):  # a pause, a resume, a skipped slot: no run, no logs; its own page says what it was
            return _elsewhere(job_id, "actions", execution_id)
        run.pop("logs", None)  # the archive's full capture: the page shows the bounded tail below instead
        logs, logs_missing = await _log_tail(request, job_id, execution_id)
        base = f"{PREFIX}/jobs/{job_id}/runs/{execution_id}/logs"
        return render(
            request, "run.html", session, **_run_live_context(request, job_id, execution_id, run), logs=logs,
            logs_missing=logs_missing, tail_lines=LOG_TAIL_LINES, follow_url=f"{base}?follow=true",
            download_url=f"{base}.txt",
        )  # fmt: skip

    return await _reader(request, page)


def _run_live_context(request: Request, job_id: str, execution_id: str, run: dict[str, Any]) -> dict[str, Any]:
    live_url = f"{PREFIX}/fragments/jobs/{quote(job_id, safe='')}/runs/{quote(execution_id, safe='')}/live"
    return {"job": _run_job(request, job_id, run), "run": run, "live_url": live_url}


@router.get("/fragments/jobs/{job_id}/runs/{execution_id}/live")
async def run_live(request: Request, job_id: str, execution_id: str) -> Response:
    """A run page's refreshed part: its state and diagnostics (its logs follow on their own)."""

    async def page(request: Request, session: Session) -> Response:
        run = await _history(request).one(job_id, execution_id)
        run.pop("logs", None)
        return render(request, "_run_live.html", session, **_run_live_context(request, job_id, execution_id, run))

    return await _reader(request, page)


@router.get("/jobs/{job_id}/actions/{execution_id}")
async def action_page(request: Request, job_id: str, execution_id: str) -> Response:
    """An admin's pause or resume, or a slot that did not run: what, who, when and why (no logs)."""

    async def page(request: Request, session: Session) -> Response:
        record = await _history(request).one(job_id, execution_id)
        if not p.is_action(record):
            return _elsewhere(job_id, "runs", execution_id)
        record.pop("logs", None)
        return render(request, "action.html", session, job=_run_job(request, job_id, record), action=record)

    return await _reader(request, page)


def _elsewhere(job_id: str, kind: Literal["runs", "actions"], execution_id: str) -> Response:
    location = f"{PREFIX}/jobs/{quote(job_id, safe='')}/{kind}/{quote(execution_id, safe='')}"
    return RedirectResponse(location, status_code=303, headers=SECURITY_HEADERS)


def _plain(chunks: Any, filename: str | None = None) -> StreamingResponse:
    headers = {**SECURITY_HEADERS, "X-Accel-Buffering": "no"}  # a proxy must not hold a follow back
    if filename:
        headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return StreamingResponse(chunks, media_type="text/plain; charset=utf-8", headers=headers)


async def _text_logs(request: Request, job_id: str, execution_id: str, mode: Literal["follow", "download"]) -> Response:
    """The logs endpoint's text/plain output for a dashboard session (the API itself wants a bearer token)."""
    session = await sessions.current(request)
    if session is None:
        return Response("Log in first.\n", status_code=401, media_type="text/plain", headers=SECURITY_HEADERS)
    if not session.may(READ):
        return Response(f"Needs {READ}.\n", status_code=403, media_type="text/plain", headers=SECURITY_HEADERS)
    raw = request.query_params.get("tailLines", "")
    tail = int(raw) if raw.isdigit() and len(raw) < 7 else (LOG_TAIL_LINES if mode == "follow" else None)
    try:
        chunks = await _logs(request).stream(job_id, execution_id, None, tail, DEFAULT_LOG_MAX_BYTES)
    except ApiError as error:
        return Response(f"{error.error}\n", status_code=error.status, media_type="text/plain", headers=SECURITY_HEADERS)
    return _plain(chunks, f"{execution_id}.log" if mode == "download" else None)


@router.get("/jobs/{job_id}/runs/{execution_id}/logs")
async def follow_logs(request: Request, job_id: str, execution_id: str) -> Response:
    """`?follow=true`: while the run runs, its output as it is written (ui.js appends it to the page)."""
    return await _text_logs(request, job_id, execution_id, "follow")


@router.get("/jobs/{job_id}/runs/{execution_id}/logs.txt")
async def download_logs(request: Request, job_id: str, execution_id: str) -> Response:
    return await _text_logs(request, job_id, execution_id, "download")


# ---- recent failures ---------------------------------------------------------------------------


@router.get("/failures")
async def failures_page(request: Request) -> Response:
    async def page(request: Request, session: Session) -> Response:
        failures, pagination = await _history(request).across_jobs(Filters(status="failed"), 1, FAILURES_SHOWN)
        return render(
            request, "failures.html", session, failures=failures, limit=FAILURES_SHOWN,
            total=pagination["totalCount"], total_exact=pagination["totalCountExact"],
        )  # fmt: skip

    return await _reader(request, page)
