"""Score an inkless export against the ground truth of a synthetic corpus.

Usage::

    python bench/score_synthetic.py CORPUS_DIR --activities acts.jsonl [--entities ents.jsonl] [--json]

CORPUS_DIR is a corpus such as ``synthetic-dev/small`` (it holds ``truth/activities.jsonl`` and
``truth/entities.jsonl``). The activities/entities files are the output of
``inkless export activities|entities --format jsonl`` (DESIGN.md, "Export format").

What is computed follows the corpus README ("Scoring"):

* Export lines are matched to truth items: emails by any of their ``message_ids`` (exact, but angle
  brackets and surrounding whitespace are ignored), meetings by ``(ical_uid, recurrence_id)`` with the
  recurrence id compared in UTC to the minute (null matches null). Export lines matching no truth item
  are "unmatched extras" and are reported (they are not in the log precision, which is over the truth
  ``log`` flag; ``precision_with_extras`` counts them as false positives too).
* log precision/recall, privacy leaks (truth ``log=false`` items exported), duplicates (truth items
  matched by more than one line).
* contacts / companies precision, recall, F1 over (item, id) pairs of truth ``log=true`` items. An
  exported contact is identified by its ``crm_id`` or else ``"email:" + lower(email)``; exported
  companies with a null ``crm_id`` are not scored but counted.
* deal precision over predicted deals (a deal on an ``ambiguous_deal`` item is always wrong), deal
  recall over truth deals, share of exported ambiguous items left without a deal.
* per-family breakdown, meetings exported exactly once, exact-family items whose contacts were all
  found, and (with --entities) last_contact_at / next_meeting_at agreement to the second.

It is a measurement tool: the exit code is 0 whatever the scores, 2 when an input cannot be read.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

ENTITY_TYPES = ("contact", "company", "deal")
ENTITY_FIELDS = ("last_contact_at", "next_meeting_at")
SAMPLE_LIMIT = 5


class ScoreInputError(Exception):
    """An input file is missing, unreadable or not the expected JSONL."""


# ---------------------------------------------------------------------------------------------------
# normalisation helpers


def norm_message_id(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    mid = value.strip()
    mid = mid.removeprefix("<")
    mid = mid.removesuffix(">")
    mid = mid.strip()
    return mid or None


def parse_instant(value: Any) -> datetime | None:
    """Parse an ISO 8601 instant (``Z`` or an offset; naive means UTC; a bare date is midnight UTC)."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"not an ISO 8601 timestamp: {value!r}")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        parsed_date = date.fromisoformat(text)  # raises ValueError with its own message
        parsed = datetime(parsed_date.year, parsed_date.month, parsed_date.day)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def to_minute(value: Any) -> str | None:
    instant = parse_instant(value)
    return None if instant is None else instant.strftime("%Y-%m-%dT%H:%MZ")


def to_second(value: Any) -> str | None:
    instant = parse_instant(value)
    return None if instant is None else instant.strftime("%Y-%m-%dT%H:%M:%SZ")


def contact_key(contact: Any) -> str | None:
    """The scoring id of an exported contact: its crm_id, else ``email:<lower(email)>``."""
    if isinstance(contact, str):  # tolerate a bare id or address
        contact = {"crm_id": contact} if "@" not in contact else {"crm_id": None, "email": contact}
    if not isinstance(contact, dict):
        return None
    crm_id = contact.get("crm_id")
    if crm_id not in (None, ""):
        return str(crm_id).strip()
    email = contact.get("email")
    if isinstance(email, str) and email.strip():
        return "email:" + email.strip().lower()
    return None


def truth_contact_key(value: str) -> str:
    value = value.strip()
    if value.lower().startswith("email:"):
        return "email:" + value[len("email:") :].strip().lower()
    return value


def safe_div(num: float, den: float) -> float | None:
    return None if den == 0 else num / den


def prf(tp: int, fp: int, fn: int) -> dict[str, Any]:
    precision = safe_div(tp, tp + fp)
    recall = safe_div(tp, tp + fn)
    if precision is None or recall is None or precision + recall == 0:
        f1 = None if precision is None or recall is None else 0.0
    else:
        f1 = 2 * precision * recall / (precision + recall)
    return {"tp": tp, "fp": fp, "fn": fn, "precision": precision, "recall": recall, "f1": f1}


# ---------------------------------------------------------------------------------------------------
# loading


