"""The review queue: items the matcher would not guess on, with their ranked deal candidates, and the
decision a person takes on each (recorded as a confirmation or a correction, never overwritten)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from providers.errors import BadInput, NotFound
from store.export import iso
from store.models import Activity, Attribution, Company, Correction, Deal, Participant
from store.queries import refresh_rollups

from .corrections import record_review, snapshot


def queue(s: Session, limit: int = 50) -> list[dict[str, Any]]:
    """Items needing a decision, newest first, each with its candidates (best first)."""
    acts = s.execute(
        select(Activity).where(Activity.status == "needs_review").order_by(Activity.occurred_at.desc()).limit(limit)
    ).scalars()
    out = []
    for a in acts:
        people = [
            name or email
            for email, name in s.execute(
                select(Participant.email, Participant.name).where(
                    Participant.activity_id == a.id, Participant.is_internal.is_(False)
                )
            )
        ]
        company_ids = [
            t
            for (t,) in s.execute(
                select(Attribution.target_id).where(
                    Attribution.activity_id == a.id, Attribution.target_type == "company"
                )
            )
        ]
        companies = [c.name for c in s.execute(select(Company).where(Company.id.in_(company_ids))).scalars()]
        cands = []
        for deal_id, p in a.candidates or []:
            d = s.get(Deal, deal_id)
            if d is not None:
                cands.append({"deal_id": d.id, "crm_id": d.crm_id, "name": d.name, "probability": p})
        out.append(
            {
                "id": a.id,
                "kind": a.kind,
                "when": iso(a.occurred_at),
                "subject": a.subject,
                "people": people,
                "companies": companies,
                "candidates": cands,
                "evidence": list(a.evidence or []),
            }
        )
    return out


def decide(s: Session, activity_id: int, deal_id: int | None, actor: str, now: datetime) -> str:
    """Record a person's decision on an item: a deal (or explicitly none). Returns the new status.

    Choosing the matcher's own top candidate is a confirmation; anything else is a correction. The
    people and company links are confirmed with it, so no later re-attribution overwrites them."""
    act = s.get(Activity, activity_id)
    if act is None:
        raise NotFound(f"no activity {activity_id}")
    top = (act.candidates or [[None]])[0][0]
    if deal_id is not None and s.get(Deal, deal_id) is None:
        raise BadInput(f"no deal {deal_id}")
    old = s.execute(
        select(Attribution.target_id).where(Attribution.activity_id == activity_id, Attribution.target_type == "deal")
    ).scalar_one_or_none()
    status = "confirmed" if deal_id == top or (deal_id is None and top is None) else "corrected"
    before = snapshot(s, [activity_id])
    touched: dict[str, set[int]] = {"deal": {d for d in (old, deal_id) if d is not None}}
    s.execute(delete(Attribution).where(Attribution.activity_id == activity_id, Attribution.target_type == "deal"))
    for link in s.execute(select(Attribution).where(Attribution.activity_id == activity_id)).scalars():
        link.status = status
        touched.setdefault(link.target_type, set()).add(link.target_id)
    if deal_id is not None:
        d = s.get(Deal, deal_id)
        assert d is not None
        s.add(
            Attribution(
                activity_id=activity_id,
                target_type="deal",
                target_id=deal_id,
                confidence=1.0,
                evidence=[f"chosen by {actor} in review"],
                status=status,
            )
        )
        act.evidence = [*(act.evidence or []), f"deal '{d.name}' chosen by {actor} in review"]
    else:
        act.evidence = [*(act.evidence or []), f"{actor} decided in review that no deal applies"]
    act.status, act.confidence, act.updated_at = status, 1.0, now
    corr = Correction(
        activity_id=activity_id,
        target_type="deal",
        old_target_id=old if old is not None else top,
        new_target_id=deal_id,
        scope="item",
        rule=None,
        actor=actor,
        created_at=now,
    )
    s.add(corr)
    record_review(s, activity_id, before, corr, actor, now)
    s.flush()
    refresh_rollups(s, touched, now)
    return status
