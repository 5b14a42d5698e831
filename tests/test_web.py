"""The web page through an in-process client: every page and its JSON, corrections, CSRF, sign-in,
escaping. On SQLite and PostgreSQL (the browser tests in test_web_browser.py drive Chromium)."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from agent.sync import SyncEngine
from agent.web.app import create_app
from agent.web.auth import add_user, disable_user
from store.models import Activity, Company, Contact, Deal
from tests.test_pipeline import DEMO_NOW, setup_demo

HOSTILE = """<script>alert(1)</script> "><img src=x onerror=alert(2)>"""


@pytest.fixture
def demo(sessions, tmp_path: Path):
    setup_demo(sessions, tmp_path)
    with open(tmp_path / "mail.mbox", "ab") as fh:
        fh.write(
            (
                "From x Fri Nov 20 09:00:00 2026\nFrom: Rosa Delgado <rosa.delgado@lumenorchard.es>\n"
                "To: Ana Ruiz <ana@northwind.io>\nSubject: " + HOSTILE + "\n"
                "Date: Thu, 19 Nov 2026 09:00:00 +0000\nMessage-ID: <hostile@lumenorchard.es>\n\n"
                "<b>bold?</b> <script>alert(3)</script> cold chain sensors\n\n"
            ).encode()
        )
    SyncEngine(sessions, DEMO_NOW, workers=1).run()
    return sessions


def client(sessions, host: str = "127.0.0.1") -> TestClient:
    app = create_app(sessions, host=host, secret_key="k" * 32, now=lambda: DEMO_NOW)
    return TestClient(app, base_url=f"http://{host if host != '0.0.0.0' else 'example.test'}")


def csrf(c: TestClient, path: str = "/") -> str:
    m = re.search(r'data-csrf="([^"]+)"', c.get(path).text)
    assert m, "every page carries the CSRF token"
    return m.group(1)


def ids(sessions) -> dict[str, int]:
    with sessions() as s:
        return {
            "company": s.execute(select(Company.id).where(Company.name == "Halvorsen Marine AS")).scalar_one(),
            "contact": s.execute(select(Contact.id).where(Contact.email == "ingrid@halvorsenmarine.no")).scalar_one(),
            "deal": s.execute(select(Deal.id).where(Deal.name.like("%Fleet Telemetry%"))).scalar_one(),
            "crew": s.execute(select(Deal.id).where(Deal.name.like("%Crew Portal%"))).scalar_one(),
            "thread_item": s.execute(
                select(Activity.id).where(Activity.subject == "Fleet telemetry rollout - next steps")
            ).scalar_one(),
            "hostile": s.execute(select(Activity.id).where(Activity.subject.like("<script>%"))).scalar_one(),
        }


def test_every_page_answers_html_and_the_same_view_as_json(demo) -> None:
    c = client(demo)
    i = ids(demo)
    pages = [
        ("/", "/today.json"),
        ("/search?q=halvorsen", "/search.json?q=halvorsen"),
        (f"/company/{i['company']}", f"/company/{i['company']}.json"),
        (f"/contact/{i['contact']}", f"/contact/{i['contact']}.json"),
        (f"/deal/{i['deal']}", f"/deal/{i['deal']}.json"),
        (f"/activity/{i['thread_item']}", f"/activity/{i['thread_item']}.json"),
        ("/review", "/review.json"),
        ("/rules", "/rules.json"),
        ("/audit", "/audit.json"),
    ]
    for html, js in pages:
        r = c.get(html)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html"), html
        assert "default-src 'self'" in r.headers["content-security-policy"]
        j = c.get(js)
        assert j.status_code == 200 and j.headers["content-type"] == "application/json", js
        # Accept: application/json on the HTML address gives the same view
        assert c.get(html, headers={"accept": "application/json"}).json() == j.json(), html
    assert c.get("/static/htmx.min.js").status_code == 200  # served from the package, no CDN
    assert c.get("/company/999999").status_code == 404
    assert c.get("/company/999999.json").json() == {"error": "no company 999999"}


