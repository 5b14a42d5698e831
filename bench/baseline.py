"""Score the anchor products' rule on a synthetic corpus and compare it with inkless.

    python bench/baseline.py CORPUS_DIR [--inkless-activities ACTS.jsonl] [--json]

The rule is what Salesforce activity capture, HubSpot and Twenty do out of the box:

* an email or meeting is logged when one of its participants' addresses equals a CRM contact's primary
  email, compared case-insensitively and otherwise verbatim (no plus-tags, no dots, no other_emails);
* its contacts are those exact matches, its companies those contacts' companies;
* its deal is the newest (by created_at) ``open`` deal that lists one of those contacts, with no look
  at dates or text;
* nothing else is classified: internal-only mail has no CRM contact so it is not logged, but a
  newsletter, an auto-reply or a cancelled meeting involving a known contact is.

Like those products it logs one real-world email once (Message-ID) and one meeting occurrence once
(UID + RECURRENCE-ID) however many mailboxes hold it. Mail and calendars are read with inkless's own
sources so both sides see exactly the same items. The inkless column is the real CLI run end to end
(bench/run_synthetic.py) unless ``--inkless-activities`` gives an existing export.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import sys
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

from providers.base import Source, SyncContext
from providers.ics import IcsSource
from providers.mailfiles import MaildirSource
from providers.records import CalendarItem, MailItem, Participant

BENCH = Path(__file__).resolve().parent
EVIDENCE = ["exact email"]
#: the headers the anchor products match on; Reply-To is not one of them
MAIL_ROLES = frozenset({"from", "to", "cc", "bcc"})


@dataclass(frozen=True, slots=True)
class CrmContact:
    crm_id: str
    email: str
    name: str | None
    company_id: str | None


@dataclass(frozen=True, slots=True)
class CrmCompany:
    crm_id: str
    name: str | None
    domain: str | None


@dataclass(frozen=True, slots=True)
class CrmDeal:
    crm_id: str
    name: str
    created_at: datetime
    contact_ids: frozenset[str]


@dataclass(frozen=True, slots=True)
class Crm:
    contacts_by_email: dict[str, list[CrmContact]]
    companies: dict[str, CrmCompany]
    open_deals: list[CrmDeal]


# ---------------------------------------------------------------------------------------------------
# the corpus


def parse_instant(text: str) -> datetime:
    """An ISO 8601 instant as aware UTC (``Z`` or an offset; naive means UTC)."""
    parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def iso(instant: datetime) -> str:
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _rows(path: Path) -> Iterator[dict[str, str]]:
    with path.open(newline="", encoding="utf-8-sig") as fh:
        for row in csv.DictReader(fh):
            yield {k.strip().lower(): (v or "").strip() for k, v in row.items() if k is not None}


def _split(cell: str) -> list[str]:
    return [part.strip() for part in cell.split(";") if part.strip()]


def read_crm(crm_dir: Path) -> Crm:
    """The corpus CRM in the generic CSV format (shared/corpora/synthetic-dev/README.md)."""
    companies: dict[str, CrmCompany] = {}
    for row in _rows(crm_dir / "companies.csv"):
        domains = _split(row.get("domains", ""))
        companies[row["id"]] = CrmCompany(row["id"], row.get("name") or None, domains[0] if domains else None)

    contacts_by_email: dict[str, list[CrmContact]] = {}
    for row in _rows(crm_dir / "contacts.csv"):
        email = row.get("email", "").lower()
        if not email:
            continue
        name = f"{row.get('first_name', '')} {row.get('last_name', '')}".strip() or None
        contact = CrmContact(row["id"], email, name, row.get("company_id") or None)
        contacts_by_email.setdefault(email, []).append(contact)

    open_deals: list[CrmDeal] = []
    for row in _rows(crm_dir / "deals.csv"):
        if row.get("status", "").lower() != "open":
            continue
        created = parse_instant(row["created_at"]) if row.get("created_at") else datetime.min.replace(tzinfo=UTC)
        contact_ids = frozenset(_split(row.get("contact_ids", "")))
        open_deals.append(CrmDeal(row["id"], row.get("name", ""), created, contact_ids))
    return Crm(contacts_by_email, companies, open_deals)


def _items(source: Source, ctx: SyncContext) -> Iterator[MailItem | CalendarItem]:
    for batch in source.batches(None, ctx):
        for item in batch.items:
            if isinstance(item, MailItem | CalendarItem):
                yield item


def read_items(
    corpus_dir: Path, ctx: SyncContext, mailboxes: list[dict[str, Any]]
) -> Iterator[MailItem | CalendarItem]:
    """Every mailbox's then every calendar's items, in meta.json order, Quarantined ones left out."""
    for box in mailboxes:
        yield from _items(MaildirSource(str(corpus_dir / box["maildir"]), box["owner"]), ctx)
    for box in mailboxes:
        yield from _items(IcsSource(str(corpus_dir / box["calendar"]), box["owner"]), ctx)


# ---------------------------------------------------------------------------------------------------
# the rule


def _participants(item: MailItem | CalendarItem) -> Iterable[Participant]:
    if isinstance(item, MailItem):
        return (p for p in item.participants if p.role in MAIL_ROLES)
    return (item.organizer, *item.attendees) if item.organizer else item.attendees


def attribute(item: MailItem | CalendarItem, crm: Crm) -> dict[str, Any] | None:
    """The export line the rule writes for ``item``, or None when no participant is a CRM contact."""
    contacts: dict[str, CrmContact] = {}
    for participant in _participants(item):
        for contact in crm.contacts_by_email.get(participant.email.strip().lower(), ()):
            contacts.setdefault(contact.crm_id, contact)
    if not contacts:
        return None
    company_ids = dict.fromkeys(c.company_id for c in contacts.values() if c.company_id in crm.companies)
    companies = [crm.companies[cid] for cid in company_ids if cid is not None]
    candidates = [d for d in crm.open_deals if d.contact_ids & contacts.keys()]
    deal = max(candidates, key=lambda d: (d.created_at, d.crm_id), default=None)
    line: dict[str, Any] = {"kind": item.kind}
    if isinstance(item, MailItem):
        line |= {"message_ids": [item.message_id], "ical_uid": None, "recurrence_id": None, "subject": item.subject}
    else:
        rid = iso(item.recurrence_id) if item.recurrence_id else None
        line |= {"message_ids": [], "ical_uid": item.ical_uid, "recurrence_id": rid, "subject": item.summary}
    line |= {
        "occurred_at": iso(item.occurred_at),
        "contacts": [{"crm_id": c.crm_id, "email": c.email, "name": c.name} for c in contacts.values()],
        "companies": [{"crm_id": c.crm_id, "domain": c.domain, "name": c.name} for c in companies],
        "deal": {"crm_id": deal.crm_id, "name": deal.name} if deal else None,
        "status": "auto",
        "confidence": 1.0,
        "evidence": list(EVIDENCE),
    }
    return line


def _identity(item: MailItem | CalendarItem) -> tuple[str, ...]:
    if isinstance(item, MailItem):
        return ("email", item.message_id)
    return ("meeting", item.ical_uid, iso(item.recurrence_id) if item.recurrence_id else "")


def baseline_export(corpus_dir: Path, out: Path) -> int:
    """Write the rule's activities export of ``corpus_dir`` to ``out`` (DESIGN.md "Export format").

    Returns the number of lines written.
    """
    corpus_dir = Path(corpus_dir)
    meta = json.loads((corpus_dir / "meta.json").read_text(encoding="utf-8"))
    crm = read_crm(corpus_dir / "crm")
    ctx = SyncContext(parse_instant(meta["now"]))
    logged: dict[tuple[str, ...], dict[str, Any]] = {}
    for item in read_items(corpus_dir, ctx, meta["mailboxes"]):
        key = _identity(item)
        if key in logged:
            continue
        # a copy that matches no contact does not claim the key: another mailbox's copy (the sender's,
        # with its Bcc) may still match
        line = attribute(item, crm)
        if line is not None:
            logged[key] = line
    lines = sorted(logged.values(), key=lambda ln: (ln["occurred_at"], ln["kind"], json.dumps(ln, sort_keys=True)))
    out = Path(out)
    with out.open("w", encoding="utf-8") as fh:
        for line in lines:
            fh.write(json.dumps(line, ensure_ascii=False) + "\n")
    return len(lines)


# ---------------------------------------------------------------------------------------------------
# comparison


def _load_bench_module(name: str) -> ModuleType:
    """Import a sibling bench script by path (bench/ is not a package)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {BENCH / name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


#: (label, path into a score() result, "pct" share or "count")
METRICS: list[tuple[str, tuple[str, ...], str]] = [
    ("log precision", ("log", "precision"), "pct"),
    ("log recall", ("log", "recall"), "pct"),
    ("privacy leaks", ("leaks",), "count"),
    ("duplicates", ("duplicates",), "count"),
    ("unmatched export lines", ("log", "extras"), "count"),
    ("contact precision", ("contacts", "precision"), "pct"),
    ("contact recall", ("contacts", "recall"), "pct"),
    ("contact F1", ("contacts", "f1"), "pct"),
    ("company precision", ("companies", "precision"), "pct"),
    ("company recall", ("companies", "recall"), "pct"),
    ("company F1", ("companies", "f1"), "pct"),
    ("deal precision", ("deal", "precision"), "pct"),
    ("deal recall", ("deal", "recall"), "pct"),
    ("ambiguous left without deal", ("ambiguous", "share_without_deal"), "pct"),
    ("meetings exactly once", ("meetings", "share_exactly_once"), "pct"),
]


def _get(result: dict[str, Any], path: tuple[str, ...]) -> float | None:
    value: Any = result
    for part in path:
        value = value[part]
    return None if value is None else float(value)


def compare(baseline: dict[str, Any], inkless: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per headline metric: both values and inkless − baseline (None when either is n/a)."""
    rows = []
    for label, path, unit in METRICS:
        b, i = _get(baseline, path), _get(inkless, path)
        diff = None if b is None or i is None else i - b
        rows.append({"metric": label, "unit": unit, "baseline": b, "inkless": i, "difference": diff})
    return rows


def _fmt(value: float | None, unit: str, signed: bool = False) -> str:
    if value is None:
        return "n/a"
    if unit == "pct":
        return f"{100 * value:+.1f} pp" if signed else f"{100 * value:.1f}%"
    return f"{value:+.0f}" if signed else f"{value:.0f}"


def _render(heads: list[str], table: list[list[str]]) -> list[str]:
    """Aligned text columns: the first left-aligned, the others right-aligned."""
    widths = [max([len(h), *(len(r[n]) for r in table)]) for n, h in enumerate(heads)]

    def row(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if n == 0 else c.rjust(w) for n, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    return [row(heads), "  ".join("-" * w for w in widths), *(row(r) for r in table)]


def format_table(rows: list[dict[str, Any]]) -> str:
    """The headline metrics side by side, with inkless − baseline (percentage points for shares)."""
    table = [
        [
            r["metric"],
            _fmt(r["baseline"], r["unit"]),
            _fmt(r["inkless"], r["unit"]),
            _fmt(r["difference"], r["unit"], signed=True),
        ]
        for r in rows
    ]
    return "\n".join(_render(["metric", "baseline", "inkless", "inkless − baseline"], table))


def format_families(baseline: dict[str, Any], inkless: dict[str, Any]) -> str:
    """Per truth family, baseline / inkless: where the headline difference comes from."""
    fields = [("log_recall", "pct"), ("leaks", "count"), ("contact_f1", "pct"), ("deal_recall", "pct")]
    table = []
    for fam, b in baseline["per_family"].items():
        i = inkless["per_family"].get(fam, {})
        table.append([fam, str(b["items"]), *(f"{_fmt(b[f], u)} / {_fmt(i.get(f), u)}" for f, u in fields)])
    heads = ["family (baseline / inkless)", "items", "log R", "leaks", "contact F1", "deal R"]
    return "\n".join(_render(heads, table))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("corpus", type=Path)
    ap.add_argument("--inkless-activities", type=Path, help="an inkless activities export (default: run inkless)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    score = _load_bench_module("score_synthetic").score
    with tempfile.TemporaryDirectory() as tmp:
        base_path = Path(tmp) / "baseline.jsonl"
        baseline_export(args.corpus, base_path)
        baseline = score(args.corpus, base_path)
        if args.inkless_activities is not None:
            inkless = score(args.corpus, args.inkless_activities)
        else:
            run = _load_bench_module("run_synthetic").run
            out_dir = Path(tmp) / "inkless"
            out_dir.mkdir()
            inkless = run(args.corpus, f"sqlite:///{Path(tmp) / 'inkless.db'}", out_dir)
    rows = compare(baseline, inkless)
    if args.json:
        report = {"corpus": str(args.corpus), "metrics": rows, "baseline": baseline, "inkless": inkless}
        print(json.dumps(report, indent=2))
        return
    print(f"exact-email baseline vs inkless — {args.corpus}")
    print(
        f"export lines: baseline {baseline['export_lines']}, inkless {inkless['export_lines']}"
        f"   truth items: {baseline['truth_items']}"
    )
    print()
    print(format_table(rows))
    print()
    print(format_families(baseline, inkless))


if __name__ == "__main__":
    main()
