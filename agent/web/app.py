"""The rep's daily surface: Today, search, timelines, the review queue, corrections, rules, audit.

Server-rendered (Jinja2, autoescaped: mail text is always text, never markup) with htmx served from
the package. Every page answers as JSON too: append ``.json`` or send ``Accept: application/json``.
Every state-changing request carries the session's CSRF token (form field ``csrf`` or header
``X-CSRF-Token``). Bound to loopback the page is the local user's; bound elsewhere it asks for a
sign-in (``inkless user add``).
"""

from __future__ import annotations

import hmac
import os
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.middleware.sessions import SessionMiddleware

from providers.errors import BadInput, InklessError, NotFound
from store.models import Activity, Correction, Rule
from store.queries import refresh_due_rollups

from .. import clock
from ..corrections import audit, audit_view, corrections_view, rules_view
from ..corrections import ignore as do_ignore
from ..corrections import reassign as do_reassign
from ..corrections import undo as do_undo
from ..pages import activity_view, search_view, stale_days, today_view
from ..review import decide, queue
from ..views import MODELS, find_entity, timeline_view
from .auth import active_user, session_key, verify_user

HERE = Path(__file__).parent
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
PAGE = 50
MAX_FAILURES = 5
LOCKOUT_SECONDS = 15 * 60


class CsrfRefused(Exception):
    pass


def _wants_json(request: Request) -> bool:
    if request.url.path.endswith(".json"):
        return True
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


def _zone() -> tzinfo | None:
    """``INKLESS_TZ`` (an IANA name), else the machine's own zone."""
    name = os.environ.get("INKLESS_TZ")
    if name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            return None
    return None