def test_today_lists_meetings_ahead_cold_deals_review_count_and_recent(demo) -> None:
    today = client(demo).get("/today.json").json()
    assert today["review_count"] == 1
    assert all(m["kind"] == "meeting" and m["upcoming"] for m in today["upcoming_meetings"])
    assert all(
        m["when"] <= (DEMO_NOW + timedelta(days=7)).strftime("%Y-%m-%dT%H:%M:%SZ") for m in today["upcoming_meetings"]
    )
    assert today["upcoming_meetings"] and any(m["deal"] for m in today["upcoming_meetings"])
    assert today["recent"][0]["when"] >= today["recent"][-1]["when"]
    names = {d["name"] for d in today["going_cold"]}
    assert names and all(d["reasons"] for d in today["going_cold"])
    assert "Falkenried Freight – Route Optimiser" not in names  # won deals are not going cold


def test_search_finds_by_name_typo_email_and_domain(demo) -> None:
    c = client(demo)
    assert c.get("/search.json?q=halvorsn").json()["companies"][0]["name"] == "Halvorsen Marine AS"
    assert c.get("/search.json?q=halvorsen-marine.com").json()["companies"][0]["name"] == "Halvorsen Marine AS"
    assert (
        c.get("/search.json?q=ingrid@halvorsenmarine.no").json()["contacts"][0]["email"] == "ingrid@halvorsenmarine.no"
    )
    assert c.get("/search.json?q=crew portal").json()["deals"][0]["name"].endswith("Crew Portal Pilot")


def test_timeline_has_the_head_dates_upcoming_first_and_threads_grouped(demo) -> None:
    i = ids(demo)
    t = client(demo).get(f"/company/{i['company']}.json").json()
    head = t["entity"]
    assert head["last_contact_at"] and head["last_inbound_at"] and head["last_outbound_at"]
    items = t["items"]
    upcoming = [x for x in items if x["upcoming"]]
    assert items[: len(upcoming)] == upcoming
    past = [x["when"] for x in items if not x["upcoming"]]
    assert past == sorted(past, reverse=True)
    thread = next(g for g in t["groups"] if g["items"][0]["subject"].endswith("Fleet telemetry rollout - next steps"))
    assert len(thread["items"]) >= 4 and len({x["thread"] for x in thread["items"]}) == 1


