"""A realistic, deterministic scenario for the web page's tests, built through the real pipeline.

The bundled demo (CRM CSV import, the demo mbox and calendar) plus a Maildir synced by the sync
engine with:

- a four-message thread (Message-ID / In-Reply-To / References chained) from Halvorsen Marine's Fleet
  IT manager that says "fleet telemetry rollout" in its subject, so the matcher files it on the
  *Fleet Telemetry Rollout* deal (deal A), although it is about crew tablets for the *Crew Portal
  Pilot* (deal B): what a rep corrects with one click;
- a mail from a Lumen Orchard contact whose subject is hostile markup;
- Halvorsen mail that names neither deal (the demo's "Invoice address update" and two more), so the
  matcher asks: three items wait in the review queue, enough to move through it with j/k.

``build_scenario(sessions, tmp_path)`` returns a :class:`Scenario` with every id a test needs.
Everything is pinned to :data:`NOW`, so two runs give the same rows.
"""

from __future__ import annotations

import mailbox
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from agent.crm import import_and_reattribute
from agent.sync import SyncEngine
from store.models import Activity, ActivityKey, Attribution, Company, Deal, Source
from store.queries import set_setting

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "agent" / "demo_data"
#: the demo sample's own "now" (agent/demo_data/meta.json); INKLESS_NOW for subprocesses
NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)
NOW_ENV = {"INKLESS_NOW": "2026-11-20T12:00:00Z"}
OWNER = "ana@northwind.io"

COMPANY = "Halvorsen Marine AS"
DEAL_A = "d1"  # Halvorsen Marine – Fleet Telemetry Rollout: where the matcher puts the thread
DEAL_B = "d2"  # Halvorsen Marine – Crew Portal Pilot: where it belongs
THREAD_SUBJECT = "Fleet telemetry rollout: tablets on the bridge"
HOSTILE_SUBJECT = '<script>alert(1)</script> "><img src=x onerror=alert(2)>'
REVIEW_SUBJECT = "Invoice address update"

ANA = ("Ana Ruiz", "ana@northwind.io")
MATS = ("Mats Eriksen", "mats.eriksen@halvorsen-marine.com")
ROSA = ("Rosa Delgado", "rosa.delgado@lumenorchard.es")
# not in the CRM: known by their company's domains
LARS = ("Lars Berg", "lars.berg@halvorsenmarine.no")
KARI = ("Kari Lunde", "kari.lunde@halvorsen-marine.com")

# (message-id local part, sender, recipient, day in November 2026, hour, body)
THREAD = [
    (
        "tablets-1",
        MATS,
        ANA,
        16,
        9,
        "Hi Ana,\n\nWhile we plan the fleet telemetry rollout: the captains want the crew rosters and\n"
        "shift swaps on tablets on the bridge. Can we order the rugged tablets through you, and which\n"
        "models work with the app?\n\nRegards,\nMats Eriksen\nFleet IT Manager, Halvorsen Marine\n",
    ),
    (
        "tablets-2",
        ANA,
        MATS,
        16,
        14,
        "Hi Mats,\n\nYes: any Android 13 tablet works; I'll send the list of tested rugged models and a\n"
        "quote for twelve units.\n\nBest,\nAna\n",
    ),
    (
        "tablets-3",
        MATS,
        ANA,
        17,
        10,
        "Thanks Ana. Twelve is right for the first ships. Sigrid asks whether the roster works offline\n"
        "when a vessel is out of coverage.\n\nMats\n",
    ),
    (
        "tablets-4",
        ANA,
        MATS,
        18,
        16,
        "Hi Mats,\n\nIt does: rosters sync when the ship is back in port. Quote attached.\n\nBest,\nAna\n",
    ),
]
HOSTILE = (
    "hostile-1",
    ROSA,
    ANA,
    13,
    11,
    "Hi Ana,\n\nOur web team pasted this into the subject by mistake. Sorry!\n\nRosa\n",
)

# Halvorsen mail that names neither deal: the matcher asks (review queue), like the demo's invoice mail
UNSURE = [
    (
        "visit-1",
        LARS,
        ANA,
        12,
        8,
        "Visiting Bergen in December",
        "Hi Ana,\n\nI heard you will be in Bergen in the week of 7 December. Would you have an hour\n"
        "for our office? Coffee is on us.\n\nLars Berg\nHalvorsen Marine\n",
    ),
    (
        "po-1",
        KARI,
        ANA,
        10,
        15,
        "New contact for purchase orders",
        "Hi Ana,\n\nFrom next month I handle all purchase orders for Halvorsen Marine; please copy me.\n\n"
        "Kari Lunde\nFinance\n",
    ),
]


@dataclass
class Scenario:
    company_id: int
    deal_a: int
    deal_b: int
    deal_a_name: str
    deal_b_name: str
    thread_ids: list[int]  # oldest first
    hostile_id: int
    review_ids: list[int]
    maildir: Path


def _mid(local: str, sender: tuple[str, str]) -> str:
    return f"<{local}@{sender[1].split('@')[1]}>"


def _message(local: str, sender: tuple[str, str], to: tuple[str, str], day: int, hour: int, body: str,
             subject: str, parents: list[str]) -> EmailMessage:  # fmt: skip
    m = EmailMessage()
    m["From"] = f"{sender[0]} <{sender[1]}>"
    m["To"] = f"{to[0]} <{to[1]}>"
    m["Subject"] = subject
    m["Date"] = format_datetime(datetime(2026, 11, day, hour, 0, tzinfo=UTC))
    m["Message-ID"] = _mid(local, sender)
    if parents:
        m["In-Reply-To"] = parents[-1]
        m["References"] = " ".join(parents)
    m.set_content(body)
    return m