def _when(value: str | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    if not value:
        return "—"
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(_zone()).strftime(fmt)
    except ValueError:
        return value


def _zone_name() -> str:
    return datetime.now(UTC).astimezone(_zone()).strftime("%Z") or "local time"


def _safe_next(value: str | None, default: str = "/") -> str:
    """Only paths on this site: never an open redirect."""
    if not value:
        return default
    u = urlparse(value)
    if u.scheme or u.netloc or not value.startswith("/") or value.startswith("//"):
        return default
    return value


def create_app(
    sessions: sessionmaker[Session],
    host: str = "127.0.0.1",
    secret_key: str | None = None,
    now: Callable[[], datetime] = clock.now,
) -> FastAPI:
    require_login = host not in LOOPBACK
    #: failed sign-ins per (client address, name): guessing is slowed to 5 tries per 15 minutes
    failures: dict[tuple[str, str], list[float]] = {}
    app = FastAPI(title="inkless", docs_url=None, redoc_url=None, openapi_url=None)
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.autoescape = True
    templates.env.filters["when"] = _when
    templates.env.filters["day"] = lambda v: _when(v, "%a %d %b")
    templates.env.filters["pct"] = lambda v: f"{round((v or 0) * 100)} %"
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    # -- security ----------------------------------------------------------------------------------
    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Response:
        path = request.url.path
        open_path = path.startswith("/static/") or path in ("/login", "/login.json")
        user = request.session.get("user")
        if require_login and not open_path:
            ok = False
            if user:
                with sessions() as s:
                    ok = active_user(s, user)
            if not ok:
                request.session.pop("user", None)
                if _wants_json(request) or request.method != "GET":
                    return JSONResponse({"error": "sign in first"}, status_code=401)
                return RedirectResponse(f"/login?next={path}", status_code=303)
        if "csrf" not in request.session:
            request.session["csrf"] = secrets.token_urlsafe(24)
        response: Response = await call_next(request)
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
        )
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "same-origin"
        return response

    app.add_middleware(
        SessionMiddleware,
        secret_key=secret_key or session_key(),
        session_cookie="inkless_session",
        same_site="strict",
        https_only=False,
        max_age=14 * 24 * 3600,
    )

    async def form_of(request: Request) -> Any:
        """The posted form, after checking the session's CSRF token (form field or header).
        Every state-changing endpoint reads its form through here; a test walks the routes to be sure."""
        form = await request.form()
        sent = request.headers.get("x-csrf-token") or str(form.get("csrf") or "")
        want = str(request.session.get("csrf") or "")
        if not sent or not want or not hmac.compare_digest(sent, want):
            raise CsrfRefused()
        return form

    def actor(request: Request) -> str:
        return str(request.session.get("user") or os.environ.get("USER") or "local")

    def render(request: Request, template: str, data: dict[str, Any], status: int = 200) -> Response:
        if _wants_json(request):
            return JSONResponse(data, status_code=status)
        flash = request.session.pop("flash", None)
        ctx = {
            "data": data,
            "csrf": request.session.get("csrf", ""),
            "user": request.session.get("user"),
            "flash": flash,
            "zone": _zone_name(),
            "path": request.url.path,
            "full_path": str(request.url.path) + (f"?{request.url.query}" if request.url.query else ""),
        }
        return templates.TemplateResponse(request, template, ctx, status_code=status)

    def after_post(request: Request, default: str, flash: dict[str, Any] | None = None) -> Response:
        if flash is not None:
            request.session["flash"] = flash
        if _wants_json(request):
            return JSONResponse({"ok": True, **(flash or {})})
        return RedirectResponse(_safe_next(request.query_params.get("next"), default), status_code=303)

    @app.exception_handler(CsrfRefused)
    async def csrf_refused(request: Request, exc: CsrfRefused) -> Response:
        message = "missing or wrong CSRF token; reload the page"
        if (
            _wants_json(request)
            or request.headers.get("hx-request") is None
            and "text/html" not in request.headers.get("accept", "")
        ):
            return JSONResponse({"error": message}, status_code=403)
        return render(request, "error.html", {"error": message}, 403)

    @app.exception_handler(InklessError)
    async def inkless_error(request: Request, exc: InklessError) -> Response:
        status = 404 if isinstance(exc, NotFound) else 400
        if _wants_json(request):
            return JSONResponse({"error": str(exc)}, status_code=status)
        return render(request, "error.html", {"error": str(exc)}, status)

    # -- sign-in -----------------------------------------------------------------------------------
    @app.get("/login")
    def login_page(request: Request) -> Response:
        return render(request, "login.html", {"next": _safe_next(request.query_params.get("next")), "error": None})

    @app.post("/login")
    async def login(request: Request) -> Response:
        form = await form_of(request)
        name, secret = str(form.get("name") or ""), str(form.get("password") or "")
        client = request.client.host if request.client else "?"
        recent = [t for t in failures.get((client, name), []) if t > time.monotonic() - LOCKOUT_SECONDS]
        if len(recent) >= MAX_FAILURES:
            data = {"next": _safe_next(str(form.get("next") or "")), "error": "too many attempts; wait 15 minutes"}
            return render(request, "login.html", data, 429)

        def work() -> bool:
            with sessions.begin() as s:
                ok = verify_user(s, name, secret)
                audit(s, name or "?", "sign-in" if ok else "sign-in-refused", {}, now())
                return ok

        ok = await run_in_threadpool(work)
        if not ok:
            failures[(client, name)] = [*recent, time.monotonic()]
            data = {"next": _safe_next(str(form.get("next") or "")), "error": "wrong name or password"}
            return render(request, "login.html", data, 401)
        failures.pop((client, name), None)
        request.session.clear()  # a new session (and CSRF token) on sign-in
        request.session["user"] = name
        request.session["csrf"] = secrets.token_urlsafe(24)
        return RedirectResponse(_safe_next(str(form.get("next") or "")), status_code=303)

    @app.post("/logout")
    async def logout(request: Request) -> Response:
        await form_of(request)
        request.session.clear()
        return RedirectResponse("/login" if require_login else "/", status_code=303)

    # -- pages -------------------------------------------------------------------------------------
    @app.get("/")
    @app.get("/today.json")
    def today(request: Request, days: int | None = None) -> Response:
        t = now()
        with sessions.begin() as s:
            refresh_due_rollups(s, t)
        with sessions() as s:
            data = today_view(s, t, stale_days(days))
        return render(request, "today.html", data)

    @app.get("/search")
    @app.get("/search.json")
    def search(request: Request, q: str = "") -> Response:
        with sessions() as s:
            data = search_view(s, q)
        if request.headers.get("hx-request") and request.headers.get("hx-target") == "results":
            return templates.TemplateResponse(request, "_results.html", {"data": data})
        return render(request, "search.html", data)

    def timeline(kind: str) -> Callable[..., Response]:
        def page(request: Request, entity_id: int, offset: int = 0) -> Response:
            t = now()
            with sessions() as s:
                ent = s.get(MODELS[kind], entity_id)
                if ent is None:
                    raise NotFound(f"no {kind} {entity_id}")
                data = timeline_view(s, kind, ent, t, limit=PAGE, offset=max(0, offset))
            return render(request, "timeline.html", data)

        return page

    for kind in ("contact", "company", "deal"):
        app.get(f"/{kind}/{{entity_id}}.json")(timeline(kind))  # first: "/company/1.json" is no id
        app.get(f"/{kind}/{{entity_id}}")(timeline(kind))

    @app.get("/find/{kind}")
    def find(request: Request, kind: str, q: str) -> Response:
        if kind not in MODELS:
            raise NotFound(f"no such kind {kind!r}")
        with sessions() as s:
            ent = find_entity(s, kind, q)
        return RedirectResponse(f"/{kind}/{ent.id}", status_code=303)

    @app.get("/activity/{activity_id}")
    @app.get("/activity/{activity_id}.json")
    def activity(request: Request, activity_id: int) -> Response:
        with sessions() as s:
            data = activity_view(s, activity_id, now())
        if data is None:
            raise NotFound(f"no activity {activity_id}")
        data["back"] = _safe_next(request.query_params.get("next"), "")
        return render(request, "activity.html", data)

    @app.post("/activity/{activity_id}/reassign")
    async def reassign(request: Request, activity_id: int) -> Response:
        form = await form_of(request)
        target_type = str(form.get("target_type") or "deal")
        scope = str(form.get("scope") or "item")
        raw = str(form.get("target_id") or "").strip()
        query = str(form.get("target_query") or "").strip()
        address = str(form.get("address") or "") or None
        who = actor(request)

        def work() -> dict[str, Any]:
            if target_type not in MODELS:
                raise BadInput(f"cannot reassign to a {target_type!r}")
            with sessions.begin() as s:
                if raw.isdigit():
                    target_id = int(raw)
                elif query:
                    target_id = find_entity(s, target_type, query).id
                else:
                    raise NotFound(f"choose a {target_type}")
                corr = do_reassign(s, activity_id, target_type, target_id, scope, who, now(), address)
                name = s.get(MODELS[target_type], target_id).name
                n = corr.affected
                return {
                    "text": f"Moved {n} item{'s' if n != 1 else ''} to {target_type} “{name}”"
                    + (" and made a rule for future mail." if corr.rule_id else "."),
                    "correction": corr.id,
                }

        return after_post(request, f"/activity/{activity_id}", await run_in_threadpool(work))

    @app.post("/activity/{activity_id}/ignore")
    async def ignore(request: Request, activity_id: int) -> Response:
        form = await form_of(request)
        scope = str(form.get("scope") or "item")
        address = str(form.get("address") or "") or None
        who = actor(request)

        def work() -> dict[str, Any]:
            with sessions.begin() as s:
                corr = do_ignore(s, who, now(), activity_id=activity_id, scope=scope, address=address)
                n = corr.affected
                return {
                    "text": f"Marked {n} item{'s' if n != 1 else ''} not business"
                    + (" and made a rule for future mail." if corr.rule_id else "."),
                    "correction": corr.id,
                }

        return after_post(request, "/", await run_in_threadpool(work))

    @app.get("/review")
    @app.get("/review.json")
    def review(request: Request, at: int | None = None) -> Response:
        with sessions() as s:
            items = queue(s, 50)
            total = s.execute(
                select(func.count()).select_from(Activity).where(Activity.status == "needs_review")
            ).scalar_one()
        current = next((n for n, it in enumerate(items) if it["id"] == at), 0)
        return render(request, "review.html", {"items": items, "total": total, "current": current})

    @app.post("/review/{activity_id}")
    async def review_decide(request: Request, activity_id: int) -> Response:
        form = await form_of(request)
        choice = str(form.get("choice") or "")
        following = str(form.get("following") or "")
        who = actor(request)

        def work() -> dict[str, Any]:
            with sessions.begin() as s:
                if choice == "ignore":
                    corr = do_ignore(s, who, now(), activity_id=activity_id, scope="item")
                    return {"text": "Marked not business.", "correction": corr.id}
                deal_id = int(choice) if choice.isdigit() else None
                if choice != "none" and deal_id is None:
                    raise BadInput("pick a deal, none or not business")
                status = decide(s, activity_id, deal_id, who, now())
                cid = (
                    s.execute(
                        select(Correction.id)
                        .where(Correction.activity_id == activity_id)
                        .order_by(Correction.id.desc())
                    )
                    .scalars()
                    .first()
                )
                return {"text": f"Saved ({status}).", "correction": cid}

        back = f"/review?at={following}" if following.isdigit() else "/review"
        return after_post(request, back, await run_in_threadpool(work))

    @app.get("/rules")
    @app.get("/rules.json")
    def rules(request: Request) -> Response:
        with sessions() as s:
            data = {"rules": rules_view(s, include_undone=True), "corrections": corrections_view(s, 50)}
        return render(request, "rules.html", data)

    @app.post("/corrections/{correction_id}/undo")
    async def undo_correction(request: Request, correction_id: int) -> Response:
        await form_of(request)
        who = actor(request)

        def work() -> dict[str, Any]:
            with sessions.begin() as s:
                corr = do_undo(s, who, now(), correction_id)
                return {"text": f"Undone: {len(corr.before or {})} item(s) restored.", "correction": None}

        return after_post(request, "/rules", await run_in_threadpool(work))

    @app.post("/rules/{rule_id}/undo")
    async def undo_rule(request: Request, rule_id: int) -> Response:
        await form_of(request)
        who = actor(request)

        def work() -> dict[str, Any]:
            with sessions.begin() as s:
                if s.get(Rule, rule_id) is None:
                    raise NotFound(f"no rule {rule_id}")
                cid = s.execute(select(Correction.id).where(Correction.rule_id == rule_id)).scalars().first()
                if cid is None:
                    raise NotFound(f"rule {rule_id} has no correction to undo")
                corr = do_undo(s, who, now(), cid)
                return {
                    "text": f"Rule #{rule_id} undone: {len(corr.before or {})} item(s) restored.",
                    "correction": None,
                }

        return after_post(request, "/rules", await run_in_threadpool(work))

    @app.get("/audit")
    @app.get("/audit.json")
    def audit_page(request: Request) -> Response:
        with sessions() as s:
            data = {"entries": audit_view(s, 300)}
        return render(request, "audit.html", data)

    return app