def test_reassign_thread_from_the_page_then_undo(demo) -> None:
    c = client(demo)
    i = ids(demo)
    token = csrf(c, f"/activity/{i['thread_item']}")
    r = c.post(
        f"/activity/{i['thread_item']}/reassign?next=/deal/{i['crew']}",
        data={"csrf": token, "target_type": "deal", "target_id": str(i["crew"]), "scope": "thread"},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == f"/deal/{i['crew']}"
    page = c.get(f"/deal/{i['crew']}").text
    assert "Moved 4 items to deal" in page and 'id="undo-last"' in page
    crew = c.get(f"/deal/{i['crew']}.json").json()
    assert sum("Fleet telemetry" in x["subject"] for x in crew["items"]) == 4
    assert not any("Fleet telemetry" in x["subject"] for x in c.get(f"/deal/{i['deal']}.json").json()["items"])
    rules = c.get("/rules.json").json()
    assert rules["rules"][0]["scope"] == "thread" and rules["rules"][0]["items"] == 4
    audit = c.get("/audit.json").json()["entries"]
    assert audit[0]["action"] == "reassign" and audit[0]["actor"]
    cid = rules["corrections"][0]["id"]
    r = c.post(f"/corrections/{cid}/undo", data={"csrf": token}, follow_redirects=False)
    assert r.status_code == 303
    assert sum("Fleet telemetry" in x["subject"] for x in c.get(f"/deal/{i['deal']}.json").json()["items"]) == 4
    assert c.get("/rules.json").json()["rules"][0]["undone_at"]
    assert c.get("/audit.json").json()["entries"][0]["action"] == "undo"


def test_review_queue_decisions_and_not_business(demo) -> None:
    c = client(demo)
    token = csrf(c, "/review")
    item = c.get("/review.json").json()["items"][0]
    r = c.post(f"/review/{item['id']}", data={"csrf": token, "choice": "none"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/review"
    assert c.get("/review.json").json()["total"] == 0
    hostile = ids(demo)["hostile"]
    r = c.post(f"/activity/{hostile}/ignore", data={"csrf": token, "scope": "item"}, follow_redirects=False)
    assert r.status_code == 303
    assert c.get(f"/activity/{hostile}.json").json()["status"] == "ignored"
    assert c.post(f"/review/{item['id']}", data={"csrf": token, "choice": "bogus"}).status_code == 400


def test_every_state_changing_route_refuses_a_missing_or_wrong_csrf_token(demo) -> None:
    c = client(demo)
    csrf(c)  # a session exists: its token is simply not sent
    i = ids(demo)
    posts = [r for r in c.app.routes if "POST" in getattr(r, "methods", set())]
    assert len(posts) >= 7
    for route in posts:
        path = re.sub(r"\{[^}]+\}", str(i["thread_item"]), route.path)
        for extra in ({}, {"csrf": "forged"}):
            r = c.post(path, data={"target_type": "deal", "target_id": str(i["crew"]), "scope": "thread", **extra})
            assert r.status_code == 403, (path, extra, r.status_code)
    assert c.get("/rules.json").json()["corrections"] == []  # nothing changed


def test_text_from_mail_is_escaped_everywhere(demo) -> None:
    c = client(demo)
    i = ids(demo)
    for path in ("/", f"/activity/{i['hostile']}", "/search?q=lumen", f"/company/{i['company']}"):
        html = c.get(path).text
        assert "<script>alert" not in html and "<img src=x" not in html and "<b>bold" not in html, path
    html = c.get(f"/activity/{i['hostile']}").text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "&lt;img src=x onerror=alert(2)&gt;" in html
    assert "&lt;b&gt;bold?&lt;/b&gt;" in html  # the body excerpt is text, never HTML


def test_beyond_loopback_a_sign_in_is_required(demo) -> None:
    sessions = demo
    c = client(sessions, host="0.0.0.0")
    r = c.get("/", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login")
    assert c.get("/today.json").status_code == 401
    with sessions.begin() as s:
        add_user(s, "ana", "correct horse battery", DEMO_NOW)
    token = csrf(c, "/login")
    bad = c.post("/login", data={"csrf": token, "name": "ana", "password": "wrong password"})
    assert bad.status_code == 401 and "wrong name or password" in bad.text
    ok = c.post("/login", data={"csrf": token, "name": "ana", "password": "correct horse battery", "next": "/rules"},
                follow_redirects=False)  # fmt: skip
    assert ok.status_code == 303 and ok.headers["location"] == "/rules"
    assert c.get("/today.json").status_code == 200
    # guessing is slowed: five failures for a name, then even the right password waits
    other = client(sessions, host="0.0.0.0")
    t2 = csrf(other, "/login")
    for _ in range(5):
        assert other.post("/login", data={"csrf": t2, "name": "ana", "password": "guess guess"}).status_code == 401
    locked = other.post("/login", data={"csrf": t2, "name": "ana", "password": "correct horse battery"})
    assert locked.status_code == 429 and "too many attempts" in locked.text
    # the sign-in gave a new CSRF token; the old one no longer works
    assert c.post("/logout", data={"csrf": token}).status_code == 403
    # a tampered cookie is no session at all
    other = client(sessions, host="0.0.0.0")
    other.cookies.set("inkless_session", c.cookies.get("inkless_session")[:-4] + "AAAA")
    assert other.get("/today.json").status_code == 401
    with sessions.begin() as s:
        disable_user(s, "ana", DEMO_NOW)
    assert c.get("/today.json").status_code == 401
    with sessions() as s:
        from store.models import User

        assert "correct horse" not in s.execute(select(User.secret_hash)).scalar_one()


def test_redirects_stay_on_this_site(demo) -> None:
    c = client(demo)
    i = ids(demo)
    token = csrf(c)
    r = c.post(
        f"/activity/{i['thread_item']}/reassign?next=https://evil.example/x",
        data={"csrf": token, "target_type": "deal", "target_id": str(i["crew"])},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == f"/activity/{i['thread_item']}"
    r = c.post("/corrections/999/undo?next=//evil.example", data={"csrf": token})
    assert r.status_code == 404
