"""Corrections that teach: reassign or ignore an item with a scope, once, and have it stick.

A correction has a scope: this ``item``, the whole ``thread`` (its replies to come too), everything
from this ``sender``, or this ``domain`` (-> this company). Anything wider than one item is stored as a
:class:`~store.models.Rule`, applied at once to the items it covers (roll-ups recomputed) and by the
sync engine to future mail (:class:`RuleBook`). Items a correction decides are ``corrected``: no resync
or re-attribution overwrites them. Two rules also teach identities through the CRM index
(``load_index``), so the matcher gets new addresses and deal candidates right: "this domain is this
company" (its items are pinned as well: the CRM's own contacts there would say otherwise) and "this
address is this contact" (its other items are re-attributed with the lesson, not pinned).

Every correction keeps, per affected activity, what it replaced (``before``), so :func:`undo` restores
exactly that, retires the rule and hands the items the rule decided since back to the matcher. The
audit log records who did what; it never holds mail content.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, or_, select, update
from sqlalchemy.orm import Session

from matching.identity import clean_email, domain_of, email_key, registered_domain
from matching.index import Team
from providers.errors import BadInput, NotFound
from store.models import (
    Activity,
    Attribution,
    AuditEntry,
    Company,
    Contact,
    Correction,
    Deal,
    Participant,
    Rule,
)
from store.queries import entities_of, internal_domains, load_index, refresh_rollups, source_owners

SCOPES = ("item", "thread", "sender", "domain")
TARGETS = ("contact", "company", "deal")
_CHUNK = 500

SCOPE_WORDS = {
    "item": "this item",
    "thread": "the whole thread",
    "sender": "everything from {address}",
    "domain": "everything from {domain}",
}


def audit(s: Session, actor: str, action: str, detail: dict[str, Any], now: datetime) -> None:
    s.add(AuditEntry(at=now, actor=actor, action=action, detail=detail))


def team_of(s: Session) -> Team:
    return Team(internal_domains(s), source_owners(s))


# ------------------------------------------------------------------------------------ what is covered
def principal_address(s: Session, act: Activity) -> str | None:
    """The outside person an item is "from": the sender of inbound mail, else the first outside
    recipient (outbound mail) or the organizer/first outside attendee (meetings)."""
    rows = s.execute(
        select(Participant.email, Participant.role)
        .where(Participant.activity_id == act.id, Participant.is_internal.is_(False))
        .order_by(Participant.id)
    ).all()
    for wanted in ("from", "organizer"):
        for email, role in rows:
            if role == wanted:
                return str(email)
    return str(rows[0][0]) if rows else None


def outside_addresses(s: Session, act: Activity) -> list[str]:
    seen: list[str] = []
    for (email,) in s.execute(
        select(Participant.email)
        .where(Participant.activity_id == act.id, Participant.is_internal.is_(False))
        .order_by(Participant.id)
    ):
        if email not in seen:
            seen.append(email)
    return seen


def series_key(act: Activity) -> str | None:
    """What "the thread" is: the mail thread, or a meeting's whole series."""
    if act.kind == "meeting":
        return f"ics:{act.ical_uid}" if act.ical_uid else None
    return act.thread_key


def rule_domain(address_or_domain: str) -> str:
    d = domain_of(address_or_domain) if "@" in address_or_domain else address_or_domain.lower().strip(".@ ")
    return registered_domain(d) or d


def _ids(s: Session, q: Any) -> list[int]:
    return sorted({int(i) for (i,) in s.execute(q)})


