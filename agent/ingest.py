"""Storing one batch: classify -> dedupe -> thread -> match -> store, inside the caller's transaction.

The caller (the sync engine) opens one transaction per batch and stores the source's cursor in it,
so a crash at any point either keeps the whole batch and its cursor or neither.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from matching.attribute import SUGGESTED_CONFIDENCE, Result, attribute
from matching.classify import Skip, classify_mail, classify_meeting
from matching.identity import domain_of, email_key
from matching.index import ContactRec, CrmIndex, Team
from providers.mailparse import normalise_subject
from providers.records import Batch, CalendarItem, MailItem, Participant, Quarantined
from store.models import (
    Activity,
    ActivityKey,
    Attribution,
    Contact,
    ContactEmail,
    Quarantine,
    Rule,
    Skipped,
    SyncState,
)
from store.models import Participant as ParticipantRow
from store.queries import delete_activities, refresh_rollups

from .corrections import Override, RuleBook, Targets, override_links

SNIPPET_CHARS = 1000
#: link statuses a person set; they steer later mail of the thread strongly and are never overwritten
DECIDED = ("confirmed", "corrected", "ignored")


@dataclass
class BatchStats:
    seen: int = 0
    logged: int = 0
    merged: int = 0
    skipped: int = 0
    quarantined: int = 0
    removed: int = 0
    reasons: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def add(self, other: BatchStats) -> None:
        for k in ("seen", "logged", "merged", "skipped", "quarantined", "removed"):
            setattr(self, k, getattr(self, k) + getattr(other, k))
        for r, n in other.reasons.items():
            self.reasons[r] += n


def dedupe_keys(item: MailItem | CalendarItem) -> list[str]:
    if isinstance(item, MailItem):
        keys = [f"mid:{item.message_id}"]
        if item.fingerprint:
            keys.append(f"fp:{item.fingerprint}")
        return keys
    rid = item.recurrence_id.strftime("%Y-%m-%dT%H:%M:%SZ") if item.recurrence_id else ""
    return [f"ics:{item.ical_uid}|{rid}"]


def _subject_key(item: MailItem, team: Team) -> str | None:
    norm = normalise_subject(item.subject)
    if len(norm) < 4:
        return None
    doms = sorted({domain_of(p.email) for p in item.participants if not team.is_internal(p.email)})
    h = hashlib.sha1(f"{norm}|{','.join(doms)}".encode()).hexdigest()
    return f"subj:{h}"


class Ingestor:
    """Applies batches of one source to the store. Holds the CRM index and the team for the run."""

    def __init__(self, session: Session, source_id: int, owner: str, team: Team, index: CrmIndex, now: datetime):
        self.s = session
        self.source_id = source_id
        self.owner = owner.lower()
        self.team = team
        self.index = index
        self.now = now
        self.touched: dict[str, set[int]] = defaultdict(set)
        #: a person confirmed that an empty calendar really is empty (``inkless source confirm-empty``)
        self.allow_empty = False
        #: what people taught through corrections (threads pinned, senders and domains ignored, ...)
        self.rules = RuleBook(session if source_id else None)
        self._targets: Targets | None = None

    # -- public -----------------------------------------------------------------------------------
    def apply(self, batch: Batch) -> BatchStats:
        stats = BatchStats()
        items: list[MailItem | CalendarItem | Quarantined] = []
        seen_pids: set[str] = set()
        for i in batch.items:  # the same provider id twice in one batch (an mbox copy) counts once
            if i.provider_id not in seen_pids:
                seen_pids.add(i.provider_id)
                items.append(i)
        stats.seen = len(batch.items)
        previous = self._previous_state([i.provider_id for i in items])
        self._new_states: list[dict[str, Any]] = []
        self._new_skips: list[dict[str, Any]] = []
        logged: list[MailItem | CalendarItem] = []
        for item in items:
            prev = previous.get(item.provider_id)
            if isinstance(item, Quarantined):
                self._quarantine(item, prev)
                stats.quarantined += 1
                continue
            if prev is not None and prev[0] == item.content_hash and prev[2] != "quarantined":
                continue  # unchanged since we stored it
            skip = self._classify(item)
            if skip is not None:
                self._skip(item, skip, prev)
                stats.skipped += 1
                stats.reasons[skip.reason] += 1
                continue
            logged.append(item)
        if logged:
            new, merged = self._log(logged, previous)
            stats.logged += new
            stats.merged += merged
        if self._new_states:
            self.s.execute(insert(SyncState), self._new_states)
        if self._new_skips:
            self.s.execute(insert(Skipped), self._new_skips)
        if batch.snapshot:
            stats.removed += self._apply_snapshot(batch, seen_pids)
        for prefix in batch.complete_for:
            stats.removed += self._apply_complete(batch, prefix, seen_pids)
        for pid in batch.deleted:
            stats.removed += self._forget(pid)
        self._flush_rollups()
        return stats

    # -- classification ---------------------------------------------------------------------------
    def _classify(self, item: MailItem | CalendarItem) -> Skip | None:
        if isinstance(item, MailItem):
            skip = classify_mail(item, self.team, self.index)
        else:
            skip = classify_meeting(item, self.owner, self.team, self.index)
        if skip is None and self.rules:
            people = item.participants if isinstance(item, MailItem) else item.attendees
            outside = [p.email for p in people if not self.team.is_internal(p.email)]
            rid = self.rules.ignoring(outside)
            if rid is not None:
                return Skip("ignored", f"a person marked its sender or domain not business (rule #{rid})")
        return skip

    # -- sync state -------------------------------------------------------------------------------
    def _previous_state(self, pids: list[str]) -> dict[str, tuple[str, int | None, str]]:
        out: dict[str, tuple[str, int | None, str]] = {}
        for i in range(0, len(pids), 500):
            q = select(SyncState.provider_id, SyncState.content_hash, SyncState.activity_id, SyncState.outcome).where(
                SyncState.source_id == self.source_id, SyncState.provider_id.in_(pids[i : i + 500])
            )
            for pid, h, aid, outcome in self.s.execute(q):
                out[pid] = (h, aid, outcome)
        return out

    def _set_state(
        self,
        item: MailItem | CalendarItem | Quarantined,
        prev: tuple[str, int | None, str] | None,
        outcome: str,
        activity_id: int | None,
    ) -> None:
        occurred = None if isinstance(item, Quarantined) else item.occurred_at
        chash = "" if isinstance(item, Quarantined) else item.content_hash
        if prev is None:
            self._new_states.append(
                dict(
                    source_id=self.source_id,
                    provider_id=item.provider_id,
                    content_hash=chash,
                    locator=item.locator,
                    activity_id=activity_id,
                    occurred_at=occurred,
                    outcome=outcome,
                )
            )
            return
        row = self.s.get(SyncState, (self.source_id, item.provider_id))
        assert row is not None
        if row.activity_id is not None and row.activity_id != activity_id:
            self._detach(row.activity_id, item.provider_id)
        row.content_hash, row.locator, row.activity_id = chash, item.locator, activity_id
        row.occurred_at, row.outcome = occurred, outcome
        if prev[2] == "skipped" and outcome != "skipped":
            self.s.execute(
                delete(Skipped).where(Skipped.source_id == self.source_id, Skipped.provider_id == item.provider_id)
            )
        if prev[2] == "quarantined" and outcome != "quarantined":
            self.s.execute(
                delete(Quarantine).where(
                    Quarantine.source_id == self.source_id, Quarantine.provider_id == item.provider_id
                )
            )

    def _detach(self, activity_id: int, provider_id: str) -> None:
        """This source no longer holds the item as a logged activity; drop it if nobody else does."""
        others = self.s.execute(
            select(SyncState.provider_id)
            .where(
                SyncState.activity_id == activity_id,
                ~((SyncState.source_id == self.source_id) & (SyncState.provider_id == provider_id)),
            )
            .limit(1)
        ).first()
        if others is None:
            for t, ids in delete_activities(self.s, [activity_id]).items():
                self.touched[t] |= ids

    def _quarantine(self, item: Quarantined, prev: tuple[str, int | None, str] | None) -> None:
        self._set_state(item, prev, "quarantined", None)
        existing = None
        if prev is not None:
            existing = self.s.execute(
                select(Quarantine).where(
                    Quarantine.source_id == self.source_id, Quarantine.provider_id == item.provider_id
                )
            ).scalar_one_or_none()
        if existing is None:
            self.s.add(
                Quarantine(
                    source_id=self.source_id,
                    provider_id=item.provider_id,
                    locator=item.locator,
                    reason=item.reason[:500],
                    created_at=self.now,
                )
            )
        else:
            existing.reason = item.reason[:500]

    def _skip(self, item: MailItem | CalendarItem, skip: Skip, prev: tuple[str, int | None, str] | None) -> None:
        self._set_state(item, prev, "skipped", None)
        sender = item.sender.email if isinstance(item, MailItem) and item.sender else None
        if isinstance(item, CalendarItem) and item.organizer:
            sender = item.organizer.email
        people = item.participants if isinstance(item, MailItem) else item.attendees
        addresses = None
        if skip.reason in ("personal", "meeting-personal"):
            addresses = sorted({p.email for p in people if not self.team.is_internal(p.email)})[:50]
        values: dict[str, Any] = dict(
            locator=item.locator,
            kind=item.kind,
            dedupe_key=dedupe_keys(item)[0][:600],
            reason=skip.reason,
            detail=skip.detail[:300],
            occurred_at=item.occurred_at,
            sender=sender[:320] if sender else None,
            addresses=addresses,
        )
        row = None
        if prev is not None:
            row = self.s.execute(
                select(Skipped).where(Skipped.source_id == self.source_id, Skipped.provider_id == item.provider_id)
            ).scalar_one_or_none()
        if row is None:
            self._new_skips.append(
                dict(source_id=self.source_id, provider_id=item.provider_id, created_at=self.now, **values)
            )
        else:
            for k, v in values.items():
                setattr(row, k, v)

    # -- logging ----------------------------------------------------------------------------------
    def _log(
        self, items: list[MailItem | CalendarItem], previous: dict[str, tuple[str, int | None, str]]
    ) -> tuple[int, int]:
        all_keys = {k for it in items for k in dedupe_keys(it)}
        for it in items:
            if isinstance(it, MailItem):
                all_keys.update(f"mid:{r}" for r in (*it.references, it.in_reply_to) if r)
                sk = _subject_key(it, self.team)
                if sk:
                    all_keys.add(sk)
        known = self._lookup_keys(all_keys)
        threads = self._thread_keys_of(set(known.values()))
        # pass 1: merges, and thread keys for new items (items in this batch are "pending": index -1-n)
        pending: list[tuple[MailItem | CalendarItem, str | None]] = []
        merges: list[tuple[MailItem | CalendarItem, int]] = []
        for it in items:
            keys = dedupe_keys(it)
            aid = next((known[k] for k in keys if k in known), None)
            if aid is not None:
                merges.append((it, aid))
                continue
            tk = self._thread_key(it, known, threads) if isinstance(it, MailItem) else None
            ref = -1 - len(pending)
            pending.append((it, tk))
            threads[ref] = tk
            for k in keys:
                known[k] = ref
            if isinstance(it, MailItem):
                sk = _subject_key(it, self.team)
                if sk and sk not in known:
                    known[sk] = ref
        # pass 2: attribute and insert the new ones in bulk
        ids = self._insert_many(pending) if pending else []
        resolved = {-1 - n: aid for n, aid in enumerate(ids)}
        key_rows = []
        for k, ref in known.items():
            if ref < 0:
                key_rows.append(dict(key=k[:600], activity_id=resolved[ref]))
        for (it, _), aid in zip(pending, ids, strict=True):
            self._set_state(it, previous.get(it.provider_id), "logged", aid)
        merged = 0
        for it, ref in merges:
            aid = resolved.get(ref, ref)
            for k in dedupe_keys(it):
                if k not in known:
                    key_rows.append(dict(key=k[:600], activity_id=aid))
                    known[k] = aid
            if isinstance(it, CalendarItem):
                self._update_meeting(aid, it)
            self._set_state(it, previous.get(it.provider_id), "logged", aid)
            merged += 1
        if key_rows:
            self.s.execute(insert(ActivityKey), key_rows)
        return len(pending), merged

    def _update_meeting(self, aid: int, it: CalendarItem) -> None:
        act = self.s.get(Activity, aid)
        if act is None:
            return
        if act.occurred_at != it.start or act.subject != it.summary[:1000] or act.end_at != it.end:
            act.occurred_at, act.end_at, act.subject = it.start, it.end, it.summary[:1000]
            act.updated_at = self.now
            self.s.flush()
            for t, ids in reattribute(self.s, [aid], self.index, self.team, self.now).items():
                self.touched[t] |= ids

    def _prefetch_thread_deals(self, thread_keys: set[str]) -> dict[str, list[tuple[datetime, int, bool]]]:
        """Per thread: (when, deal, decided by a person) of every message already on a deal."""
        out: dict[str, list[tuple[datetime, int, bool]]] = defaultdict(list)
        tks = sorted(thread_keys)
        for i in range(0, len(tks), 500):
            q = (
                select(Activity.thread_key, Activity.occurred_at, Attribution.target_id, Attribution.status)
                .join(Attribution, Attribution.activity_id == Activity.id)
                .where(Activity.thread_key.in_(tks[i : i + 500]), Attribution.target_type == "deal")
            )
            for tk, when, deal, status in self.s.execute(q):
                out[tk].append((when, deal, status in DECIDED))
        return out

    def _insert_many(self, pending: list[tuple[MailItem | CalendarItem, str | None]]) -> list[int]:
        thread_deals = self._prefetch_thread_deals({tk for _, tk in pending if tk})
        slots: list[tuple[dict[str, Any], tuple[list[Participant], Result, dict[str, int]]] | None]
        slots = [None] * len(pending)
        # attribute in date order so a thread's earlier mail informs its later mail whatever the batch order
        order = sorted(range(len(pending)), key=lambda n: (pending[n][0].occurred_at, n))
        for n in order:
            it, tk = pending[n]
            if isinstance(it, MailItem):
                sender_internal = it.sender is not None and self.team.is_internal(it.sender.email)
                direction: str | None = "outbound" if sender_internal else "inbound"
                people = list(it.participants)
                # the stored excerpt, so a later re-attribution sees exactly what this one saw
                subject, text, when = it.subject, it.body_text[:SNIPPET_CHARS], it.occurred_at
                values: dict[str, Any] = dict(
                    kind="email", occurred_at=when, end_at=None, ical_uid=None, recurrence_id=None
                )
            else:
                direction = None
                people = list(it.attendees)
                if it.organizer and all(p.email != it.organizer.email for p in people):
                    people.insert(0, it.organizer)
                subject, text, when = it.summary, it.description[:SNIPPET_CHARS], it.start
                values = dict(
                    kind="meeting",
                    occurred_at=when,
                    end_at=it.end,
                    ical_uid=it.ical_uid[:500],
                    recurrence_id=it.recurrence_id,
                )
            prior = _latest_before(thread_deals.get(tk, []), when) if tk else None
            res = attribute(
                people,
                when,
                subject,
                text,
                self.index,
                self.team,
                prior[0] if prior else None,
                thread_decided=bool(prior and prior[1]),
            )
            pin, rule_id = self._rule_for(it, tk, people)
            if pin is not None and pin.action == "ignore":
                values["status"] = "ignored"
                res = Result(status="ignored", confidence=1.0, evidence=[f"not business: rule #{pin.id}"])
                text = ""
            ov = self.rules.override(pin) if pin is not None and pin.action == "assign" else None
            if tk and (ov is not None and ov.target_type == "deal"):
                thread_deals[tk].append((when, ov.target_id, True))
            elif tk and res.deal:
                thread_deals[tk].append((when, res.deal.target_id, False))
            new_ids = self._create_suggested(res)
            if ov is not None:
                values.update(status="corrected", rule_id=ov.rule_id)
                res.confidence, res.evidence = 1.0, [*res.evidence, ov.label]
            elif rule_id is not None:
                values["rule_id"] = rule_id
            slots[n] = (
                dict(
                    dedupe_key=dedupe_keys(it)[0][:600],
                    subject=subject[:1000],
                    direction=direction,
                    thread_key=tk[:600] if tk else None,
                    snippet=text[:SNIPPET_CHARS] or None,
                    confidence=res.confidence,
                    evidence=res.evidence,
                    candidates=[list(c) for c in res.deal_candidates] or None,
                    created_at=self.now,
                    updated_at=self.now,
                    **{"status": res.status, "rule_id": None, **values},
                ),
                (people, res, new_ids, ov),
            )
        rows = [slot[0] for slot in slots if slot is not None]
        extras = [slot[1] for slot in slots if slot is not None]
        ids = list(
            self.s.execute(insert(Activity).returning(Activity.id, sort_by_parameter_order=True), rows).scalars()
        )
        people_rows: list[dict[str, Any]] = []
        link_rows: list[dict[str, Any]] = []
        for aid, (people, res, new_ids, ov) in zip(ids, extras, strict=True):
            prows = self._people_rows(aid, people, res.resolved)
            links = self._link_rows(aid, res, new_ids)
            if ov is not None:
                links, prows = self._pinned(aid, ov, links, prows)
            people_rows.extend(prows)
            link_rows.extend(links)
        if people_rows:
            self.s.execute(insert(ParticipantRow), people_rows)
        if link_rows:
            self.s.execute(insert(Attribution), link_rows)
        # only a message that landed on a deal can change the thread hint of the mail after it
        on_deal = [pend for pend, (_, res, _, _) in zip(pending, extras, strict=True) if res.deal is not None]
        self._revisit_later_thread_mates(on_deal, set(ids))
        return ids

    def _rule_for(
        self, it: MailItem | CalendarItem, tk: str | None, people: list[Participant]
    ) -> tuple[Rule | None, int | None]:
        """A rule pinning this new item (its thread's, its sender's), else an identity rule at work."""
        if not self.rules:
            return None, None
        if isinstance(it, MailItem):
            key, sender = tk, it.sender.email if it.sender else None
        else:
            key, sender = f"ics:{it.ical_uid}", it.organizer.email if it.organizer else None
        if sender and self.team.is_internal(sender):
            sender = None
        outside = [p.email for p in people if not self.team.is_internal(p.email)]
        pin = self.rules.for_item(key, sender, outside)
        if pin is not None:
            return pin, pin.id
        return None, self.rules.taught(outside)

    def _pinned(
        self, aid: int, ov: Override, links: list[dict[str, Any]], prows: list[dict[str, Any]]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        if self._targets is None:
            self._targets = Targets(self.s)
        replaced = None
        if ov.target_type == "contact" and ov.address:
            key = email_key(ov.address)
            for p in prows:
                if email_key(p["email"]) == key:
                    replaced = replaced or p["contact_id"]
                    p["contact_id"] = ov.target_id
        bare = [{k: v for k, v in r.items() if k not in ("activity_id", "status")} for r in links]
        out = [dict(activity_id=aid, **r) for r in override_links(bare, ov, self._targets, replaced)]
        for r in out:
            self.touched[r["target_type"]].add(r["target_id"])
        return out, prows

    def _revisit_later_thread_mates(
        self, on_deal: list[tuple[MailItem | CalendarItem, str | None]], new_ids: set[int]
    ) -> None:
        """Mail stored before an older message of its thread arrived (mailboxes read in another order)
        is attributed again, so the result is what date order would have given. Only the mail whose
        thread hint the new message changes is revisited: the messages after it up to the next one on
        a deal, and only when that hint differs from the one they had."""
        by_thread: dict[str, list[MailItem | CalendarItem]] = defaultdict(list)
        for it, tk in on_deal:
            if tk:
                by_thread[tk].append(it)
        if not by_thread:
            return
        stored: dict[str, list[tuple[datetime, int, int | None]]] = defaultdict(list)
        tks = sorted(by_thread)
        for i in range(0, len(tks), 500):
            q = (
                select(Activity.thread_key, Activity.occurred_at, Activity.id, Attribution.target_id)
                .outerjoin(Attribution, (Attribution.activity_id == Activity.id) & (Attribution.target_type == "deal"))
                .where(Activity.thread_key.in_(tks[i : i + 500]))
            )
            for tk, when, aid, deal in self.s.execute(q):
                stored[tk].append((when, aid, deal))
        revisit: set[tuple[datetime, int]] = set()
        for tk, items in by_thread.items():
            mates = sorted(stored[tk])
            for it in items:
                before = [m for m in mates if m[0] < it.occurred_at and m[2] is not None and m[1] not in new_ids]
                after = [m for m in mates if m[0] > it.occurred_at and m[1] not in new_ids]
                if not after:
                    continue
                new_deal = next((m[2] for m in mates if m[0] == it.occurred_at and m[1] in new_ids), None)
                if before and before[-1][2] == new_deal:
                    continue  # the mail after it already had this hint
                for m in after:
                    revisit.add((m[0], m[1]))
                    if m[2] is not None:
                        break  # from here on the hint comes from this message
        if revisit:
            self.s.flush()
            touched = reattribute(self.s, [aid for _, aid in sorted(revisit)], self.index, self.team, self.now)
            for t, group in touched.items():
                self.touched[t] |= group

    def _lookup_keys(self, keys: set[str]) -> dict[str, int]:
        out: dict[str, int] = {}
        klist = sorted(keys)
        for i in range(0, len(klist), 500):
            q = select(ActivityKey.key, ActivityKey.activity_id).where(ActivityKey.key.in_(klist[i : i + 500]))
            out.update({k: a for k, a in self.s.execute(q)})
        return out

    def _thread_keys_of(self, ids: set[int]) -> dict[int, str | None]:
        out: dict[int, str | None] = {}
        idl = sorted(ids)
        for i in range(0, len(idl), 500):
            q = select(Activity.id, Activity.thread_key).where(Activity.id.in_(idl[i : i + 500]))
            out.update({a: t for a, t in self.s.execute(q)})
        return out

    def _thread_key(self, it: MailItem, known: dict[str, int], threads: dict[int, str | None]) -> str:
        refs = [r for r in (*reversed(it.references), it.in_reply_to) if r]
        for r in refs:
            aid = known.get(f"mid:{r}")
            if aid is not None and threads.get(aid):
                return str(threads[aid])
        if it.references:
            return f"t:{it.references[0]}"
        if it.in_reply_to:
            return f"t:{it.in_reply_to}"
        sk = _subject_key(it, self.team)
        if sk and sk in known and normalise_subject(it.subject) != it.subject.strip().lower():
            t = threads.get(known[sk])
            if t:
                return t
        return f"t:{it.message_id}"

    def _thread_deal(self, thread_key: str, before: datetime) -> tuple[int, bool] | None:
        """The deal of the thread's latest earlier message (a later reply never steers an older one)."""
        q = (
            select(Attribution.target_id, Attribution.status)
            .join(Activity, Activity.id == Attribution.activity_id)
            .where(
                Activity.thread_key == thread_key,
                Attribution.target_type == "deal",
                Activity.occurred_at < before,
            )
            .order_by(Activity.occurred_at.desc())
            .limit(1)
        )
        row = self.s.execute(q).first()
        return (int(row[0]), row[1] in DECIDED) if row else None

    def _people_rows(
        self, aid: int, people: list[Participant], resolved: dict[str, int] | None = None
    ) -> list[dict[str, Any]]:
        rows = []
        seen: set[tuple[str, str]] = set()
        for p in people:
            if (p.email, p.role) in seen:
                continue
            seen.add((p.email, p.role))
            c = self.index.contact_for(p.email)
            cid = c.id if c else (resolved or {}).get(p.email)
            rows.append(
                dict(
                    activity_id=aid,
                    email=p.email[:320],
                    name=p.name[:400] if p.name else None,
                    role=p.role,
                    is_internal=self.team.is_internal(p.email),
                    contact_id=cid,
                )
            )
        return rows

    def _create_suggested(self, res: Result) -> dict[str, int]:
        """Unknown people at known companies become suggested contacts (never pushed until confirmed)."""
        out: dict[str, int] = {}
        for nc in res.new_contacts:
            key = email_key(nc.email)
            existing = self.index.by_email.get(key)
            if existing is not None:
                out[key] = existing
                continue
            c = Contact(name=nc.name, email=nc.email, company_id=nc.company_id, origin="suggested")
            self.s.add(c)
            self.s.flush()
            self.s.add(ContactEmail(key=key, contact_id=c.id, email=nc.email, is_primary=True))
            self.index.add_contact(ContactRec(c.id, None, nc.name, nc.company_id, "suggested"), [nc.email])
            out[key] = c.id
        return out

    def _link_rows(self, aid: int, res: Result, new_ids: dict[str, int]) -> list[dict[str, Any]]:
        rows = []
        for link in res.contacts + res.companies + ([res.deal] if res.deal else []):
            rows.append(
                dict(
                    activity_id=aid,
                    target_type=link.target_type,
                    target_id=link.target_id,
                    confidence=link.confidence,
                    evidence=list(link.evidence),
                    status=res.status,
                )
            )
            self.touched[link.target_type].add(link.target_id)
        for nc in res.new_contacts:
            cid = new_ids.get(email_key(nc.email))
            if cid is None:
                continue
            rows.append(
                dict(
                    activity_id=aid,
                    target_type="contact",
                    target_id=cid,
                    confidence=SUGGESTED_CONFIDENCE,
                    evidence=[nc.evidence],
                    status=res.status,
                )
            )
            self.touched["contact"].add(cid)
        return rows

    # -- deletions --------------------------------------------------------------------------------
    def _apply_snapshot(self, batch: Batch, present: set[str]) -> int:
        if batch.window is None:
            return 0
        start, end = batch.window
        q = select(SyncState.provider_id).where(
            SyncState.source_id == self.source_id,
            SyncState.occurred_at >= start,
            SyncState.occurred_at <= end,
        )
        # a series the source could not read this time is quarantined, not deleted
        broken = {i.provider_id.rpartition("|")[0] for i in batch.items if isinstance(i, Quarantined)}
        gone = [pid for (pid,) in self.s.execute(q) if pid not in present and pid.rpartition("|")[0] not in broken]
        if gone and not present and not self.allow_empty:
            # safety rail: a calendar that suddenly lists nothing wipes nothing until a person confirms
            raise EmptySnapshot(len(gone))
        self._drop_stale_quarantine(present)
        return sum(self._forget(pid) for pid in gone)

    def _apply_complete(self, batch: Batch, prefix: str, present: set[str]) -> int:
        """The batch lists every item with this provider-id prefix (inside its window, if any)."""
        q = select(SyncState.provider_id).where(
            SyncState.source_id == self.source_id, SyncState.provider_id.startswith(prefix, autoescape=True)
        )
        if batch.window is not None:
            q = q.where(SyncState.occurred_at >= batch.window[0], SyncState.occurred_at <= batch.window[1])
        broken = {i.provider_id.rpartition("|")[0] for i in batch.items if isinstance(i, Quarantined)}
        gone = [pid for (pid,) in self.s.execute(q) if pid not in present and pid.rpartition("|")[0] not in broken]
        self._drop_stale_quarantine(present, prefix)
        return sum(self._forget(pid) for pid in gone)

    def _drop_stale_quarantine(self, present: set[str], prefix: str = "") -> None:
        """Quarantine entries the source no longer reports (the series parses now, or it was deleted)."""
        q = select(SyncState.provider_id).where(
            SyncState.source_id == self.source_id, SyncState.outcome == "quarantined"
        )
        if prefix:
            q = q.where(SyncState.provider_id.startswith(prefix, autoescape=True))
        for (pid,) in self.s.execute(q).all():
            if pid not in present:
                self._forget(pid)

    def _forget(self, pid: str) -> int:
        row = self.s.get(SyncState, (self.source_id, pid))
        if row is None:
            return 0
        aid = row.activity_id
        self.s.delete(row)
        self.s.execute(delete(Skipped).where(Skipped.source_id == self.source_id, Skipped.provider_id == pid))
        self.s.execute(delete(Quarantine).where(Quarantine.source_id == self.source_id, Quarantine.provider_id == pid))
        self.s.flush()
        if aid is not None:
            self._detach(aid, pid)
            return 1
        return 0

    def _flush_rollups(self) -> None:
        if self.touched:
            self.s.flush()
            refresh_rollups(self.s, self.touched, self.now)
            self.touched = defaultdict(set)


