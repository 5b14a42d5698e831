"""Pins the metrics of bench/score_synthetic.py on a tiny hand-made truth and export."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import pytest

SCORER_PATH = Path(__file__).resolve().parents[1] / "bench" / "score_synthetic.py"


def _load_scorer() -> Any:
    spec = importlib.util.spec_from_file_location("score_synthetic", SCORER_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


scorer = _load_scorer()


def _email(mid: str, log: bool, family: list[str], contacts=(), companies=(), deal=None, ambiguous=False):
    return {
        "kind": "email",
        "message_id": mid,
        "occurred_at": "2026-06-01T10:00:00Z",
        "log": log,
        "contacts": list(contacts),
        "companies": list(companies),
        "deal": deal,
        "ambiguous_deal": ambiguous,
        "family": family,
    }


def _meeting(uid: str, rid: str | None, family: list[str], contacts=(), companies=(), deal=None, log=True):
    return {
        "kind": "meeting",
        "ical_uid": uid,
        "recurrence_id": rid,
        "start": rid or "2026-06-02T09:00:00Z",
        "log": log,
        "contacts": list(contacts),
        "companies": list(companies),
        "deal": deal,
        "ambiguous_deal": False,
        "family": family,
    }


TRUTH = [
    _email("<e1@acme.com>", True, ["exact", "unknown-at-company"], ["c1", "email:new@acme.com"], ["co1"], "d1"),
    _email("<e2@news.example>", False, ["newsletter"]),
    _email("<e3@acme.com>", True, ["ambiguous-deal"], ["c2"], ["co1"], None, ambiguous=True),
    _email("<e4@globex.com>", True, ["exact"], ["c3"], ["co2"], "d2"),
    _email("<e5@initech.com>", True, ["exact", "alias-normalise"], ["c4"], ["co3"]),
    _email("<e6@acme.com>", True, ["ambiguous-deal"], ["c2"], ["co1"], None, ambiguous=True),
    _meeting("u1@cal", "2026-06-01T06:00:00Z", ["meeting-external", "meeting-recurring"], ["c1"], ["co1"], "d1"),
    _meeting("u2@cal", None, ["meeting-external"], ["c5"], ["co2"], "d3"),
]


def _contact(crm_id: str | None, email: str = "someone@example.com") -> dict[str, Any]:
    return {"crm_id": crm_id, "email": email, "name": None}


def _company(crm_id: str | None, domain: str | None = None) -> dict[str, Any]:
    return {"crm_id": crm_id, "domain": domain, "name": None}


def _line(kind: str, contacts=(), companies=(), deal: str | None = None, **ident: Any) -> dict[str, Any]:
    line = {
        "kind": kind,
        "message_ids": [],
        "ical_uid": None,
        "recurrence_id": None,
        "occurred_at": "2026-06-01T10:00:00Z",
        "subject": "s",
        "contacts": list(contacts),
        "companies": list(companies),
        "deal": {"crm_id": deal, "name": deal} if deal else None,
        "status": "auto",
        "confidence": 0.9,
        "evidence": [],
    }
    line.update(ident)
    return line


EXPORT = [
    # e1: id without angle brackets and with whitespace; unknown person by address (case-folded);
    # a company without crm_id is not scored but counted
    _line(
        "email",
        [_contact("c1"), _contact(None, "New@Acme.COM")],
        [_company("co1"), _company(None, "acme-partner.com")],
        "d1",
        message_ids=["  e1@acme.com "],
    ),
    # e2 is a newsletter: a privacy leak
    _line("email", [_contact("c7")], [_company("co7")], message_ids=["<e2@news.example>"]),
    # e3 is ambiguous: any deal is wrong
    _line("email", [_contact("c2")], [_company("co1")], "d1", message_ids=["<e3@acme.com>"]),
    # e4 twice: one duplicate, one wrong extra contact
    _line("email", [_contact("c3")], [_company("co2")], "d2", message_ids=["<e4@globex.com>"]),
    _line("email", [_contact("c9")], [_company("co2")], "d2", message_ids=["<e4@globex.com>", "<nope@x>"]),
    # e5 not exported; e6 ambiguous and rightly left without a deal
    _line("email", [_contact("c2")], [_company("co1")], None, message_ids=["<e6@acme.com>"]),
    # m1: same instant given in +02:00 with seconds, still the same minute
    _line(
        "meeting",
        [_contact("c1")],
        [_company("co1")],
        "d1",
        ical_uid="u1@cal",
        recurrence_id="2026-06-01T08:00:59+02:00",
    ),
    # m2: non-recurring (null == null), wrong contact, wrong company, no deal
    _line("meeting", [_contact("c6")], [_company("co9")], None, ical_uid="u2@cal", recurrence_id=None),
    # matches nothing
    _line("email", [_contact("c1")], [_company("co1")], message_ids=["<unknown@acme.com>"]),
]


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    corpus_dir = tmp_path / "corpus"
    _write_jsonl(corpus_dir / "truth" / "activities.jsonl", TRUTH)
    _write_jsonl(
        corpus_dir / "truth" / "entities.jsonl",
        [
            {
                "type": "contact",
                "crm_id": "c1",
                "last_contact_at": "2026-06-01T06:00:00Z",
                "next_meeting_at": None,
            },
            {
                "type": "contact",
                "crm_id": "c2",
                "last_contact_at": "2026-06-01T10:00:00Z",
                "next_meeting_at": "2026-12-01T09:00:00Z",
            },
            {"type": "company", "crm_id": "co1", "last_contact_at": None, "next_meeting_at": None},
            {
                "type": "deal",
                "crm_id": "d1",
                "last_contact_at": "2026-06-01T06:00:00Z",
                "next_meeting_at": None,
            },
        ],
    )
    return corpus_dir


@pytest.fixture
def result(corpus: Path, tmp_path: Path) -> dict[str, Any]:
    acts = _write_jsonl(tmp_path / "acts.jsonl", EXPORT)
    return scorer.score(corpus, acts, None)


def test_log_precision_recall_counts_truth_flag_and_reports_extras(result: dict[str, Any]) -> None:
    log = result["log"]
    assert (log["tp"], log["fn"], log["leaks"], log["extras"]) == (6, 1, 1, 1)
    assert log["precision"] == pytest.approx(6 / 7)
    assert log["recall"] == pytest.approx(6 / 7)
    assert log["precision_with_extras"] == pytest.approx(6 / 8)
    assert result["unmatched_extras"]["count"] == 1
    assert result["unmatched_extras"]["sample"][0]["message_ids"] == ["<unknown@acme.com>"]


def test_newsletter_export_is_counted_as_privacy_leak(result: dict[str, Any]) -> None:
    assert result["leaks"] == 1
    assert result["per_family"]["newsletter"]["leaks"] == 1
    assert result["samples"]["leaks"][0]["truth"] == "<e2@news.example>"


def test_item_matched_by_two_lines_is_one_duplicate(result: dict[str, Any]) -> None:
    assert result["duplicates"] == 1
    assert result["samples"]["duplicates"][0]["export_lines"] == [4, 5]


def test_contact_f1_over_item_id_pairs_with_email_ids(result: dict[str, Any]) -> None:
    # truth pairs: e1 {c1, email:new@acme.com}, e3 {c2}, e4 {c3}, e5 {c4}, e6 {c2}, m1 {c1}, m2 {c5} = 8
    # predicted: e1 2 right, e3 right, e4 c3 right + c9 wrong, e6 right, m1 right, m2 c6 wrong; leak e2 not scored
    c = result["contacts"]
    assert (c["tp"], c["fp"], c["fn"]) == (6, 2, 2)
    assert c["precision"] == pytest.approx(0.75)
    assert c["recall"] == pytest.approx(0.75)
    assert c["f1"] == pytest.approx(0.75)
    assert result["per_family"]["unknown-at-company"]["contact_f1"] == pytest.approx(1.0)


def test_companies_with_null_crm_id_are_counted_not_scored(result: dict[str, Any]) -> None:
    co = result["companies"]
    assert (co["tp"], co["fp"], co["fn"]) == (5, 1, 2)
    assert result["companies_without_crm_id"] == 1


def test_ambiguous_item_with_any_deal_counts_wrong(result: dict[str, Any]) -> None:
    deal = result["deal"]
    # predicted deals: e1 d1 ok, e3 d1 (ambiguous: wrong), e4 d2 ok, m1 d1 ok
    assert (deal["predicted"], deal["correct"]) == (4, 3)
    assert deal["precision"] == pytest.approx(0.75)
    # truth deals: e1, e4, m1, m2 (m2 exported without its deal)
    assert (deal["truth"], deal["recalled"]) == (4, 3)
    assert deal["recall"] == pytest.approx(0.75)
    assert result["ambiguous"] == {"exported": 2, "without_deal": 1, "share_without_deal": 0.5}
    assert result["per_family"]["ambiguous-deal"]["deal_precision"] == 0.0


def test_meeting_matches_recurrence_id_to_the_minute_and_null_to_null(result: dict[str, Any]) -> None:
    assert result["meetings"]["exported_exactly_once"] == 2
    assert result["meetings"]["share_exactly_once"] == 1.0
    assert result["per_kind"]["meeting"]["extras"] == 0


def test_meeting_in_another_minute_or_with_recurrence_id_for_null_does_not_match(corpus: Path, tmp_path: Path) -> None:
    acts = _write_jsonl(
        tmp_path / "acts.jsonl",
        [
            _line("meeting", ical_uid="u1@cal", recurrence_id="2026-06-01T06:01:00Z"),
            _line("meeting", ical_uid="u2@cal", recurrence_id="2026-06-02T09:00:00Z"),
            _line("meeting", ical_uid="U1@CAL", recurrence_id="2026-06-01T06:00:00Z"),
        ],
    )
    res = scorer.score(corpus, acts, None)
    assert res["meetings"]["exported_exactly_once"] == 0
    assert res["unmatched_extras"]["by_kind"] == {"meeting": 3}


def test_exact_family_items_need_every_contact(result: dict[str, Any]) -> None:
    # e1 and e4 found everything; e5 was not exported
    assert result["exact_family_contacts_found"] == {
        "items": 3,
        "all_contacts_found": 2,
        "share": pytest.approx(2 / 3),
    }


def test_per_family_log_recall(result: dict[str, Any]) -> None:
    assert result["per_family"]["exact"]["log_recall"] == pytest.approx(2 / 3)
    assert result["per_family"]["alias-normalise"]["log_recall"] == 0.0
    assert result["per_family"]["meeting-recurring"]["log_recall"] == 1.0


def test_entities_agree_to_the_second_and_missing_rows_count_as_null(corpus: Path, tmp_path: Path) -> None:
    acts = _write_jsonl(tmp_path / "acts.jsonl", EXPORT)
    ents = _write_jsonl(
        tmp_path / "ents.jsonl",
        [
            {
                "type": "contact",
                "crm_id": "c1",
                "last_contact_at": "2026-06-01T08:00:00.400+02:00",
                "next_meeting_at": None,
            },
            {
                "type": "contact",
                "crm_id": "c2",
                "last_contact_at": "2026-06-01T10:00:00Z",
                "next_meeting_at": "2026-12-01T09:00:01Z",
            },
            {"type": "contact", "crm_id": None, "last_contact_at": None, "next_meeting_at": None},
        ],
    )
    ent = scorer.score(corpus, acts, ents)["entities"]
    assert ent["contact"]["last_contact_at"]["rate"] == 1.0
    assert ent["contact"]["next_meeting_at"]["rate"] == 0.5
    assert ent["contact"]["next_meeting_at"]["sample_mismatches"] == [
        {"crm_id": "c2", "truth": "2026-12-01T09:00:00Z", "export": "2026-12-01T09:00:01Z", "in_export": True}
    ]
    assert ent["company"]["last_contact_at"]["rate"] == 1.0  # null truth, row missing
    assert ent["deal"]["last_contact_at"]["rate"] == 0.0
    assert ent["deal"]["missing_from_export"] == 1


def test_cli_prints_report_and_json_and_exits_zero(corpus: Path, tmp_path: Path, capsys) -> None:
    acts = _write_jsonl(tmp_path / "acts.jsonl", EXPORT)
    assert scorer.main([str(corpus), "--activities", str(acts)]) == 0
    text = capsys.readouterr().out
    assert "privacy leaks" in text and "per family" in text
    assert scorer.main([str(corpus), "--activities", str(acts), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["leaks"] == 1


def test_cli_unreadable_input_is_one_line_error_exit_2(corpus: Path, tmp_path: Path, capsys) -> None:
    assert scorer.main([str(corpus), "--activities", str(tmp_path / "missing.jsonl")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing.jsonl" in err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"kind": "email"}\nnot json\n', encoding="utf-8")
    assert scorer.main([str(corpus), "--activities", str(bad)]) == 2
    assert "bad.jsonl:2" in capsys.readouterr().err