def scope_ids(s: Session, scope: str, match: str, activity_id: int | None = None) -> list[int]:
    """The logged activities a scope covers now (ignored ones included: an undo may need them)."""
    if scope == "item":
        return [activity_id] if activity_id is not None else []
    if scope == "thread":
        if match.startswith("ics:"):
            return _ids(s, select(Activity.id).where(Activity.ical_uid == match[4:]))
        return _ids(s, select(Activity.id).where(Activity.thread_key == match))
    if scope == "sender":
        return _ids(
            s,
            select(Participant.activity_id).where(
                Participant.email.in_(_address_forms(s, match)), Participant.role.in_(("from", "organizer"))
            ),
        )
    if scope == "domain":
        return _ids(
            s,
            select(Participant.activity_id).where(
                Participant.is_internal.is_(False),
                _in_domain(match),
            ),
        )
    raise BadInput(f"unknown scope {scope!r} (one of {', '.join(SCOPES)})")


def _in_domain(domain: str) -> Any:
    """An address at the domain or one of its subdomains."""
    return or_(
        Participant.email.like(f"%@{_esc(domain)}", escape="\\"),
        Participant.email.like(f"%.{_esc(domain)}", escape="\\"),
    )


def _esc(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _address_forms(s: Session, key: str) -> list[str]:
    """Stored addresses whose matching form is ``key`` (case, +tags, Gmail dots)."""
    local, _, dom = key.rpartition("@")
    cands = {
        e
        for (e,) in s.execute(
            select(Participant.email).where(Participant.email.like(f"%@{_esc(dom)}", escape="\\")).distinct()
        )
    }
    forms = [e for e in cands if email_key(e) == key]
    return forms or [key]


# --------------------------------------------------------------------------------- snapshot / restore
def snapshot(s: Session, ids: list[int]) -> dict[str, Any]:
    """Per activity: status, confidence, evidence, candidates, rule and links, and who each
    participant was resolved to — everything a correction may change."""
    snap: dict[str, Any] = {}
    for i in range(0, len(ids), _CHUNK):
        chunk = ids[i : i + _CHUNK]
        for a in s.execute(
            select(
                Activity.id,
                Activity.status,
                Activity.confidence,
                Activity.evidence,
                Activity.candidates,
                Activity.rule_id,
            ).where(Activity.id.in_(chunk))
        ):
            snap[str(a[0])] = {
                "status": a[1],
                "confidence": a[2],
                "evidence": list(a[3] or []),
                "candidates": a[4],
                "rule_id": a[5],
                "links": [],
                "people": [],
            }
        for aid, t, tid, conf, ev, st in s.execute(
            select(
                Attribution.activity_id,
                Attribution.target_type,
                Attribution.target_id,
                Attribution.confidence,
                Attribution.evidence,
                Attribution.status,
            )
            .where(Attribution.activity_id.in_(chunk))
            .order_by(Attribution.id)
        ):
            snap[str(aid)]["links"].append([t, tid, conf, list(ev or []), st])
        for aid, pid, cid in s.execute(
            select(Participant.activity_id, Participant.id, Participant.contact_id).where(
                Participant.activity_id.in_(chunk)
            )
        ):
            snap[str(aid)]["people"].append([pid, cid])
    return snap


def restore(s: Session, snap: dict[str, Any], now: datetime) -> dict[str, set[int]]:
    ids = [int(k) for k in snap]
    existing = set(_ids(s, select(Activity.id).where(Activity.id.in_(ids)))) if ids else set()
    ids = [i for i in ids if i in existing]
    touched = entities_of(s, ids)
    rows = []
    for i in range(0, len(ids), _CHUNK):
        s.execute(delete(Attribution).where(Attribution.activity_id.in_(ids[i : i + _CHUNK])))
    updates, people = [], []
    now_people: dict[int, int | None] = {}
    for i in range(0, len(ids), _CHUNK):
        for pid, cid in s.execute(
            select(Participant.id, Participant.contact_id).where(Participant.activity_id.in_(ids[i : i + _CHUNK]))
        ):
            now_people[pid] = cid
    for aid in ids:
        v = snap[str(aid)]
        updates.append(
            {
                "id": aid,
                "status": v["status"],
                "confidence": v["confidence"],
                "evidence": v["evidence"],
                "candidates": v["candidates"],
                "rule_id": v["rule_id"],
                "updated_at": now,
            }
        )
        for t, tid, conf, ev, st in v["links"]:
            rows.append(dict(activity_id=aid, target_type=t, target_id=tid, confidence=conf, evidence=ev, status=st))
            touched.setdefault(t, set()).add(tid)
        # only who a correction re-resolved (a contact reassignment) is written back
        people.extend(
            {"id": pid, "contact_id": cid} for pid, cid in v["people"] if pid in now_people and now_people[pid] != cid
        )
    if updates:
        s.execute(update(Activity), updates)
    if people:
        s.execute(update(Participant), people)
    if rows:
        s.execute(insert(Attribution), rows)
    return touched


# ---------------------------------------------------------------------------------------- overrides
@dataclass(frozen=True)
class Override:
    """Set one target on an item: a deal, a company or (for one address) a contact."""

    target_type: str
    target_id: int
    label: str
    rule_id: int | None = None
    address: str | None = None  # contact reassignments: whose contact is replaced


class Targets:
    """Company of a deal or contact, looked up once per id."""

    def __init__(self, s: Session) -> None:
        self.s = s
        self._cache: dict[tuple[str, int], int | None] = {}

    def company_of(self, target_type: str, target_id: int) -> int | None:
        key = (target_type, target_id)
        if key not in self._cache:
            model = Deal if target_type == "deal" else Contact
            self._cache[key] = self.s.execute(select(model.company_id).where(model.id == target_id)).scalar()
        return self._cache[key]


def override_links(
    links: list[dict[str, Any]], ov: Override, targets: Targets, replaced_contact: int | None
) -> list[dict[str, Any]]:
    """The links of an item after the override: the new target in, what it displaces out."""
    ev = [ov.label]
    out = [dict(r) for r in links]
    if ov.target_type == "deal":
        out = [r for r in out if r["target_type"] != "deal"]
        out.append(dict(target_type="deal", target_id=ov.target_id, confidence=1.0, evidence=ev))
        co = targets.company_of("deal", ov.target_id)
        if co is not None and not any(r["target_type"] == "company" and r["target_id"] == co for r in out):
            out.append(dict(target_type="company", target_id=co, confidence=1.0, evidence=ev))
    elif ov.target_type == "company":
        out = [r for r in out if r["target_type"] != "company"]
        out.append(dict(target_type="company", target_id=ov.target_id, confidence=1.0, evidence=ev))
        out = [
            r
            for r in out
            if r["target_type"] != "deal" or targets.company_of("deal", r["target_id"]) in (ov.target_id, None)
        ]
    else:
        out = [r for r in out if not (r["target_type"] == "contact" and r["target_id"] == replaced_contact)]
        if not any(r["target_type"] == "contact" and r["target_id"] == ov.target_id for r in out):
            out.append(dict(target_type="contact", target_id=ov.target_id, confidence=1.0, evidence=ev))
        co = targets.company_of("contact", ov.target_id)
        if co is not None and not any(r["target_type"] == "company" and r["target_id"] == co for r in out):
            out.append(dict(target_type="company", target_id=co, confidence=1.0, evidence=ev))
    for r in out:
        r["status"] = "corrected"
    return out


def _apply_override(s: Session, ids: list[int], ov: Override, now: datetime) -> dict[str, set[int]]:
    """Pin ``ids`` to the override in bulk (a 500-message thread is a handful of statements)."""
    targets = Targets(s)
    touched: dict[str, set[int]] = defaultdict(set)
    touched[ov.target_type].add(ov.target_id)
    for i in range(0, len(ids), _CHUNK):
        chunk = ids[i : i + _CHUNK]
        links: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for aid, t, tid, conf, ev in s.execute(
            select(
                Attribution.activity_id,
                Attribution.target_type,
                Attribution.target_id,
                Attribution.confidence,
                Attribution.evidence,
            )
            .where(Attribution.activity_id.in_(chunk))
            .order_by(Attribution.id)
        ):
            links[aid].append(dict(target_type=t, target_id=tid, confidence=conf, evidence=list(ev or [])))
            touched[t].add(tid)
        replaced: dict[int, int | None] = {}
        if ov.target_type == "contact" and ov.address:
            forms = {ov.address, *(_address_forms(s, email_key(ov.address)))}
            pids = []
            for aid, pid, cid in s.execute(
                select(Participant.activity_id, Participant.id, Participant.contact_id).where(
                    Participant.activity_id.in_(chunk), Participant.email.in_(forms)
                )
            ):
                replaced.setdefault(aid, cid)
                pids.append(pid)
            if pids:
                s.execute(update(Participant).where(Participant.id.in_(pids)).values(contact_id=ov.target_id))
        s.execute(delete(Attribution).where(Attribution.activity_id.in_(chunk)))
        rows = []
        for aid in chunk:
            for r in override_links(links.get(aid, []), ov, targets, replaced.get(aid)):
                rows.append(dict(activity_id=aid, **r))
                touched[r["target_type"]].add(r["target_id"])
        if rows:
            s.execute(insert(Attribution), rows)
        acts = s.execute(select(Activity.id, Activity.evidence).where(Activity.id.in_(chunk))).all()
        s.execute(
            update(Activity),
            [
                {
                    "id": aid,
                    "status": "corrected",
                    "confidence": 1.0,
                    "evidence": [*[e for e in (ev or []) if not e.startswith("corrected by ")], ov.label],
                    "rule_id": ov.rule_id,
                    "updated_at": now,
                }
                for aid, ev in acts
            ],
        )
    return touched


def _ignore_ids(s: Session, ids: list[int], rule_id: int | None, now: datetime) -> dict[str, set[int]]:
    """Not business: out of every timeline, roll-up and export; its stored excerpt is erased."""
    touched = entities_of(s, ids)
    for i in range(0, len(ids), _CHUNK):
        chunk = ids[i : i + _CHUNK]
        s.execute(delete(Attribution).where(Attribution.activity_id.in_(chunk)))
        s.execute(
            update(Activity)
            .where(Activity.id.in_(chunk))
            .values(status="ignored", confidence=1.0, snippet=None, candidates=None, rule_id=rule_id, updated_at=now)
        )
    return touched


# ------------------------------------------------------------------------------------------ actions
def _target_name(s: Session, target_type: str, target_id: int) -> str:
    model = {"contact": Contact, "company": Company, "deal": Deal}[target_type]
    ent = s.get(model, target_id)
    if ent is None:
        raise BadInput(f"no {target_type} {target_id}")
    return str(ent.name or getattr(ent, "email", None) or f"#{target_id}")


def _scope_match(s: Session, act: Activity | None, scope: str, address: str | None, domain: str | None) -> str:
    if scope == "item":
        return ""
    if scope == "thread":
        key = series_key(act) if act is not None else None
        if not key:
            raise BadInput("this item has no thread to apply the correction to")
        return key
    if scope == "sender":
        addr = clean_email(address) if address else (principal_address(s, act) if act is not None else None)
        if not addr or "@" not in addr:
            raise BadInput("no outside sender to apply the correction to (give an address)")
        return email_key(addr)
    if scope == "domain":
        src = domain or address or (principal_address(s, act) if act is not None else None)
        if not src:
            raise BadInput("no outside domain to apply the correction to (give a domain)")
        d = rule_domain(src)
        if "." not in d:
            raise BadInput(f"not a domain: {src!r}")
        if team_of(s).is_internal(f"x@{d}"):
            raise BadInput(f"{d} is one of your team's own domains")
        return d
    raise BadInput(f"unknown scope {scope!r} (one of {', '.join(SCOPES)})")


def _describe(scope: str, match: str) -> str:
    return SCOPE_WORDS[scope].format(address=match, domain=match)


def reassign(
    s: Session,
    activity_id: int,
    target_type: str,
    target_id: int,
    scope: str,
    actor: str,
    now: datetime,
    address: str | None = None,
) -> Correction:
    """Set the deal, company or contact of an item and, by ``scope``, of what it stands for."""
    act = s.get(Activity, activity_id)
    if act is None:
        raise NotFound(f"no activity {activity_id}")
    if act.status == "ignored":
        raise BadInput(f"activity {activity_id} is marked not business; undo that first")
    if target_type not in TARGETS:
        raise BadInput(f"cannot reassign to a {target_type!r} (one of {', '.join(TARGETS)})")
    if scope not in SCOPES:
        raise BadInput(f"unknown scope {scope!r} (one of {', '.join(SCOPES)})")
    if scope == "domain" and target_type != "company":
        raise BadInput("a domain can only be reassigned to a company")
    name = _target_name(s, target_type, target_id)
    if target_type == "contact":
        address = clean_email(address) if address else principal_address(s, act)
        if not address:
            raise BadInput("this item has no outside person whose contact could be replaced")
    match = _scope_match(s, act, scope, address, None)
    old = (
        s.execute(
            select(Attribution.target_id).where(
                Attribution.activity_id == activity_id, Attribution.target_type == target_type
            )
        )
        .scalars()
        .first()
    )
    rule: Rule | None = None
    if scope != "item":
        rule = Rule(
            scope=scope,
            match=match,
            action="assign",
            target_type=target_type,
            target_id=target_id,
            address=address if target_type == "contact" else None,
            actor=actor,
            created_at=now,
        )
        s.add(rule)
        s.flush()
    ids = scope_ids(s, scope, match, activity_id) if scope != "item" else [activity_id]
    if activity_id not in ids:
        ids.append(activity_id)
    ids = sorted(set(ids) - set(_ids(s, select(Activity.id).where(Activity.id.in_(ids), Activity.status == "ignored"))))
    before = snapshot(s, ids)
    what = f"{target_type} '{name}'"
    label = f"corrected by {actor}: {_describe(scope, match)} → {what}" + (f" (rule #{rule.id})" if rule else "")
    identity = scope == "sender" and target_type == "contact"
    if identity:
        # taught to the matcher: the clicked item is pinned, the rest re-attributed with the lesson
        assert rule is not None
        touched = _apply_override(s, [activity_id], Override(target_type, target_id, label, rule.id, address), now)
        rest = [i for i in ids if i != activity_id]
        for t, group in _reattribute_with_rule(s, rest, rule.id, now).items():
            touched.setdefault(t, set()).update(group)
    else:
        ov = Override(target_type, target_id, label, rule.id if rule else None, address)
        touched = _apply_override(s, ids, ov, now)
    corr = Correction(
        activity_id=activity_id,
        target_type=target_type,
        old_target_id=old,
        new_target_id=target_id,
        scope=scope,
        rule={"scope": scope, "match": match, "action": "assign"} if rule else None,
        actor=actor,
        created_at=now,
        rule_id=rule.id if rule else None,
        before=before,
        affected=len(ids),
    )
    s.add(corr)
    s.flush()
    audit(
        s,
        actor,
        "reassign",
        {
            "correction": corr.id,
            "activity": activity_id,
            "scope": scope,
            "match": match,
            "target": f"{target_type}:{target_id}",
            "affected": len(ids),
            "rule": rule.id if rule else None,
        },
        now,
    )
    s.flush()
    refresh_rollups(s, touched, now)
    return corr


def _reattribute_with_rule(s: Session, ids: list[int], rule_id: int, now: datetime) -> dict[str, set[int]]:
    """Run the matcher again over items (with the identity rules now in the index); the ones a person
    already decided keep their links."""
    from .ingest import reattribute

    if not ids:
        return {}
    s.flush()
    touched = reattribute(s, ids, load_index(s), team_of(s), now)
    decided = {"confirmed", "corrected", "ignored"}
    for i in range(0, len(ids), _CHUNK):
        s.execute(
            update(Activity)
            .where(Activity.id.in_(ids[i : i + _CHUNK]), Activity.status.not_in(decided))
            .values(rule_id=rule_id)
        )
    return touched


def ignore(
    s: Session,
    actor: str,
    now: datetime,
    *,
    activity_id: int | None = None,
    scope: str = "item",
    address: str | None = None,
    domain: str | None = None,
) -> Correction:
    """Mark an item, a thread, a sender or a domain as not business (private): out of the log now and,
    for a sender or a domain, skipped when its mail arrives."""
    act = None
    if activity_id is not None:
        act = s.get(Activity, activity_id)
        if act is None:
            raise NotFound(f"no activity {activity_id}")
    elif scope in ("item", "thread"):
        raise BadInput("give the activity to ignore")
    if scope not in SCOPES:
        raise BadInput(f"unknown scope {scope!r} (one of {', '.join(SCOPES)})")
    match = _scope_match(s, act, scope, address, domain)
    rule: Rule | None = None
    if scope != "item":
        rule = Rule(scope=scope, match=match, action="ignore", actor=actor, created_at=now)
        s.add(rule)
        s.flush()
    if scope == "item":
        ids = [activity_id] if activity_id is not None else []
    elif scope == "thread":
        ids = scope_ids(s, scope, match)
    else:
        # only items every outside person of which is now ignored: a customer cc'd keeps the thread logged
        book = RuleBook(s)
        cand = _ids(
            s,
            select(Participant.activity_id).where(
                Participant.email.in_(_address_forms(s, match)) if scope == "sender" else _in_domain(match)
            ),
        )
        outside: dict[int, list[str]] = defaultdict(list)
        for i in range(0, len(cand), _CHUNK):
            for aid, email in s.execute(
                select(Participant.activity_id, Participant.email).where(
                    Participant.activity_id.in_(cand[i : i + _CHUNK]), Participant.is_internal.is_(False)
                )
            ):
                outside[aid].append(email)
        ids = [aid for aid in cand if book.ignoring(outside.get(aid, [])) is not None]
        if activity_id is not None and activity_id not in ids:
            ids.append(activity_id)
    ids = sorted(set(ids))
    before = snapshot(s, ids)
    touched = _ignore_ids(s, ids, rule.id if rule else None, now)
    corr = Correction(
        activity_id=activity_id,
        target_type="ignore",
        scope=scope,
        rule={"scope": scope, "match": match, "action": "ignore"} if rule else None,
        actor=actor,
        created_at=now,
        rule_id=rule.id if rule else None,
        before=before,
        affected=len(ids),
    )
    s.add(corr)
    s.flush()
    audit(
        s,
        actor,
        "ignore",
        {"correction": corr.id, "activity": activity_id, "scope": scope, "match": match, "affected": len(ids)},
        now,
    )
    s.flush()
    refresh_rollups(s, touched, now)
    return corr


def record_review(
    s: Session, activity_id: int, before: dict[str, Any], corr: Correction, actor: str, now: datetime
) -> None:
    """A review decision is a correction like any other: undoable and in the audit log."""
    corr.before = before
    corr.affected = 1
    s.flush()
    audit(
        s,
        actor,
        "review",
        {"correction": corr.id, "activity": activity_id, "deal": corr.new_target_id},
        now,
    )


def undo(s: Session, actor: str, now: datetime, correction_id: int | None = None) -> Correction:
    """Take a correction back: its items as they were, its rule retired, the items the rule decided
    since handed back to the matcher."""
    if correction_id is None:
        corr = s.execute(
            select(Correction).where(Correction.undone_at.is_(None)).order_by(Correction.id.desc()).limit(1)
        ).scalar_one_or_none()
        if corr is None:
            raise NotFound("nothing to undo")
    else:
        corr = s.get(Correction, correction_id)
        if corr is None:
            raise NotFound(f"no correction {correction_id}")
        if corr.undone_at is not None:
            raise BadInput(f"correction {correction_id} was already undone")
    before: dict[str, Any] = corr.before or {}
    mine = set(before)
    for later in s.execute(
        select(Correction.id, Correction.before).where(Correction.id > corr.id, Correction.undone_at.is_(None))
    ):
        if mine & set(later[1] or {}):
            raise BadInput(f"correction {later[0]} changed the same items since; undo it first")
    touched = restore(s, before, now)
    handed_back: list[int] = []
    if corr.rule_id is not None:
        rule = s.get(Rule, corr.rule_id)
        if rule is not None and rule.undone_at is None:
            rule.undone_at = now
        handed_back = [
            i for i in _ids(s, select(Activity.id).where(Activity.rule_id == corr.rule_id)) if str(i) not in before
        ]
    if handed_back:
        for i in range(0, len(handed_back), _CHUNK):
            chunk = handed_back[i : i + _CHUNK]
            s.execute(update(Attribution).where(Attribution.activity_id.in_(chunk)).values(status="auto"))
            s.execute(
                update(Activity).where(Activity.id.in_(chunk)).values(status="auto", rule_id=None, updated_at=now)
            )
        from .ingest import reattribute

        s.flush()
        for t, group in reattribute(s, handed_back, load_index(s), team_of(s), now).items():
            touched.setdefault(t, set()).update(group)
    corr.undone_at = now
    s.flush()
    audit(
        s,
        actor,
        "undo",
        {"correction": corr.id, "restored": len(before), "handed_back": len(handed_back), "rule": corr.rule_id},
        now,
    )
    s.flush()
    refresh_rollups(s, touched, now)
    return corr


# --------------------------------------------------------------------------------------- listing
def rules_view(s: Session, include_undone: bool = False) -> list[dict[str, Any]]:
    from store.export import iso

    q = select(Rule).order_by(Rule.id.desc())
    if not include_undone:
        q = q.where(Rule.undone_at.is_(None))
    out = []
    for r in s.execute(q).scalars():
        target = None
        if r.target_type and r.target_id is not None:
            model = {"contact": Contact, "company": Company, "deal": Deal}[r.target_type]
            ent = s.get(model, r.target_id)
            target = {"type": r.target_type, "id": r.target_id, "name": ent.name if ent is not None else None}
        corr_id = s.execute(select(Correction.id).where(Correction.rule_id == r.id)).scalars().first()
        decided = s.execute(select(Activity.id).where(Activity.rule_id == r.id)).scalars().all()
        out.append(
            {
                "id": r.id,
                "scope": r.scope,
                "match": r.match,
                "covers": _describe(r.scope, r.match),
                "action": r.action,
                "target": target,
                "address": r.address,
                "actor": r.actor,
                "created_at": iso(r.created_at),
                "undone_at": iso(r.undone_at),
                "correction": corr_id,
                "items": len(decided),
            }
        )
    return out


def corrections_view(s: Session, limit: int = 50) -> list[dict[str, Any]]:
    from store.export import iso

    out = []
    for c in s.execute(select(Correction).order_by(Correction.id.desc()).limit(limit)).scalars():
        out.append(
            {
                "id": c.id,
                "activity": c.activity_id,
                "what": c.target_type,
                "new_target_id": c.new_target_id,
                "scope": c.scope,
                "rule": c.rule_id,
                "affected": c.affected,
                "actor": c.actor,
                "at": iso(c.created_at),
                "undone_at": iso(c.undone_at),
            }
        )
    return out


def audit_view(s: Session, limit: int = 200) -> list[dict[str, Any]]:
    from store.export import iso

    q = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    return [
        {"id": e.id, "at": iso(e.at), "actor": e.actor, "action": e.action, "detail": e.detail}
        for e in s.execute(q).scalars()
    ]


# ---------------------------------------------------------------------------------- the sync engine
class RuleBook:
    """The active rules, for the sync engine: what a new item's thread, sender or domain was taught."""

    def __init__(self, s: Session | None) -> None:
        self.thread: dict[str, Rule] = {}
        self.sender: dict[str, Rule] = {}
        self.domain: dict[str, Rule] = {}
        self.ignore_sender: dict[str, int] = {}
        self.ignore_domain: dict[str, int] = {}
        self.teach_address: dict[str, int] = {}
        self.names: dict[tuple[str, int], str] = {}
        if s is None:
            return
        for r in s.execute(select(Rule).where(Rule.undone_at.is_(None)).order_by(Rule.id)).scalars():
            if r.action == "ignore":
                if r.scope == "sender":
                    self.ignore_sender[r.match] = r.id
                elif r.scope == "domain":
                    self.ignore_domain[r.match] = r.id
                elif r.scope == "thread":
                    self.thread[r.match] = r
            elif r.scope == "thread":
                self.thread[r.match] = r
            elif r.scope == "sender":
                if r.target_type == "contact":
                    self.teach_address.setdefault(r.match, r.id)
                else:
                    self.sender[r.match] = r
            elif r.scope == "domain":
                self.domain[r.match] = r
        self._s = s

    def __bool__(self) -> bool:
        return bool(
            self.thread or self.sender or self.domain or self.ignore_sender or self.ignore_domain or self.teach_address
        )

    def _domain_rule(self, table: dict[str, int], email: str) -> int | None:
        d = domain_of(email)
        while d:
            if d in table:
                return table[d]
            _, _, d = d.partition(".")
            if "." not in d:
                break
        return None

    def ignoring(self, outside: list[str]) -> int | None:
        """The ignore rule covering an item when every outside person in it is ignored."""
        if not outside or not (self.ignore_sender or self.ignore_domain):
            return None
        first = None
        for email in outside:
            rid = self.ignore_sender.get(email_key(email)) or self._domain_rule(self.ignore_domain, email)
            if rid is None:
                return None
            first = first or rid
        return first

    def for_item(self, thread: str | None, sender: str | None, outside: list[str]) -> Rule | None:
        """The pinning rule for a new item: its thread's first, then its sender's, then a domain's."""
        if thread and thread in self.thread:
            return self.thread[thread]
        if sender and email_key(sender) in self.sender:
            return self.sender[email_key(sender)]
        if self.domain:
            for email in outside:
                d = domain_of(email)
                while d and "." in d:
                    if d in self.domain:
                        return self.domain[d]
                    d = d.partition(".")[2]
        return None

    def taught(self, outside: list[str]) -> int | None:
        """An identity rule ("this address is this contact") at work: the matcher applied it."""
        for email in outside:
            rid = self.teach_address.get(email_key(email))
            if rid is not None:
                return rid
        return None

    def override(self, rule: Rule) -> Override:
        assert rule.target_type is not None and rule.target_id is not None
        key = (rule.target_type, rule.target_id)
        if key not in self.names:
            try:
                self.names[key] = _target_name(self._s, rule.target_type, rule.target_id)
            except BadInput:
                self.names[key] = f"#{rule.target_id}"
        label = (
            f"corrected by {rule.actor}: {_describe(rule.scope, rule.match)} → {rule.target_type} "
            f"'{self.names[key]}' (rule #{rule.id})"
        )
        return Override(rule.target_type, rule.target_id, label, rule.id, rule.address)


__all__ = [
    "SCOPES",
    "TARGETS",
    "Override",
    "RuleBook",
    "Targets",
    "audit",
    "audit_view",
    "corrections_view",
    "ignore",
    "override_links",
    "principal_address",
    "reassign",
    "record_review",
    "rules_view",
    "undo",
]
