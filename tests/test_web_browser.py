"""The web page in a real browser: Debian's Chromium driven by Playwright against uvicorn on loopback.

What a rep does: open Today, search a company and open its timeline, move a mis-filed thread to the
right deal (and undo it), work the review queue with the keyboard only. And what an attacker tries:
markup in a subject, a POST without the CSRF token. Every step leaves a screenshot in
``$INKLESS_ARTIFACTS`` (default ``<repo>/test-artifacts/web/``, git-ignored).

One backend (SQLite) is enough here: the in-process tests cover PostgreSQL. The scenario is built once
through the real pipeline (tests/web_scenario.py) and copied for each test, so tests do not share state.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.web_scenario import HOSTILE_SUBJECT, NOW, THREAD_SUBJECT, Scenario, build_scenario

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(os.environ.get("INKLESS_ARTIFACTS") or ROOT / "test-artifacts") / "web"
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

if not CHROMIUM.exists():
    pytest.skip(
        f"browser tests need Debian's Chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True
    )
try:
    from playwright.sync_api import Browser, Page, expect, sync_playwright
except ImportError:
    pytest.skip("browser tests need Playwright (pip install -e '.[test]')", allow_module_level=True)


# -- fixtures --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Scenario]:
    """The scenario, built once through the real pipeline into a SQLite file."""
    from store.db import open_db

    work = tmp_path_factory.mktemp("scenario")
    db = work / "template.db"
    engine, maker = open_db(f"sqlite:///{db}")
    try:
        scenario = build_scenario(maker, work)
    finally:
        engine.dispose()
    return db, scenario


@dataclass
class Server:
    base: str
    scenario: Scenario
    db_url: str


@pytest.fixture
def server(template: tuple[Path, Scenario], tmp_path: Path) -> Iterator[Server]:
    """uvicorn serving the real app (its own copy of the scenario) on a free loopback port, in a thread."""
    import uvicorn

    from agent.web.app import create_app
    from store.db import open_db

    src, scenario = template
    db = tmp_path / "inkless.db"
    with sqlite3.connect(src) as a, sqlite3.connect(db) as b:
        a.backup(b)  # a consistent copy whatever the WAL holds
    a.close()
    b.close()
    url = f"sqlite:///{db}"
    engine, maker = open_db(url)
    app = create_app(maker, host="127.0.0.1", secret_key="browser-test-key", now=lambda: NOW)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="off", ws="none", access_log=False)
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True, name="uvicorn")
    thread.start()
    deadline = time.monotonic() + 10
    while not srv.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield Server(f"http://127.0.0.1:{port}", scenario, url)
    finally:
        srv.should_exit = True
        thread.join(10)
        sock.close()
        engine.dispose()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            yield b
        finally:
            b.close()


@dataclass
class Tab:
    """A page plus what it saw: dialogs, script errors and console errors (CSP violations land there)."""

    page: Page
    base: str
    name: str
    dialogs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    step: int = 0
    #: errors a test provokes on purpose (substrings)
    expected: list[str] = field(default_factory=list)

    def go(self, path: str) -> None:
        resp = self.page.goto(self.base + path)
        assert resp is not None and resp.ok, (path, resp and resp.status)

    def shot(self, label: str, page: Page | None = None, full_page: bool = True) -> Path:
        """A screenshot of the step: the whole page from its top (a sticky header would otherwise be
        drawn across the middle), or with ``full_page=False`` just what the viewport shows."""
        page = page or self.page
        self.step += 1
        out = ARTIFACTS / f"{self.name}-{self.step:02d}-{label}.png"
        if full_page:
            page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(out), full_page=full_page)
        return out


@pytest.fixture
def tab(browser: Browser, server: Server, request: pytest.FixtureRequest) -> Iterator[Tab]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    name = request.node.name.removeprefix("test_")
    for old in ARTIFACTS.glob(f"{name}-*.png"):
        old.unlink()
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB", timezone_id="UTC")
    context.set_default_timeout(10_000)
    page = context.new_page()
    t = Tab(page, server.base, name)

    def on_dialog(d: Any) -> None:
        t.dialogs.append(f"{d.type}: {d.message}")
        d.dismiss()

    page.on("dialog", on_dialog)
    page.on("pageerror", lambda exc: t.errors.append(f"pageerror: {exc}"))

    def on_console(m: Any) -> None:
        where = (m.location or {}).get("url", "")
        if m.type == "error" and not where.endswith("/favicon.ico"):  # no favicon is not an error of the page
            t.errors.append(f"console: {m.text} ({where})")

    page.on("console", on_console)
    page.on("response", lambda r: t.errors.append(f"HTTP {r.status} {r.url}") if r.status >= 400 else None)
    try:
        yield t
    finally:
        context.close()
    assert not t.dialogs, t.dialogs
    unexpected = [e for e in t.errors if not any(x in e for x in t.expected)]
    assert not unexpected, unexpected


def item(page: Page, activity_id: int) -> Any:
    return page.locator(f"#item-{activity_id}")


def get_json(tab: Tab, path: str) -> Any:
    resp = tab.page.request.get(tab.base + path)
    assert resp.ok, (path, resp.status)
    return resp.json()


def _minute(iso: str) -> str:
    return iso.replace("T", " ")[:16]


# -- what a rep does -------------------------------------------------------------------------------------


def test_today_opens_with_meetings_cold_deals_and_the_review_count(tab: Tab, server: Server) -> None:
    tab.go("/")
    page = tab.page
    expect(page).to_have_title("inkless — today")
    expect(page.locator("h1")).to_have_text("Today")
    review = page.locator("#review-count")
    expect(review).to_have_text(f"{len(server.scenario.review_ids)} to review")
    expect(page.locator("nav a[aria-current=page]")).to_have_text("Today")
    expect(page.locator("#h-meet + ul.items li.item").first).to_be_visible()  # the demo has meetings ahead
    expect(page.locator("section[aria-labelledby=h-recent] li.item").first).to_be_visible()
    tab.shot("today")
    review.click()
    expect(page).to_have_url(re.compile(r"/review$"))
    expect(page.locator(".review-item")).to_have_count(len(server.scenario.review_ids))
    tab.shot("review-from-today")


def test_search_by_typing_then_open_the_company_timeline(tab: Tab, server: Server) -> None:
    sc = server.scenario
    page = tab.page
    tab.go("/")
    page.keyboard.press("/")  # "/" focuses the header's search box anywhere
    box = page.locator("header .search input")
    expect(box).to_be_focused()
    box.type("halvorsen")
    box.press("Enter")
    expect(page).to_have_url(re.compile(r"/search\?q=halvorsen$"))
    companies = page.locator(".results-companies a")
    expect(companies).to_have_text(["Halvorsen Marine AS"])
    expect(page.locator(".results-deals a")).to_have_count(2)
    tab.shot("search-enter")

    # the big box searches as one types (htmx), keeping the address bar in step
    big = page.locator("form.bigsearch input")
    big.fill("")
    big.type("lumen orch", delay=30)
    expect(page.locator(".results-companies a")).to_have_text(["Lumen Orchard Foods S.L."])
    expect(page).to_have_url(re.compile(r"/search\?q=lumen(\+|%20)orch$"))
    tab.shot("search-live")
    big.fill("")
    big.type("halvorsen", delay=30)
    expect(companies).to_have_text(["Halvorsen Marine AS"])

    companies.first.click()
    expect(page).to_have_url(re.compile(rf"/company/{sc.company_id}$"))
    expect(page.locator("h1")).to_contain_text("Halvorsen Marine AS")
    expect(page.locator("#last-contact")).to_have_text("2026-11-18 16:00")
    head = page.locator(f"section.group:has(#item-{sc.thread_ids[0]}) h3.thread-head")
    expect(head).to_contain_text(THREAD_SUBJECT)
    expect(head).to_contain_text(f"{len(sc.thread_ids)} messages")
    for aid in sc.thread_ids:
        expect(item(page, aid)).to_be_visible()
    tab.shot("company-timeline")


def test_moving_a_misfiled_thread_to_the_right_deal_and_undoing_it(tab: Tab, server: Server) -> None:
    sc = server.scenario
    page = tab.page
    before_b = get_json(tab, f"/deal/{sc.deal_b}.json")["entity"]
    before_a = get_json(tab, f"/deal/{sc.deal_a}.json")["entity"]

    tab.go(f"/deal/{sc.deal_a}")
    for aid in sc.thread_ids:
        expect(item(page, aid)).to_be_visible()
    expect(page.locator("#last-contact")).to_have_text("2026-11-18 16:00")
    tab.shot("deal-a-before")

    # open the newest mail of the thread from deal A's timeline, as a rep would
    item(page, sc.thread_ids[-1]).locator("a.why").click()
    expect(page).to_have_url(re.compile(rf"/activity/{sc.thread_ids[-1]}\?next="))
    expect(page.locator("#why")).to_contain_text(sc.deal_a_name)
    expect(page.locator("p.meta")).to_contain_text(f"thread of {len(sc.thread_ids)}")
    tab.shot("activity-at-why", full_page=False)  # where the "why / correct" link lands
    tab.shot("activity-misfiled")

    form = page.locator("#move-deal")
    form.locator("select[name=target_id]").select_option(label=sc.deal_b_name)
    form.locator("input[name=scope][value=thread]").check()
    tab.shot("activity-move-chosen")
    form.locator("button[type=submit]").click()

    # back on deal A (the page the rep came from): the thread is gone, the flash offers Undo
    expect(page).to_have_url(re.compile(rf"/deal/{sc.deal_a}$"))
    flash = page.locator("#flash")
    expect(flash).to_contain_text(f"Moved {len(sc.thread_ids)} items to deal “{sc.deal_b_name}”")
    for aid in sc.thread_ids:
        expect(item(page, aid)).to_have_count(0)
    expect(page.locator("#last-contact")).not_to_have_text("2026-11-18 16:00")
    expect(page.locator("#activity-count")).to_have_text(str(before_a["activity_count"] - len(sc.thread_ids)))
    tab.shot("deal-a-after-move")

    # deal B, in a second tab of the same session: the whole thread, and a newer last contact
    other = page.context.new_page()
    other.goto(f"{server.base}/deal/{sc.deal_b}")
    for aid in sc.thread_ids:
        expect(other.locator(f"#item-{aid}")).to_be_visible()
    expect(other.locator("#last-contact")).to_have_text("2026-11-18 16:00")
    assert before_b["last_contact_at"] != "2026-11-18T16:00:00Z"
    expect(other.locator("#activity-count")).to_have_text(str(before_b["activity_count"] + len(sc.thread_ids)))
    tab.shot("deal-b-after-move", page=other)

    # Undo from the flash puts every message back on deal A
    page.locator("#undo-last").click()
    expect(flash).to_contain_text(f"Undone: {len(sc.thread_ids)} item(s) restored")
    expect(page).to_have_url(re.compile(rf"/deal/{sc.deal_a}$"))
    for aid in sc.thread_ids:
        expect(item(page, aid)).to_be_visible()
    expect(page.locator("#last-contact")).to_have_text("2026-11-18 16:00")
    tab.shot("deal-a-after-undo")
    other.reload()
    for aid in sc.thread_ids:
        expect(other.locator(f"#item-{aid}")).to_have_count(0)
    expect(other.locator("#last-contact")).to_have_text(_minute(before_b["last_contact_at"]))
    other.close()
    assert get_json(tab, f"/deal/{sc.deal_a}.json")["entity"] == before_a
    assert get_json(tab, f"/deal/{sc.deal_b}.json")["entity"] == before_b
    # the rule the thread correction made is undone with it: future replies go back to the matcher
    rules = get_json(tab, "/rules.json")["rules"]
    assert [r["scope"] for r in rules] == ["thread"] and rules[0]["undone_at"], rules
    tab.go("/rules")
    expect(page.locator("#rules tbody tr.undone")).to_have_count(1)
    tab.shot("rules-after-undo")


def test_a_refused_correction_tells_the_rep_why(tab: Tab, server: Server) -> None:
    sc = server.scenario
    page = tab.page
    tab.expected.append("404")  # provoked below
    tab.go(f"/activity/{sc.thread_ids[-1]}")
    page.locator("#move-deal input[name=target_query]").fill("no such deal anywhere")
    page.locator("#move-deal button[type=submit]").click()
    page.wait_for_load_state("networkidle")
    tab.shot("unknown-deal-name")
    expect(page.locator("[role=alert]")).to_contain_text("no deal matches", timeout=3_000)


def test_review_queue_is_worked_with_the_keyboard_only(tab: Tab, server: Server) -> None:
    sc = server.scenario
    page = tab.page
    tab.go("/review")
    items = page.locator(".review-item")
    expect(items).to_have_count(len(sc.review_ids))
    expect(page.locator("h1 small")).to_have_text(f"{len(sc.review_ids)} waiting")
    ids = [int(str(i.get_attribute("id")).removeprefix("review-")) for i in items.all()]
    assert sorted(ids) == sorted(sc.review_ids)
    current = page.locator(".review-item.current")
    expect(current).to_have_attribute("id", f"review-{ids[0]}")
    tab.shot("queue")

    page.keyboard.press("j")
    expect(current).to_have_attribute("id", f"review-{ids[1]}")
    page.keyboard.press("j")
    expect(current).to_have_attribute("id", f"review-{ids[2]}")
    page.keyboard.press("j")  # stays on the last
    expect(current).to_have_attribute("id", f"review-{ids[2]}")
    page.keyboard.press("k")
    expect(current).to_have_attribute("id", f"review-{ids[1]}")
    tab.shot("moved-with-j-k")

    # "1" takes the first candidate deal of the selected item
    first_choice = current.locator('button[data-key="1"]')
    chosen = int(str(first_choice.get_attribute("value")))
    page.keyboard.press("1")
    expect(page.locator(f"#review-{ids[1]}")).to_have_count(0)
    expect(items).to_have_count(len(ids) - 1)
    expect(page.locator("h1 small")).to_have_text(f"{len(ids) - 1} waiting")
    expect(page.locator("#flash")).to_contain_text("Saved")
    tab.shot("after-1")
    decided = get_json(tab, f"/activity/{ids[1]}.json")
    assert decided["status"] in ("confirmed", "corrected")
    assert [ln["id"] for ln in decided["links"] if ln["type"] == "deal"] == [chosen]

    # the selection keeps its place: on the item that followed the decided one. "n" says "no deal"
    expect(current).to_have_attribute("id", f"review-{ids[2]}")
    page.keyboard.press("n")
    expect(page.locator(f"#review-{ids[2]}")).to_have_count(0)
    expect(items).to_have_count(len(ids) - 2)
    tab.shot("after-n")
    nodeal = get_json(tab, f"/activity/{ids[2]}.json")
    assert nodeal["status"] != "needs_review"
    assert not [ln for ln in nodeal["links"] if ln["type"] == "deal"]

    # "x": not business; the queue is then empty
    expect(current).to_have_attribute("id", f"review-{ids[0]}")
    page.keyboard.press("x")
    expect(page.locator(".review-item")).to_have_count(0)
    expect(page.locator("ol.review li.empty")).to_be_visible()
    tab.shot("empty")
    assert get_json(tab, f"/activity/{ids[0]}.json")["status"] == "ignored"
    tab.go("/")
    expect(page.locator("#review-count")).to_have_text("nothing to review")


# -- what an attacker tries -------------------------------------------------------------------------------


def _no_injected_markup(page: Page) -> None:
    assert page.locator("img[onerror]").count() == 0
    assert page.locator("img[src=x]").count() == 0
    inline = page.evaluate("Array.from(document.scripts).filter(s => !s.src).map(s => s.textContent)")
    assert inline == [], inline


def test_hostile_subject_is_shown_as_text_everywhere(tab: Tab, server: Server) -> None:
    sc = server.scenario
    page = tab.page
    act = get_json(tab, f"/activity/{sc.hostile_id}.json")
    lumen = next(ln for ln in act["links"] if ln["type"] == "company")

    for label, path in (
        ("today", "/"),
        ("company", f"/company/{lumen['id']}"),
        ("activity", f"/activity/{sc.hostile_id}"),
    ):
        tab.go(path)
        expect(page.locator("main")).to_contain_text(HOSTILE_SUBJECT)
        _no_injected_markup(page)
        tab.shot(label)
    assert page.title() == f"inkless — {HOSTILE_SUBJECT}"
    expect(page.locator("h1.subject")).to_contain_text(HOSTILE_SUBJECT)

    # markup typed into the search box comes back as text too
    query = '<img src=x onerror=alert(3)>"><script>alert(4)</script>'
    box = page.locator("header .search input")
    box.fill(query)
    box.press("Enter")
    expect(page.locator("p.empty")).to_contain_text(query)
    expect(page.locator("form.bigsearch input")).to_have_value(query)
    _no_injected_markup(page)
    tab.shot("search")
    page.wait_for_timeout(300)  # give any injected handler the chance to fire
    assert tab.dialogs == []


def test_a_post_without_the_csrf_token_is_refused_and_changes_nothing(tab: Tab, server: Server) -> None:
    sc = server.scenario
    page = tab.page
    target = sc.thread_ids[0]
    tab.expected.append("403")  # provoked below
    tab.go(f"/activity/{target}")
    tab.shot("activity")
    form: dict[str, str | float | bool] = {"target_type": "deal", "target_id": str(sc.deal_b), "scope": "thread"}
    url = f"{server.base}/activity/{target}/reassign"

    # through the browser's session (its cookie), without a token, with a wrong one
    no_token = page.request.post(url, form=form, max_redirects=0)
    assert no_token.status == 403, no_token.status
    assert "CSRF" in no_token.text()
    wrong = page.request.post(url, form={**form, "csrf": "not-the-token"}, max_redirects=0)
    assert wrong.status == 403
    # a script on the page that forgets the header: fetch() carries the cookie but no token
    status = page.evaluate(
        """async ([url, form]) => {
            const r = await fetch(url, {method: "POST", body: new URLSearchParams(form), redirect: "manual"});
            return r.status;
        }""",
        [url, form],
    )
    assert status == 403
    for path in (f"/activity/{target}/ignore", "/corrections/1/undo", f"/review/{sc.review_ids[0]}", "/logout"):
        assert page.request.post(server.base + path, form={"scope": "item"}, max_redirects=0).status == 403, path
    assert get_json(tab, f"/activity/{target}.json")["status"] == "auto"
    deal_ids = {ln["id"] for ln in get_json(tab, f"/activity/{target}.json")["links"] if ln["type"] == "deal"}
    assert deal_ids == {sc.deal_a}

    # the same request with the page's token goes through (so the 403 was the token, nothing else)
    token = page.locator("body").get_attribute("data-csrf")
    assert token
    ok = page.request.post(url, form={**form, "csrf": token}, max_redirects=0)
    assert ok.status == 303, ok.status
    deal_ids = {ln["id"] for ln in get_json(tab, f"/activity/{target}.json")["links"] if ln["type"] == "deal"}
    assert deal_ids == {sc.deal_b}
    tab.go(f"/deal/{sc.deal_b}")
    expect(page.locator("#flash")).to_contain_text("Moved")
    tab.shot("deal-b-with-token")


def test_artifacts_are_kept_outside_git() -> None:
    import subprocess

    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    if not ARTIFACTS.resolve().is_relative_to(ROOT):
        return  # INKLESS_ARTIFACTS points outside the repository
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    probe = ARTIFACTS / "probe.png"
    probe.write_bytes(b"")
    try:
        out = subprocess.run(["git", "check-ignore", "-q", str(probe)], cwd=ROOT, capture_output=True)
        assert out.returncode == 0, f"{ARTIFACTS} should be git-ignored (.gitignore: test-artifacts/)"
    finally:
        probe.unlink()
