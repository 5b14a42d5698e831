"""CRM changes reach mail already logged: a new deal, a deal closed, a new contact re-attribute what they
concern; confirmed and corrected links stay as a person left them. SQLite and PostgreSQL, real pipeline."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from agent.corrections import reassign
from agent.crm import import_and_reattribute
from agent.sync import SyncEngine
from store.export import activity_rows
from store.models import Activity, Deal
from store.queries import set_setting
from tests.test_pipeline import add_source

NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)
LATER = NOW + timedelta(hours=1)
DEALS_HEAD = "id,name,company_id,stage,status,amount,created_at,close_date,owner_email,contact_ids\n"
TELEMETRY = "Okonkwo Freight – Fleet Telemetry"
ROBOTICS = "Okonkwo Freight – Warehouse Robotics"

# (date, subject, body): all between the rep and Ifeoma at Okonkwo Freight
MAIL = [
    ("2026-03-10", "Fleet telemetry pricing", "Ifeoma, the telemetry quote for the trucks is attached."),
    ("2026-06-15", "Warehouse robotics pilot", "Could the robotics pilot start in the Lagos warehouse in July?"),
    ("2026-08-20", "Quick question", "Are you free on Thursday afternoon for a call?"),
    ("2026-09-02", "Lunch?", "Shall we meet for lunch next week?"),
]


def _mbox(path: Path) -> None:
    parts = []
    for n, (day, subject, body) in enumerate(MAIL, start=1):
        d = datetime.fromisoformat(day).replace(hour=9, tzinfo=UTC)
        parts.append(
            f"From x {d:%a %b %d %H:%M:%S %Y}\n"
            "From: Ifeoma Okonkwo <ifeoma@okonkwo-freight.com>\n"
            "To: Ana Ruiz <ana@northwind.io>\n"
            f"Subject: {subject}\n"
            f"Date: {d:%a, %d %b %Y %H:%M:%S +0000}\n"
            f"Message-ID: <retro-{n}@okonkwo-freight.com>\n"
            "Content-Type: text/plain; charset=utf-8\n\n"
            f"{body}\n\nBest,\nIfeoma Okonkwo\n\n"
        )
    path.write_text("".join(parts))


def _csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture
def world(sessions, tmp_path: Path):
    with sessions.begin() as s:
        set_setting(s, "internal_domains", ["northwind.io"])
    companies = _csv(tmp_path / "companies.csv", "id,name,domains\nco1,Okonkwo Freight,okonkwo-freight.com\n")
    contacts = _csv(
        tmp_path / "contacts.csv",
        "id,first_name,last_name,email,other_emails,company_id,title,phone\n"
        "c1,Ifeoma,Okonkwo,ifeoma@okonkwo-freight.com,,co1,COO,\n",
    )
    deals = _csv(
        tmp_path / "deals.csv",
        DEALS_HEAD + f"d1,{TELEMETRY},co1,Proposal,open,40000,2026-01-05T09:00:00Z,2026-12-15,ana@northwind.io,c1\n",
    )
    import_and_reattribute(sessions, NOW, companies, contacts, deals)
    _mbox(tmp_path / "mail.mbox")
    add_source(sessions, "mbox", tmp_path / "mail.mbox")
    SyncEngine(sessions, NOW, workers=1).run()
    return sessions


def _deals(sessions) -> dict[str, str | None]:
    with sessions() as s:
        return {r["subject"]: (r["deal"]["name"] if r["deal"] else None) for r in activity_rows(s)}


def _deal(sessions, name: str) -> Deal:
    with sessions() as s:
        d = s.execute(select(Deal).where(Deal.name == name)).scalar_one()
        s.expunge(d)
        return d


def test_a_new_deal_takes_the_mail_about_it_and_a_closed_deal_lets_go_of_later_mail(world, tmp_path: Path) -> None:
    sessions = world
    # one open deal: the only candidate takes every item
    assert set(_deals(sessions).values()) == {TELEMETRY}
    assert _deal(sessions, TELEMETRY).activity_count == 4

    # the CRM gains a second deal: the mail that names it moves there; the rest now has two candidates
    new = _csv(
        tmp_path / "deals2.csv",
        DEALS_HEAD + f"d2,{ROBOTICS},co1,Discovery,open,25000,2026-05-20T09:00:00Z,2027-02-01,ana@northwind.io,c1\n",
    )
    report = import_and_reattribute(sessions, LATER, deals=new)
    assert report.reattributed >= 4
    got = _deals(sessions)
    assert got["Fleet telemetry pricing"] == TELEMETRY  # before the new deal existed
    assert got["Warehouse robotics pilot"] == ROBOTICS
    assert got["Quick question"] is None and got["Lunch?"] is None  # nothing tells the two apart: asked
    with sessions() as s:
        review = s.execute(select(Activity.status).where(Activity.subject == "Quick question")).scalar_one()
        assert review == "needs_review"
    robotics = _deal(sessions, ROBOTICS)
    assert robotics.activity_count == 1 and robotics.last_contact_at is not None
    assert robotics.last_contact_at.date().isoformat() == "2026-06-15"
    assert _deal(sessions, TELEMETRY).activity_count == 1

    # the first deal is won in July: mail after that can only be about the robotics deal
    won = _csv(
        tmp_path / "deals3.csv",
        DEALS_HEAD + f"d1,{TELEMETRY},co1,Closed Won,won,40000,2026-01-05T09:00:00Z,2026-07-01,ana@northwind.io,c1\n",
    )
    import_and_reattribute(sessions, LATER, deals=won)
    got = _deals(sessions)
    assert got["Fleet telemetry pricing"] == TELEMETRY  # mail before the close still belongs to it
    assert got["Quick question"] == ROBOTICS and got["Lunch?"] == ROBOTICS
    assert _deal(sessions, ROBOTICS).activity_count == 3
    assert _deal(sessions, ROBOTICS).last_contact_at.date().isoformat() == "2026-09-02"


def test_a_persons_choice_survives_every_crm_change(world, tmp_path: Path) -> None:
    sessions = world
    with sessions() as s:
        lunch = s.execute(select(Activity.id).where(Activity.subject == "Lunch?")).scalar_one()
    with sessions.begin() as s:  # a rep files the lunch under the telemetry deal on purpose
        reassign(s, lunch, "deal", _deal(sessions, TELEMETRY).id, "item", "ana", LATER)
    new = _csv(
        tmp_path / "deals2.csv",
        DEALS_HEAD
        + f"d1,{TELEMETRY},co1,Closed Won,won,40000,2026-01-05T09:00:00Z,2026-07-01,ana@northwind.io,c1\n"
        + f"d2,{ROBOTICS},co1,Discovery,open,25000,2026-05-20T09:00:00Z,2027-02-01,ana@northwind.io,c1\n",
    )
    import_and_reattribute(sessions, LATER, deals=new)
    got = _deals(sessions)
    assert got["Lunch?"] == TELEMETRY  # corrected: never overwritten, even though the deal closed before it
    assert got["Quick question"] == ROBOTICS  # the others follow the CRM
    with sessions() as s:
        status = s.execute(select(Activity.status).where(Activity.id == lunch)).scalar_one()
        assert status == "corrected"