def write_maildir(root: Path) -> Path:
    """The scenario's extra mail as a Maildir (inbound in the root, sent mail in .Sent)."""
    if root.exists():
        shutil.rmtree(root)
    md = mailbox.Maildir(root, create=True)
    sent = md.add_folder("Sent")
    parents: list[str] = []
    for i, (local, sender, to, day, hour, body) in enumerate(THREAD):
        subject = THREAD_SUBJECT if i == 0 else f"Re: {THREAD_SUBJECT}"
        msg = _message(local, sender, to, day, hour, body, subject, parents)
        (sent if sender == ANA else md).add(mailbox.MaildirMessage(msg))
        parents.append(msg["Message-ID"])
    local, sender, to, day, hour, body = HOSTILE
    md.add(mailbox.MaildirMessage(_message(local, sender, to, day, hour, body, HOSTILE_SUBJECT, [])))
    for local, sender, to, day, hour, subject, body in UNSURE:
        md.add(mailbox.MaildirMessage(_message(local, sender, to, day, hour, body, subject, [])))
    return root


def _add_source(sessions: sessionmaker[Session], kind: str, location: Path) -> None:
    with sessions.begin() as s:
        s.add(Source(kind=kind, location=str(location), owner=OWNER, settings={}, created_at=NOW))


def build_scenario(sessions: sessionmaker[Session], workdir: Path) -> Scenario:
    """Load the scenario into an empty (migrated) database through the real pipeline."""
    workdir.mkdir(parents=True, exist_ok=True)
    with sessions.begin() as s:
        set_setting(s, "internal_domains", ["northwind.io", "northwindlabs.com"])
    crm = DEMO / "crm"
    import_and_reattribute(sessions, NOW, crm / "companies.csv", crm / "contacts.csv", crm / "deals.csv")
    for name, kind in (("mail.mbox", "mbox"), ("calendar.ics", "ics")):
        shutil.copy(DEMO / name, workdir / name)
        _add_source(sessions, kind, workdir / name)
    maildir = write_maildir(workdir / "Maildir")
    _add_source(sessions, "maildir", maildir)
    reports = SyncEngine(sessions, NOW, workers=1).run()
    errors = [r.error for r in reports if r.error]
    assert not errors, errors
    return describe(sessions, maildir)


def _by_mid(s: Session, local: str, sender: tuple[str, str]) -> int:
    return s.execute(
        select(ActivityKey.activity_id).where(ActivityKey.key == f"mid:{_mid(local, sender)}")
    ).scalar_one()


def deal_of(s: Session, activity_id: int) -> int | None:
    return s.execute(
        select(Attribution.target_id).where(Attribution.activity_id == activity_id, Attribution.target_type == "deal")
    ).scalar_one_or_none()


def describe(sessions: sessionmaker[Session], maildir: Path) -> Scenario:
    """The ids of the scenario's records, checking that the pipeline set it up as the tests expect."""
    with sessions() as s:
        company = s.execute(select(Company).where(Company.name == COMPANY)).scalar_one()
        deal_a = s.execute(select(Deal).where(Deal.crm_id == DEAL_A)).scalar_one()
        deal_b = s.execute(select(Deal).where(Deal.crm_id == DEAL_B)).scalar_one()
        assert deal_a.company_id == deal_b.company_id == company.id
        assert deal_a.status == deal_b.status == "open"
        thread = [_by_mid(s, local, sender) for local, sender, *_ in THREAD]
        wrong = {aid: deal_of(s, aid) for aid in thread}
        assert all(d == deal_a.id for d in wrong.values()), f"the matcher should file the thread on deal A: {wrong}"
        keys = set(s.execute(select(Activity.thread_key).where(Activity.id.in_(thread))).scalars())
        assert len(keys) == 1, f"the thread should be one thread: {keys}"
        hostile = _by_mid(s, HOSTILE[0], HOSTILE[1])
        assert s.execute(select(Activity.subject).where(Activity.id == hostile)).scalar_one() == HOSTILE_SUBJECT
        review = list(
            s.execute(select(Activity.id).where(Activity.status == "needs_review").order_by(Activity.id)).scalars()
        )
        unsure = [_by_mid(s, local, sender) for local, sender, *_ in UNSURE]
        assert set(unsure) <= set(review) and len(review) >= 3, (unsure, review)
        return Scenario(
            company_id=company.id,
            deal_a=deal_a.id,
            deal_b=deal_b.id,
            deal_a_name=deal_a.name,
            deal_b_name=deal_b.name,
            thread_ids=thread,
            hostile_id=hostile,
            review_ids=review,
            maildir=maildir,
        )


if __name__ == "__main__":  # a quick look: python -m tests.web_scenario [sqlite:///x.db]
    import sys
    import tempfile

    from store.db import open_db

    tmp = Path(tempfile.mkdtemp(prefix="inkless-scenario-"))
    url = sys.argv[1] if len(sys.argv) > 1 else f"sqlite:///{tmp / 'inkless.db'}"
    engine, maker = open_db(url)
    print(build_scenario(maker, tmp))
    engine.dispose()