def _latest_before(history: list[tuple[datetime, int, bool]], when: datetime) -> tuple[int, bool] | None:
    earlier = [h for h in history if h[0] < when]
    if not earlier:
        return None
    _, deal, decided = max(earlier)
    return deal, decided


class EmptySnapshot(Exception):
    def __init__(self, count: int) -> None:
        super().__init__(count)
        self.count = count


def reattribute(
    session: Session, activity_ids: list[int], index: CrmIndex, team: Team, now: datetime
) -> dict[str, set[int]]:
    """Recompute the automatic attribution of stored activities from their participants and text.

    Links a person confirmed or corrected are kept as they are. Returns the entities whose roll-ups
    changed (old and new links)."""
    touched: dict[str, set[int]] = defaultdict(set)
    for i in range(0, len(activity_ids), 200):
        chunk = activity_ids[i : i + 200]
        acts = {a.id: a for a in session.execute(select(Activity).where(Activity.id.in_(chunk))).scalars()}
        people: dict[int, list[Participant]] = defaultdict(list)
        q = (
            select(ParticipantRow.activity_id, ParticipantRow.email, ParticipantRow.name, ParticipantRow.role)
            .where(ParticipantRow.activity_id.in_(chunk))
            .order_by(ParticipantRow.id)
        )
        for aid, email, name, role in session.execute(q):
            people[aid].append(Participant(email=email, name=name, role=role))
        old = session.execute(
            select(Attribution.activity_id, Attribution.target_type, Attribution.target_id, Attribution.status).where(
                Attribution.activity_id.in_(chunk)
            )
        ).all()
        locked = {aid for aid, _, _, st in old if st in DECIDED}
        locked |= {aid for aid, act in acts.items() if act.status in DECIDED}
        before: dict[int, set[tuple[str, int]]] = defaultdict(set)
        for aid, t, tid, _ in old:
            if aid not in locked:
                touched[t].add(tid)
                before[aid].add((t, tid))
        ingest = Ingestor(session, 0, "", team, index, now)
        for aid, act in sorted(acts.items(), key=lambda kv: (kv[1].occurred_at, kv[0])):
            if aid in locked:
                continue
            session.execute(delete(Attribution).where(Attribution.activity_id == aid))
            prior = ingest._thread_deal(act.thread_key, act.occurred_at) if act.thread_key else None
            res = attribute(
                people[aid],
                act.occurred_at,
                act.subject,
                act.snippet or "",
                index,
                team,
                prior[0] if prior else None,
                thread_decided=bool(prior and prior[1]),
            )
            new_ids = ingest._create_suggested(res)
            rows = ingest._link_rows(aid, res, new_ids)
            if rows:
                session.execute(insert(Attribution), rows)
            if {(r["target_type"], r["target_id"]) for r in rows} != before[aid] or act.status != res.status:
                act.updated_at = now  # what an export of changes picks up: other links or another status
            act.status, act.confidence, act.evidence = res.status, res.confidence, res.evidence
            act.candidates = [list(c) for c in res.deal_candidates] or None
            for t, ids in ingest.touched.items():
                touched[t] |= ids
            ingest.touched = defaultdict(set)
            # participant rows follow the index (a contact may have been imported meanwhile)
            for prow in session.execute(select(ParticipantRow).where(ParticipantRow.activity_id == aid)).scalars():
                c = index.contact_for(prow.email)
                prow.contact_id = c.id if c else res.resolved.get(prow.email)
    return touched


def known_to_crm(addresses: list[str], index: CrmIndex) -> bool:
    return any(index.contact_for(a) is not None or (index.company_for_email(a) is not None) for a in addresses)


__all__ = ["BatchStats", "EmptySnapshot", "Ingestor", "dedupe_keys", "known_to_crm", "reattribute"]
