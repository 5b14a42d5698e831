"""bench/attribution_throughput.py at a tiny size under pytest-benchmark.

Timing is reported by pytest-benchmark, never asserted: the assertions only pin that the synthetic CRM and
items are what the benchmark claims to measure, and that attribute() gets them right.
"""

from __future__ import annotations

import importlib.util
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

BENCH_PATH = Path(__file__).resolve().parents[1] / "bench" / "attribution_throughput.py"


def _load() -> Any:
    spec = importlib.util.spec_from_file_location("inkless_bench_attribution", BENCH_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


bench = _load()

CONTACTS, DEALS, ITEMS, SEED = 1000, 300, 400, 7


@pytest.fixture(scope="module")
def world() -> tuple[Any, Any, list[Any]]:
    crm = bench.generate_crm(CONTACTS, DEALS, SEED)
    index = bench.build_index(crm)
    return crm, index, bench.generate_items(crm, index, ITEMS, SEED)


def test_synthetic_crm_has_the_promised_shape(world: tuple[Any, Any, list[Any]]) -> None:
    crm, index, _ = world
    assert len(crm.companies) == CONTACTS // 8
    assert all(1 <= len(co.domains) <= 2 for co in crm.companies)
    assert len(index.contacts) == CONTACTS and len(index.deals) == DEALS
    assert len(index.by_email) > CONTACTS  # some contacts have a second address
    staff = {co: set(ids) for co, ids in crm.contacts_by_company.items()}
    for d in crm.deals:
        assert d.status in {"open", "won", "lost"}
        assert 1 <= len(d.contact_ids) <= 3 and d.contact_ids <= staff[d.company_id]
    first_names = Counter(rec.first_name for rec, _ in crm.contacts)
    assert first_names.most_common(1)[0][1] >= CONTACTS // 20  # many contacts share a first name
    companies_by_name: dict[tuple[str, str], set[int]] = {}
    for rec, _ in crm.contacts:
        companies_by_name.setdefault((rec.first_name, rec.last_name), set()).add(rec.company_id)
    assert any(len(cos) > 1 for cos in companies_by_name.values())  # namesakes at different companies


def test_generation_is_deterministic(world: tuple[Any, Any, list[Any]]) -> None:
    crm, index, items = world
    again = bench.generate_crm(CONTACTS, DEALS, SEED)
    assert again.contacts == crm.contacts and again.deals == crm.deals
    assert bench.generate_items(again, bench.build_index(again), ITEMS, SEED) == items


def test_attribution_pass(benchmark: Any, world: tuple[Any, Any, list[Any]]) -> None:
    _, index, items = world
    assert {it.kind for it in items} == set(bench.ITEM_MIX)
    results = benchmark.pedantic(bench.run_items, args=(items, index), rounds=3, iterations=1, warmup_rounds=1)
    checks = bench.check_results(items, results)
    assert checks["expected_contacts_found"] == 1.0
    assert checks["expected_companies_found"] == 1.0
    assert checks["bare_namesakes_linked"] == 0.0  # a name alone never links anyone
    assert checks["with_deal"] > 0.2 and checks["with_new_contact"] > 0.02


def test_items_concern_accounts_at_the_set_share_whatever_the_crm_size() -> None:
    """The mail is the same at every CRM size: the share of items about a company with deals is the workload's
    (``ACCOUNT_SHARE``), not the share of such companies in the CRM (here about a fifth of them)."""
    crm = bench.generate_crm(CONTACTS, 30, SEED)
    index = bench.build_index(crm)
    accounts = set(crm.deals_by_company)
    assert 0.1 < len(accounts) / len(crm.companies) < 0.35

    def share(items: list[Any]) -> float:
        about = [next(iter(it.expect_companies)) for it in items if it.kind in ("exact", "alias")]
        return sum(co in accounts for co in about) / len(about)

    assert abs(share(bench.generate_items(crm, index, 2000, SEED)) - bench.ACCOUNT_SHARE) < 0.04
    assert share(bench.generate_items(crm, index, 2000, SEED, account_share=None)) < 0.35


def test_the_verdict_judges_all_items_and_items_alike_apart() -> None:
    def row(contacts: int, us: float, with_cand: float, without: float) -> Any:
        return bench.Row(contacts, 0, 0, 0, 0.0, 0.0, 0.0, 0, 1e6 / us, us, 1.0, 0.0, 0.0, with_cand, without, [], {})

    rows = [row(1000, 180.0, 180.0, 33.0), row(10000, 136.0, 150.0, 35.0), row(100000, 121.0, 147.0, 37.0)]
    for r in rows:
        r.vs_smallest = r.us_per_item / rows[0].us_per_item
    v = bench.verdict(rows)
    assert v["throughput"]["pass"] is True
    assert v["scaling"]["pass"] is False and v["scaling"]["measured"] == "worst -33% at 100,000 contacts"
    assert v["like items"]["pass"] is True
    assert v["like items"]["measured"] == "worst -18% (with a candidate deal, 100,000)"
    rows[2].us_without_candidates = 45.0  # items without a candidate deal costing more in a bigger CRM
    assert bench.verdict(rows)["like items"]["pass"] is False
