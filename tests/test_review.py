"""The review queue: what the matcher would not guess on is asked, and the answer sticks."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.conftest import run_cli
from tests.test_cli import DEMO, NOW, loaded  # noqa: F401  (fixture)


def test_review_lists_the_ambiguous_item_with_ranked_candidates(loaded: str) -> None:  # noqa: F811
    run_cli("sync", db=loaded, env=NOW)
    items = json.loads(run_cli("review", "--json", db=loaded, env=NOW).stdout)
    assert [i["subject"] for i in items] == ["Invoice address update"]
    cands = items[0]["candidates"]
    assert len(cands) == 2 and cands[0]["probability"] >= cands[1]["probability"]
    assert all(c["name"].startswith("Halvorsen") for c in cands)


def test_a_choice_in_review_is_recorded_and_survives_reimport(loaded: str, tmp_path: Path) -> None:  # noqa: F811
    run_cli("sync", db=loaded, env=NOW)
    item = json.loads(run_cli("review", "--json", db=loaded, env=NOW).stdout)[0]
    second = item["candidates"][1]
    out = run_cli("review", "--actor", "ana", db=loaded, env=NOW, stdin="2\n").stdout
    assert "corrected" in out and "1 decided" in out
    assert json.loads(run_cli("review", "--json", db=loaded, env=NOW).stdout) == []

    def exported() -> dict:
        acts = tmp_path / "acts.jsonl"
        run_cli("export", "activities", "--out", str(acts), db=loaded, env=NOW)
        rows = [json.loads(line) for line in acts.read_text().splitlines()]
        return next(r for r in rows if r["subject"] == "Invoice address update")

    row = exported()
    assert row["deal"]["crm_id"] == second["crm_id"] and row["status"] == "corrected" and row["confidence"] == 1.0
    assert any("chosen by ana" in e for e in row["evidence"])
    deal_view = json.loads(run_cli("timeline", "deal", second["crm_id"], "--json", db=loaded, env=NOW).stdout)
    assert any(i["subject"] == "Invoice address update" for i in deal_view["items"])
    # a later reply in the thread follows the person's decision, not the matcher's doubt
    mbox = next(Path(r["location"]) for r in json.loads(run_cli("source", "list", "--json", db=loaded).stdout)
                if r["kind"] == "mbox")  # fmt: skip
    with open(mbox, "ab") as fh:
        fh.write(
            b"From x Fri Nov 20 09:00:00 2026\nFrom: Ingrid Halvorsen <ingrid@halvorsenmarine.no>\n"
            b"To: Ana Ruiz <ana@northwind.io>\nSubject: Re: Invoice address update\n"
            b"Date: Fri, 20 Nov 2026 09:00:00 +0000\nMessage-ID: <reply-after-review@halvorsenmarine.no>\n"
            b"In-Reply-To: <4bb83a50.a2cd418afa72@halvorsenmarine.no>\n"
            b"References: <4bb83a50.a2cd418afa72@halvorsenmarine.no>\n\nThanks, all sorted.\n\n"
        )
    run_cli("sync", db=loaded, env=NOW)
    acts = tmp_path / "acts2.jsonl"
    run_cli("export", "activities", "--out", str(acts), db=loaded, env=NOW)
    reply = next(json.loads(x) for x in acts.read_text().splitlines() if "<reply-after-review@" in x)
    assert reply["deal"]["crm_id"] == second["crm_id"] and reply["status"] == "auto"
    assert any("a person put earlier mail of this thread on this deal" in e for e in reply["evidence"])

    # a CRM change re-attributes the company's items, never what a person decided
    deals = tmp_path / "deals.csv"
    text = (DEMO / "crm" / "deals.csv").read_text()
    deals.write_text(text.replace(second["name"], second["name"] + " Phase 2"))
    out = run_cli("crm", "import", "--deals", str(deals), db=loaded, env=NOW).stdout
    assert re.search(r"\b[1-9]\d* activities re-attributed", out), out
    assert exported()["deal"]["crm_id"] == second["crm_id"]


def test_no_deal_and_skip_and_quit(loaded: str) -> None:  # noqa: F811
    run_cli("sync", db=loaded, env=NOW)
    assert "0 decided" in run_cli("review", db=loaded, env=NOW, stdin="s\n").stdout
    assert "0 decided" in run_cli("review", db=loaded, env=NOW, stdin="q\n").stdout
    out = run_cli("review", db=loaded, env=NOW, stdin="n\n").stdout
    assert "confirmed" in out or "corrected" in out
    assert json.loads(run_cli("review", "--json", db=loaded, env=NOW).stdout) == []