def read_jsonl(path: Path, what: str) -> list[tuple[int, dict[str, Any]]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScoreInputError(f"cannot read {what} file {path}: {exc}") from exc
    rows: list[tuple[int, dict[str, Any]]] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ScoreInputError(f"{path}:{lineno}: {what} line is not JSON ({exc.msg})") from exc
        if not isinstance(obj, dict):
            raise ScoreInputError(f"{path}:{lineno}: {what} line is not a JSON object")
        rows.append((lineno, obj))
    return rows


@dataclass
class TruthItem:
    index: int
    kind: str
    key: str  # message id (normalised) or "uid|minute"
    log: bool
    contacts: frozenset[str]
    companies: frozenset[str]
    deal: str | None
    ambiguous: bool
    family: tuple[str, ...]
    raw: dict[str, Any]


@dataclass
class ExportLine:
    lineno: int
    kind: str
    contacts: frozenset[str]
    companies: frozenset[str]
    companies_without_id: int
    contacts_without_key: int
    deal: str | None
    status: str | None
    matches: list[int] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)


def meeting_key(uid: Any, recurrence_id: Any) -> str:
    return f"{str(uid).strip()}|{to_minute(recurrence_id) or 'null'}"


def load_truth(corpus_dir: Path) -> list[TruthItem]:
    path = corpus_dir / "truth" / "activities.jsonl"
    if not path.is_file():
        raise ScoreInputError(f"no truth file at {path} (is {corpus_dir} a corpus directory?)")
    items: list[TruthItem] = []
    for lineno, obj in read_jsonl(path, "truth"):
        try:
            kind = obj["kind"]
            if kind == "email":
                key = norm_message_id(obj["message_id"])
                if key is None:
                    raise ValueError("empty message_id")
            elif kind == "meeting":
                key = meeting_key(obj["ical_uid"], obj.get("recurrence_id"))
            else:
                raise ValueError(f"unknown kind {kind!r}")
            items.append(
                TruthItem(
                    index=len(items),
                    kind=kind,
                    key=key,
                    log=bool(obj["log"]),
                    contacts=frozenset(truth_contact_key(c) for c in obj.get("contacts") or []),
                    companies=frozenset(str(c).strip() for c in obj.get("companies") or []),
                    deal=obj.get("deal") or None,
                    ambiguous=bool(obj.get("ambiguous_deal")),
                    family=tuple(obj.get("family") or []),
                    raw=obj,
                )
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ScoreInputError(f"{path}:{lineno}: malformed truth line ({exc})") from exc
    return items


def parse_export_line(path: Path, lineno: int, obj: dict[str, Any]) -> tuple[ExportLine, list[str]]:
    """Return the line and the truth keys it can match."""
    kind = obj.get("kind")
    if kind not in ("email", "meeting"):
        kind = "meeting" if obj.get("ical_uid") else "email"
    keys: list[str] = []
    try:
        if kind == "email":
            ids = obj.get("message_ids")
            if ids is None and "message_id" in obj:
                ids = [obj["message_id"]]
            if isinstance(ids, str):
                ids = [ids]
            for mid in ids or []:
                norm = norm_message_id(mid)
                if norm is not None and norm not in keys:
                    keys.append(norm)
        elif obj.get("ical_uid"):
            keys.append(meeting_key(obj["ical_uid"], obj.get("recurrence_id")))
    except ValueError as exc:
        raise ScoreInputError(f"{path}:{lineno}: bad recurrence_id ({exc})") from exc

    contacts: set[str] = set()
    contacts_without_key = 0
    for contact in obj.get("contacts") or []:
        ckey = contact_key(contact)
        if ckey is None:
            contacts_without_key += 1
        else:
            contacts.add(ckey)
    companies: set[str] = set()
    companies_without_id = 0
    for company in obj.get("companies") or []:
        crm_id = company.get("crm_id") if isinstance(company, dict) else company
        if crm_id in (None, ""):
            companies_without_id += 1
        else:
            companies.add(str(crm_id).strip())
    deal_obj = obj.get("deal")
    if isinstance(deal_obj, dict):
        deal = deal_obj.get("crm_id") or None
    elif isinstance(deal_obj, str):
        deal = deal_obj or None
    else:
        deal = None
    line = ExportLine(
        lineno=lineno,
        kind=kind,
        contacts=frozenset(contacts),
        companies=frozenset(companies),
        companies_without_id=companies_without_id,
        contacts_without_key=contacts_without_key,
        deal=str(deal) if deal is not None else None,
        status=obj.get("status"),
        raw=obj,
    )
    return line, keys


# ---------------------------------------------------------------------------------------------------
# scoring


def _describe_line(line: ExportLine) -> dict[str, Any]:
    raw = line.raw
    out: dict[str, Any] = {"line": line.lineno, "kind": line.kind}
    if line.kind == "email":
        out["message_ids"] = raw.get("message_ids")
    else:
        out["ical_uid"] = raw.get("ical_uid")
        out["recurrence_id"] = raw.get("recurrence_id")
    out["subject"] = raw.get("subject")
    return out


def _truth_ref(item: TruthItem) -> str:
    if item.kind == "email":
        return f"<{item.key}>"
    uid, minute = item.key.split("|", 1)
    return f"{uid} @ {minute}"


def score(corpus_dir: Path, activities_jsonl: Path, entities_jsonl: Path | None = None) -> dict[str, Any]:
    """Score an activities export (and optionally an entities export) against ``corpus_dir``'s truth.

    Raises ScoreInputError when a file cannot be read or parsed.
    """
    corpus_dir = Path(corpus_dir)
    truth = load_truth(corpus_dir)
    by_key: dict[tuple[str, str], int] = {}
    for item in truth:
        by_key.setdefault((item.kind, item.key), item.index)

    lines: list[ExportLine] = []
    for lineno, obj in read_jsonl(Path(activities_jsonl), "activities export"):
        line, keys = parse_export_line(Path(activities_jsonl), lineno, obj)
        for key in keys:
            idx = by_key.get((line.kind, key))
            if idx is not None and idx not in line.matches:
                line.matches.append(idx)
        lines.append(line)

    matched_by: dict[int, list[ExportLine]] = defaultdict(list)
    for line in lines:
        for idx in line.matches:
            matched_by[idx].append(line)

    # per item predictions (union over every line that matched it)
    pred_contacts: dict[int, set[str]] = {}
    pred_companies: dict[int, set[str]] = {}
    pred_deals: dict[int, set[str]] = {}
    for idx, its_lines in matched_by.items():
        pred_contacts[idx] = set().union(*(ln.contacts for ln in its_lines))
        pred_companies[idx] = set().union(*(ln.companies for ln in its_lines))
        pred_deals[idx] = {ln.deal for ln in its_lines if ln.deal is not None}

    def item_stats(items: list[TruthItem]) -> dict[str, Any]:
        positives = [t for t in items if t.log]
        negatives = [t for t in items if not t.log]
        tp = sum(1 for t in positives if t.index in matched_by)
        leaks = [t for t in negatives if t.index in matched_by]
        contact_counts = [0, 0, 0]
        company_counts = [0, 0, 0]
        deal_predicted = deal_correct = deal_truth = deal_recalled = 0
        amb_exported = amb_without = 0
        for t in positives:
            pc = pred_contacts.get(t.index, set())
            contact_counts[0] += len(pc & t.contacts)
            contact_counts[1] += len(pc - t.contacts)
            contact_counts[2] += len(t.contacts - pc)
            pco = pred_companies.get(t.index, set())
            company_counts[0] += len(pco & t.companies)
            company_counts[1] += len(pco - t.companies)
            company_counts[2] += len(t.companies - pco)
            deals = pred_deals.get(t.index, set())
            right = (not t.ambiguous) and t.deal is not None and deals == {t.deal}
            if deals:
                deal_predicted += 1
                deal_correct += int(right)
            if t.deal is not None:
                deal_truth += 1
                deal_recalled += int(right)
            if t.ambiguous and t.index in matched_by:
                amb_exported += 1
                amb_without += int(not deals)
        return {
            "items": len(items),
            "truth_log": len(positives),
            "truth_skip": len(negatives),
            "exported": sum(1 for t in items if t.index in matched_by),
            "log": {
                "tp": tp,
                "fn": len(positives) - tp,
                "leaks": len(leaks),
                "precision": safe_div(tp, tp + len(leaks)),
                "recall": safe_div(tp, len(positives)),
            },
            "leaks": len(leaks),
            "duplicates": sum(1 for t in items if len(matched_by.get(t.index, ())) > 1),
            "contacts": prf(*contact_counts),
            "companies": prf(*company_counts),
            "deal": {
                "predicted": deal_predicted,
                "correct": deal_correct,
                "precision": safe_div(deal_correct, deal_predicted),
                "truth": deal_truth,
                "recalled": deal_recalled,
                "recall": safe_div(deal_recalled, deal_truth),
            },
            "ambiguous": {
                "exported": amb_exported,
                "without_deal": amb_without,
                "share_without_deal": safe_div(amb_without, amb_exported),
            },
        }

    overall = item_stats(truth)
    extras = [ln for ln in lines if not ln.matches]
    overall["log"]["extras"] = len(extras)
    overall["log"]["precision_with_extras"] = safe_div(
        overall["log"]["tp"], overall["log"]["tp"] + overall["log"]["leaks"] + len(extras)
    )

    families: dict[str, list[TruthItem]] = defaultdict(list)
    for item in truth:
        for fam in item.family:
            families[fam].append(item)
    per_family = {}
    for fam in sorted(families):
        stats = item_stats(families[fam])
        per_family[fam] = {
            "items": stats["items"],
            "truth_log": stats["truth_log"],
            "truth_skip": stats["truth_skip"],
            "exported": stats["exported"],
            "log_recall": stats["log"]["recall"],
            "leaks": stats["leaks"],
            "duplicates": stats["duplicates"],
            "contact_f1": stats["contacts"]["f1"],
            "company_f1": stats["companies"]["f1"],
            "deal_precision": stats["deal"]["precision"],
            "deal_recall": stats["deal"]["recall"],
        }

    per_kind = {}
    for kind in ("email", "meeting"):
        stats = item_stats([t for t in truth if t.kind == kind])
        stats["extras"] = sum(1 for ln in extras if ln.kind == kind)
        per_kind[kind] = stats

    meeting_pos = [t for t in truth if t.kind == "meeting" and t.log]
    meetings: dict[str, Any] = {
        "truth_log": len(meeting_pos),
        "exported_exactly_once": sum(1 for t in meeting_pos if len(matched_by.get(t.index, ())) == 1),
        "missing": sum(1 for t in meeting_pos if t.index not in matched_by),
        "duplicated": sum(1 for t in meeting_pos if len(matched_by.get(t.index, ())) > 1),
    }
    meetings["share_exactly_once"] = safe_div(meetings["exported_exactly_once"], len(meeting_pos))

    exact_items = [t for t in truth if t.log and "exact" in t.family]
    exact_found = sum(1 for t in exact_items if t.contacts <= pred_contacts.get(t.index, set()))
    exact_family = {
        "items": len(exact_items),
        "all_contacts_found": exact_found,
        "share": safe_div(exact_found, len(exact_items)),
    }

    leaks_sample = [
        {
            "truth": _truth_ref(t),
            "family": list(t.family),
            "export_lines": [ln.lineno for ln in matched_by[t.index]],
        }
        for t in truth
        if not t.log and t.index in matched_by
    ][:SAMPLE_LIMIT]
    dup_sample = [
        {"truth": _truth_ref(t), "export_lines": [ln.lineno for ln in matched_by[t.index]]}
        for t in truth
        if len(matched_by.get(t.index, ())) > 1
    ][:SAMPLE_LIMIT]

    result: dict[str, Any] = {
        "corpus": str(corpus_dir),
        "activities_file": str(activities_jsonl),
        "export_lines": len(lines),
        "export_status": dict(Counter(str(ln.status) for ln in lines)),
        "truth_items": len(truth),
        "log": overall["log"],
        "leaks": overall["leaks"],
        "duplicates": overall["duplicates"],
        "unmatched_extras": {
            "count": len(extras),
            "by_kind": dict(Counter(ln.kind for ln in extras)),
            "sample": [_describe_line(ln) for ln in extras[:SAMPLE_LIMIT]],
        },
        "contacts": overall["contacts"],
        "companies": overall["companies"],
        "companies_without_crm_id": sum(ln.companies_without_id for ln in lines),
        "contacts_without_id_or_email": sum(ln.contacts_without_key for ln in lines),
        "deal": overall["deal"],
        "ambiguous": overall["ambiguous"],
        "meetings": meetings,
        "exact_family_contacts_found": exact_family,
        "per_kind": per_kind,
        "per_family": per_family,
        "samples": {"leaks": leaks_sample, "duplicates": dup_sample},
    }
    if entities_jsonl is not None:
        result["entities"] = score_entities(corpus_dir, Path(entities_jsonl))
    return result


def _entity_type(value: Any) -> str:
    text = str(value or "").strip().lower()
    return {"contacts": "contact", "companies": "company", "deals": "deal"}.get(text, text)


def score_entities(corpus_dir: Path, entities_jsonl: Path) -> dict[str, Any]:
    truth_path = corpus_dir / "truth" / "entities.jsonl"
    if not truth_path.is_file():
        raise ScoreInputError(f"no entity truth at {truth_path}")
    truth: dict[tuple[str, str], dict[str, Any]] = {}
    for lineno, obj in read_jsonl(truth_path, "entity truth"):
        try:
            truth[(_entity_type(obj["type"]), str(obj["crm_id"]))] = obj
        except KeyError as exc:
            raise ScoreInputError(f"{truth_path}:{lineno}: malformed entity truth line ({exc})") from exc
    exported: dict[tuple[str, str], tuple[int, dict[str, Any]]] = {}
    for lineno, obj in read_jsonl(entities_jsonl, "entities export"):
        crm_id = obj.get("crm_id")
        if crm_id in (None, ""):
            continue  # suggested contacts that are not in the CRM have no truth row
        exported.setdefault((_entity_type(obj.get("type")), str(crm_id)), (lineno, obj))

    out: dict[str, Any] = {}
    for etype in ENTITY_TYPES:
        keys = [k for k in truth if k[0] == etype]
        missing = [k for k in keys if k not in exported]
        entry: dict[str, Any] = {"truth": len(keys), "missing_from_export": len(missing)}
        for fld in ENTITY_FIELDS:
            agree = 0
            mismatches: list[dict[str, Any]] = []
            for key in keys:
                want_raw = truth[key].get(fld)
                got_raw = exported[key][1].get(fld) if key in exported else None
                try:
                    want = to_second(want_raw)
                    got = to_second(got_raw)
                except ValueError as exc:
                    where = f"{entities_jsonl}:{exported[key][0]}" if key in exported else str(entities_jsonl)
                    raise ScoreInputError(f"{where}: bad {fld} ({exc})") from exc
                if want == got:
                    agree += 1
                elif len(mismatches) < SAMPLE_LIMIT:
                    mismatches.append({"crm_id": key[1], "truth": want, "export": got, "in_export": key in exported})
            entry[fld] = {"agree": agree, "rate": safe_div(agree, len(keys)), "sample_mismatches": mismatches}
        out[etype] = entry
    out["export_rows"] = len(exported)
    out["export_rows_not_in_truth"] = sum(1 for k in exported if k not in truth)
    return out


# ---------------------------------------------------------------------------------------------------
# report


def _pct(value: float | None) -> str:
    return "   n/a" if value is None else f"{100 * value:5.1f}%"


def _table(headers: list[str], rows: list[list[str]], left: tuple[int, ...] = (0,)) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    fmt = "  ".join(f"{{:<{w}}}" if i in left else f"{{:>{w}}}" for i, w in enumerate(widths))
    out = [fmt.format(*headers).rstrip(), "  ".join("-" * w for w in widths)]
    out.extend(fmt.format(*r).rstrip() for r in rows)
    return out


def format_report(result: dict[str, Any]) -> str:
    log = result["log"]
    status = ", ".join(f"{k}={v}" for k, v in sorted(result["export_status"].items())) or "-"
    out: list[str] = [
        f"inkless synthetic score — {result['corpus']}",
        f"export lines: {result['export_lines']}   truth items: {result['truth_items']}   status: {status}",
        "",
    ]
    c, co, d, a = result["contacts"], result["companies"], result["deal"], result["ambiguous"]
    m, ex = result["meetings"], result["exact_family_contacts_found"]
    rows = [
        [
            "log precision",
            _pct(log["precision"]),
            f"{log['tp']} logged / {log['tp'] + log['leaks']} exported truth items",
        ],
        [
            "log precision incl. extras",
            _pct(log["precision_with_extras"]),
            f"{log['extras']} unmatched export lines",
        ],
        ["log recall", _pct(log["recall"]), f"{log['tp']} / {log['tp'] + log['fn']}"],
        ["privacy leaks", str(result["leaks"]), "truth log=false items exported"],
        ["duplicates", str(result["duplicates"]), "truth items matched by >1 line"],
        [
            "contacts P / R / F1",
            f"{_pct(c['precision'])} {_pct(c['recall'])} {_pct(c['f1'])}",
            f"tp={c['tp']} fp={c['fp']} fn={c['fn']}",
        ],
        [
            "companies P / R / F1",
            f"{_pct(co['precision'])} {_pct(co['recall'])} {_pct(co['f1'])}",
            f"tp={co['tp']} fp={co['fp']} fn={co['fn']}; {result['companies_without_crm_id']} without crm_id",
        ],
        ["deal precision", _pct(d["precision"]), f"{d['correct']} / {d['predicted']} predicted"],
        ["deal recall", _pct(d["recall"]), f"{d['recalled']} / {d['truth']} truth deals"],
        [
            "ambiguous left without deal",
            _pct(a["share_without_deal"]),
            f"{a['without_deal']} / {a['exported']} exported",
        ],
        [
            "meetings exported exactly once",
            _pct(m["share_exactly_once"]),
            f"{m['exported_exactly_once']} / {m['truth_log']} (missing {m['missing']}, duplicated {m['duplicated']})",
        ],
        [
            "exact-family contacts found",
            _pct(ex["share"]),
            f"{ex['all_contacts_found']} / {ex['items']} items",
        ],
    ]
    out += _table(["metric", "value", "detail"], rows, left=(0, 2))

    out += ["", "per kind"]
    kind_rows = []
    for kind, s in result["per_kind"].items():
        kind_rows.append(
            [
                kind,
                str(s["truth_log"]),
                str(s["exported"]),
                _pct(s["log"]["precision"]),
                _pct(s["log"]["recall"]),
                str(s["leaks"]),
                str(s["duplicates"]),
                str(s["extras"]),
                _pct(s["contacts"]["f1"]),
                _pct(s["deal"]["precision"]),
                _pct(s["deal"]["recall"]),
            ]
        )
    out += _table(
        [
            "kind",
            "log",
            "exported",
            "log P",
            "log R",
            "leaks",
            "dups",
            "extras",
            "contact F1",
            "deal P",
            "deal R",
        ],
        kind_rows,
    )

    out += ["", "per family"]
    fam_rows = []
    for fam, s in result["per_family"].items():
        fam_rows.append(
            [
                fam,
                str(s["items"]),
                str(s["truth_log"]),
                _pct(s["log_recall"]),
                str(s["leaks"]),
                str(s["duplicates"]),
                _pct(s["contact_f1"]),
                _pct(s["deal_precision"]),
                _pct(s["deal_recall"]),
            ]
        )
    out += _table(["family", "items", "log", "log R", "leaks", "dups", "contact F1", "deal P", "deal R"], fam_rows)

    samples = result["samples"]
    if samples["leaks"]:
        out += ["", "sample leaks"]
        out += [f"  {s['truth']}  {','.join(s['family'])}  (export line {s['export_lines']})" for s in samples["leaks"]]
    if samples["duplicates"]:
        out += ["", "sample duplicates"]
        out += [f"  {s['truth']}  (export lines {s['export_lines']})" for s in samples["duplicates"]]
    extras = result["unmatched_extras"]
    if extras["count"]:
        out += ["", f"sample unmatched export lines ({extras['count']})"]
        for s in extras["sample"]:
            ident = s.get("message_ids") if s["kind"] == "email" else f"{s.get('ical_uid')} @ {s.get('recurrence_id')}"
            out.append(f"  line {s['line']} {s['kind']}: {ident}  {s.get('subject') or ''}".rstrip())

    ents = result.get("entities")
    if ents is not None:
        out += ["", "entities (agreement to the second, null == null; missing rows count as null)"]
        ent_rows = []
        for etype in ENTITY_TYPES:
            e = ents[etype]
            ent_rows.append(
                [
                    etype,
                    str(e["truth"]),
                    str(e["missing_from_export"]),
                    _pct(e["last_contact_at"]["rate"]),
                    _pct(e["next_meeting_at"]["rate"]),
                ]
            )
        out += _table(["type", "truth", "missing", "last_contact_at", "next_meeting_at"], ent_rows)
        for etype in ENTITY_TYPES:
            for fld in ENTITY_FIELDS:
                for mm in ents[etype][fld]["sample_mismatches"]:
                    out.append(
                        f"  {etype} {mm['crm_id']} {fld}: truth {mm['truth']} export {mm['export']}"
                        + ("" if mm["in_export"] else " (not in export)")
                    )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Score an inkless JSONL export against a synthetic corpus's ground truth."
    )
    parser.add_argument("corpus_dir", type=Path, help="corpus directory holding truth/activities.jsonl")
    parser.add_argument("--activities", type=Path, required=True, help="inkless export activities (JSONL)")
    parser.add_argument("--entities", type=Path, default=None, help="inkless export entities (JSONL)")
    parser.add_argument("--json", action="store_true", help="print the scores as one JSON object")
    args = parser.parse_args(argv)
    try:
        result = score(args.corpus_dir, args.activities, args.entities)
    except ScoreInputError as exc:
        print(f"score_synthetic: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result, indent=2, sort_keys=True))
    else:
        print(format_report(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
