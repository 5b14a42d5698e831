"""``inkless demo``: the bundled sample through the whole pipeline, then a timeline and stale deals."""

from __future__ import annotations

import json
import os
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from store.models import Company, Deal, Source
from store.queries import internal_domains, set_setting

from . import clock
from .crm import import_and_reattribute
from .sync import SyncEngine
from .views import render_timeline, timeline_view

DEMO = Path(__file__).with_name("demo_data")


def run_demo(sessions: sessionmaker[Session], console: Console, db_hint: str = "") -> None:
    meta = json.loads((DEMO / "meta.json").read_text())
    # the sample was written as of meta["now"]; pin the clock there so the demo never goes stale
    os.environ.setdefault("INKLESS_NOW", meta["now"])
    now = clock.now()
    with sessions.begin() as s:
        set_setting(s, "internal_domains", sorted(set(internal_domains(s)) | set(meta["internal_domains"])))
        for kind, loc in (("mbox", DEMO / "mail.mbox"), ("ics", DEMO / "calendar.ics")):
            exists = s.execute(
                select(Source.id).where(Source.kind == kind, Source.location == str(loc), Source.owner == meta["owner"])
            ).first()
            if not exists:
                s.add(Source(kind=kind, location=str(loc), owner=meta["owner"], settings={}, created_at=now))
    crm = DEMO / "crm"
    rep = import_and_reattribute(sessions, now, crm / "companies.csv", crm / "contacts.csv", crm / "deals.csv").imported
    console.print(
        f"[bold]CRM[/bold]: {rep.companies_added + rep.companies_updated} companies, "
        f"{rep.contacts_added + rep.contacts_updated} contacts, {rep.deals_added + rep.deals_updated} deals"
    )
    for r in SyncEngine(sessions, now, workers=1).run():
        st = r.stats
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(st.reasons.items()))
        console.print(
            f"[bold]{r.label.split()[0]}[/bold]: {st.seen} items → {st.logged} logged, {st.merged} merged, "
            f"{st.skipped} skipped ({reasons})" + (f" [red]{escape(r.error)}[/red]" if r.error else "")
        )
    with sessions() as s:
        busiest = s.execute(select(Company).order_by(Company.activity_count.desc(), Company.name).limit(1)).scalar_one()
        console.print()
        render_timeline(console, timeline_view(s, "company", busiest, now, limit=12))
        console.print()
        console.print("[bold]Open deals going cold[/bold] (longest since last contact first)")
        deals = s.execute(select(Deal).where(Deal.status == "open")).scalars().all()
        deals.sort(key=lambda d: (d.last_contact_at is not None, d.last_contact_at or now))
        for d in deals[:5]:
            last = d.last_contact_at.strftime("%Y-%m-%d") if d.last_contact_at else "never"
            nxt = d.next_meeting_at.strftime("%Y-%m-%d") if d.next_meeting_at else "none booked"
            days = f"{(now - d.last_contact_at).days} days" if d.last_contact_at else "no contact yet"
            console.print(f"  {escape(d.name):<50} last contact {last} ({days}), next meeting {nxt}")
    console.print()
    prefix = f"INKLESS_NOW={meta['now']} inkless{db_hint}"
    console.print("Explore the sample further:", markup=False)
    for cmd in (
        'timeline company "Halvorsen"',
        "skipped",
        "explain 1",
        "review",
        "stale",
        "serve        # the web page on http://127.0.0.1:8765/",
        "export activities --out acts.jsonl",
    ):
        console.print(f"  {prefix} {cmd}", markup=False)
