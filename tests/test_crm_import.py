"""agent/crm_import.py: formats, upserts, adoption, all-or-nothing validation, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from agent.crm_import import ImportReport, import_crm, normalise_domain, parse_datetime
from providers.errors import BadInput
from store.models import Company, CompanyDomain, Contact, ContactEmail, Deal, DealContact
from tests.conftest import CORPORA

DATA = Path(__file__).parent / "data" / "crm"
SMALL = CORPORA / "synthetic-dev" / "small" / "crm"


# db_url / sessions: the shared fixtures of tests/conftest.py (SQLite and PostgreSQL)


def _import(maker: sessionmaker[Session], **files: Path | None) -> ImportReport:
    with maker() as s:
        report = import_crm(s, **files)
        s.commit()
    return report


def _snapshot(s: Session) -> dict[str, list[tuple[Any, ...]]]:
    """Every CRM row, for 'nothing changed' assertions."""
    out = {}
    for model in (Company, CompanyDomain, Contact, ContactEmail, Deal, DealContact):
        cols = list(model.__table__.columns)
        out[model.__tablename__] = sorted(tuple(r) for r in s.execute(select(*cols)).all())
    return out


def _count(s: Session, model: Any) -> int:
    return s.scalar(select(func.count()).select_from(model))


def _small() -> Path:
    if not (SMALL / "contacts.csv").is_file():
        pytest.skip(f"synthetic small corpus not present at {SMALL}")
    return SMALL


def _small_files(folder: Path) -> dict[str, Path]:
    return {k: folder / f"{k}.csv" for k in ("companies", "contacts", "deals")}


def _copy_small(tmp_path: Path) -> Path:
    dst = tmp_path / "crm"
    shutil.copytree(_small(), dst)
    return dst


def _rewrite(path: Path, edit: Any) -> None:
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
        fields = list(rows[0])
    for r in rows:
        edit(r)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8-sig") as f:
        return list(csv.DictReader(f))


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------- the corpus


def test_small_synthetic_crm_imports_every_company_contact_deal_with_domains_emails_links(
    sessions: sessionmaker[Session],
) -> None:
    folder = _small()
    report = _import(sessions, **_small_files(folder))
    assert (report.companies_added, report.contacts_added, report.deals_added) == (40, 200, 70)
    assert (report.companies_updated, report.contacts_updated, report.deals_updated) == (0, 0, 0)
    assert set(report.formats.values()) == {"generic"} and len(report.formats) == 3

    with sessions() as s:
        assert (_count(s, Company), _count(s, Contact), _count(s, Deal)) == (40, 200, 70)
        company_crm = dict(s.execute(select(Company.id, Company.crm_id)).all())
        contact_crm = dict(s.execute(select(Contact.id, Contact.crm_id)).all())
        deal_crm = dict(s.execute(select(Deal.id, Deal.crm_id)).all())
        assert report.changed_company_ids == set(company_crm)
        assert report.changed_contact_ids == set(contact_crm)
        assert report.changed_deal_ids == set(deal_crm)

        want_domains = {(d, r["id"]) for r in _csv_rows(folder / "companies.csv") for d in r["domains"].split(";") if d}
        got_domains = {
            (d, company_crm[c]) for d, c in s.execute(select(CompanyDomain.domain, CompanyDomain.company_id))
        }
        assert got_domains == want_domains

        from matching.identity import email_key

        want_emails = set()
        for r in _csv_rows(folder / "contacts.csv"):
            want_emails.add((email_key(r["email"].lower()), r["id"], True))
            for o in filter(None, r["other_emails"].split(";")):
                want_emails.add((email_key(o.lower()), r["id"], False))
        got_emails = {
            (k, contact_crm[c], p)
            for k, c, p in s.execute(select(ContactEmail.key, ContactEmail.contact_id, ContactEmail.is_primary))
        }
        assert got_emails == want_emails

        want_links = {(r["id"], c) for r in _csv_rows(folder / "deals.csv") for c in r["contact_ids"].split(";") if c}
        got_links = {
            (deal_crm[d], contact_crm[c]) for d, c in s.execute(select(DealContact.deal_id, DealContact.contact_id))
        }
        assert got_links == want_links

        c2 = s.scalars(select(Contact).where(Contact.crm_id == "c2")).one()
        assert (c2.name, c2.email, c2.origin) == ("Olivia Morgan", "omorgan@beacon.com", "crm")
        assert company_crm[c2.company_id] == "co18"
        d1 = s.scalars(select(Deal).where(Deal.crm_id == "d1")).one()
        assert (d1.status, d1.stage, d1.amount, company_crm[d1.company_id]) == (
            "won",
            "Closed Won",
            6000.0,
            "co13",
        )
        assert d1.created_at == datetime(2024, 6, 21, 4, 25, 3, tzinfo=UTC)
        assert d1.close_date == datetime(2025, 2, 1, tzinfo=UTC)
        assert d1.owner_email == "sophie@northwind.io"
        statuses = {r["id"]: r["status"] for r in _csv_rows(folder / "deals.csv")}
        assert dict(s.execute(select(Deal.crm_id, Deal.status)).all()) == statuses


def test_reimporting_the_same_files_changes_nothing_and_keeps_ids(sessions: sessionmaker[Session]) -> None:
    files = _small_files(_small())
    _import(sessions, **files)
    with sessions() as s:
        before = _snapshot(s)
    report = _import(sessions, **files)
    assert (report.companies_added, report.contacts_added, report.deals_added) == (0, 0, 0)
    assert (report.companies_updated, report.contacts_updated, report.deals_updated) == (0, 0, 0)
    assert not (report.changed_company_ids or report.changed_contact_ids or report.changed_deal_ids)
    with sessions() as s:
        assert _snapshot(s) == before


def test_changed_rows_update_in_place_and_are_reported(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    folder = _copy_small(tmp_path)
    _import(sessions, **_small_files(folder))
    with sessions() as s:
        ids_before = dict(s.execute(select(Contact.crm_id, Contact.id)).all())
        co2 = s.scalar(select(Company.id).where(Company.crm_id == "co2"))
        d1 = s.scalar(select(Deal.id).where(Deal.crm_id == "d1"))
        d2 = s.scalar(select(Deal.id).where(Deal.crm_id == "d2"))

    def contacts(r: dict[str, str]) -> None:
        if r["id"] == "c2":
            r["email"], r["other_emails"] = "olivia.morgan@beacon.com", "omorgan@beacon.com"
        if r["id"] == "c3":
            r["title"] = "Chief Everything Officer"  # not matching-relevant: updated, not "changed"

    def companies(r: dict[str, str]) -> None:
        if r["id"] == "co2":
            r["domains"] = "timberlinenetworks.com;timberline.example.org"

    def deals(r: dict[str, str]) -> None:
        if r["id"] == "d1":
            r["status"], r["contact_ids"] = "lost", "c1;c130"
        if r["id"] == "d2":
            r["amount"] = "99"

    _rewrite(folder / "contacts.csv", contacts)
    _rewrite(folder / "companies.csv", companies)
    _rewrite(folder / "deals.csv", deals)
    report = _import(sessions, **_small_files(folder))

    assert (report.companies_added, report.contacts_added, report.deals_added) == (0, 0, 0)
    assert (report.companies_updated, report.contacts_updated, report.deals_updated) == (1, 2, 2)
    assert report.changed_company_ids == {co2}
    assert report.changed_contact_ids == {ids_before["c2"]}
    assert report.changed_deal_ids == {d1}
    assert d2 not in report.changed_deal_ids
    with sessions() as s:
        assert dict(s.execute(select(Contact.crm_id, Contact.id)).all()) == ids_before
        c2 = s.get(Contact, ids_before["c2"])
        assert c2 is not None and c2.email == "olivia.morgan@beacon.com"
        emails = set(
            s.execute(select(ContactEmail.key, ContactEmail.is_primary).where(ContactEmail.contact_id == c2.id)).all()
        )
        assert emails == {("olivia.morgan@beacon.com", True), ("omorgan@beacon.com", False)}
        assert set(s.scalars(select(CompanyDomain.domain).where(CompanyDomain.company_id == co2))) == {
            "timberlinenetworks.com",
            "timberline.example.org",
        }
        assert s.scalar(select(Deal.status).where(Deal.id == d1)) == "lost"
        linked = set(
            s.scalars(
                select(Contact.crm_id)
                .join(DealContact, DealContact.contact_id == Contact.id)
                .where(DealContact.deal_id == d1)
            )
        )
        assert linked == {"c1", "c130"}
        assert s.scalar(select(Deal.amount).where(Deal.id == d2)) == 99.0


# ---------------------------------------------------------------------------------------------- refusals


def test_bad_rows_fail_the_whole_import_with_file_line_reasons_and_leave_db_unchanged(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    folder = _copy_small(tmp_path)
    _import(sessions, companies=folder / "companies.csv")
    rows = _csv_rows(folder / "contacts.csv")

    def contacts(r: dict[str, str]) -> None:
        if r["id"] == rows[15]["id"]:  # line 17
            r["email"] = "bob@"
        if r["id"] == rows[19]["id"]:  # line 21
            r["company_id"] = "co999"

    def deals(r: dict[str, str]) -> None:
        if r["id"] == "d3":  # line 4
            r["close_date"] = "2025-02-30"
        if r["id"] == "d5":  # line 6
            r["status"] = "maybe"

    _rewrite(folder / "contacts.csv", contacts)
    _rewrite(folder / "deals.csv", deals)
    with sessions() as s:
        before = _snapshot(s)
        with pytest.raises(BadInput) as exc:
            import_crm(s, **_small_files(folder))
        assert _snapshot(s) == before  # nothing written, even before the caller rolls back
        s.rollback()
    assert exc.value.problems == [
        "contacts.csv:17: email 'bob@' is not an address",
        ("contacts.csv:21: company_id 'co999' is not a known company (not in the companies file nor in the database)"),
        "deals.csv:4: close_date '2025-02-30' is not a date (use ISO 8601, e.g. 2024-06-21)",
        "deals.csv:6: status 'maybe' is not open, won or lost",
    ]
    assert "4 problems" in str(exc.value)
    with sessions() as s:
        assert _snapshot(s) == before


def test_duplicate_domains_addresses_ids_and_unknown_references_are_all_reported(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    companies = _write(
        tmp_path / "companies.csv",
        "id,name,domains\nk1,Acme,acme.com\nk2,Acme Twin,ACME.com;localhost\nk1,Acme again,\n",
    )
    contacts = _write(
        tmp_path / "contacts.csv",
        "id,first_name,last_name,email,other_emails,company_id,title,phone\n"
        "p1,Ann,A,ann@acme.com,,k1,,\n"
        "p2,Ann,B,Ann+x@Acme.com,,k2,,\n",
    )
    deals = _write(
        tmp_path / "deals.csv",
        "id,name,company_id,stage,status,amount,created_at,close_date,owner_email,"
        "contact_ids\nq1,Deal,k1,Demo,open,12k,2024-01-01,,sam@,p1;p9\n",
    )
    with sessions() as s, pytest.raises(BadInput) as exc:
        import_crm(s, companies=companies, contacts=contacts, deals=deals)
    assert exc.value.problems == [
        "companies.csv:3: domains 'localhost' is not a domain",
        "companies.csv:3: domain 'acme.com' is also given to company 'k1' on line 2",
        "companies.csv:4: id 'k1' repeats line 2",
        "contacts.csv:3: email 'ann+x@acme.com' also belongs to contact 'p1' on line 2",
        "deals.csv:2: amount '12k' is not a number",
        "deals.csv:2: owner_email 'sam@' is not an address",
        "deals.csv:2: contact_ids 'p9' is not a known contact (not in the contacts file nor in the database)",
    ]


def test_reports_every_problem_up_to_a_cap(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    lines = ["id,first_name,last_name,email,other_emails,company_id,title,phone"]
    lines += [f"p{i},A,B,not-an-address-{i},,,," for i in range(250)]
    contacts = _write(tmp_path / "contacts.csv", "\n".join(lines) + "\n")
    with sessions() as s, pytest.raises(BadInput) as exc:
        import_crm(s, contacts=contacts)
    assert len(exc.value.problems) == 101
    assert exc.value.problems[0] == "contacts.csv:2: email 'not-an-address-0' is not an address"
    assert exc.value.problems[-1] == "(and 150 more problems not listed)"
    assert "250 problems" in str(exc.value)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "contacts.csv: empty file (no header row)"),
        (b"\n\n", "contacts.csv: empty file (no header row)"),
        (b"PK\x03\x04rest-of-a-zip", "contacts.csv: is a zip/Excel (.xlsx) file, not CSV"),
        (b"\x7fELF\x00\x00binary", "contacts.csv: is a binary file (contains NUL bytes), not CSV text"),
        (b"foo,bar\n1,2\n", "contacts.csv:1: no recognisable contacts header: expected"),
        (
            b"id,name,company_id,stage,status\nd1,X,,,open\n",
            "contacts.csv:1: no recognisable contacts header (it looks like a deals file)",
        ),
    ],
)
def test_unusable_file_gives_one_clear_problem_line(
    sessions: sessionmaker[Session], tmp_path: Path, content: bytes, expected: str
) -> None:
    path = tmp_path / "contacts.csv"
    path.write_bytes(content)
    with sessions() as s, pytest.raises(BadInput) as exc:
        import_crm(s, contacts=path)
    assert len(exc.value.problems) == 1
    assert exc.value.problems[0].startswith(expected)


def test_missing_file_is_a_problem_not_a_traceback(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    with sessions() as s, pytest.raises(BadInput) as exc:
        import_crm(s, companies=tmp_path / "nope.csv")
    assert exc.value.problems == [f"nope.csv: file not found: {tmp_path / 'nope.csv'}"]


def test_windows_1252_file_is_read_with_a_note(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    path = tmp_path / "companies.csv"
    path.write_bytes("id,name,domains\nk1,Société Générale,societegenerale.fr\n".encode("cp1252"))
    report = _import(sessions, companies=path)
    assert report.notes == ["companies.csv: not valid UTF-8 (line 2); read as Windows-1252"]
    with sessions() as s:
        assert s.scalar(select(Company.name)) == "Société Générale"


def test_semicolon_separated_excel_csv_is_read(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    path = _write(tmp_path / "companies.csv", '\ufeffid;name;domains\nk1;Acme;"acme.com;acme.de"\n')
    _import(sessions, companies=path)
    with sessions() as s:
        assert set(s.scalars(select(CompanyDomain.domain))) == {"acme.com", "acme.de"}


# ---------------------------------------------------------------------------------------------- formats


def test_hubspot_export_is_detected_and_imported(sessions: sessionmaker[Session]) -> None:
    folder = DATA / "hubspot"
    report = _import(sessions, **_small_files(folder))
    assert set(report.formats.values()) == {"hubspot"}
    assert (report.companies_added, report.contacts_added, report.deals_added) == (2, 3, 3)
    with sessions() as s:
        acme = s.scalars(select(Company).where(Company.crm_id == "9001")).one()
        bluebay = s.scalars(select(Company).where(Company.crm_id == "9002")).one()
        assert set(s.scalars(select(CompanyDomain.domain).where(CompanyDomain.company_id == acme.id))) == {
            "acme.com",
            "acme.io",
            "acme.co.uk",
        }
        assert set(s.scalars(select(CompanyDomain.domain).where(CompanyDomain.company_id == bluebay.id))) == {
            "bluebay-example.com"
        }
        priya = s.scalars(select(Contact).where(Contact.crm_id == "8001")).one()
        assert (priya.name, priya.email, priya.title, priya.company_id) == (
            "Priya Shah",
            "priya@acme.com",
            "Head of Product",
            acme.id,
        )
        assert set(
            s.execute(select(ContactEmail.key, ContactEmail.email).where(ContactEmail.contact_id == priya.id))
        ) == {
            ("priya@acme.com", "priya@acme.com"),
            ("priya.shah@acme.io", "priya.shah+crm@acme.io"),
            ("priyas@gmail.com", "priya.s@gmail.com"),
        }
        ben = s.scalars(select(Contact).where(Contact.crm_id == "8002")).one()
        assert ben.company_id == bluebay.id  # first of "Associated Company IDs" when no primary is given
        grace = s.scalars(select(Contact).where(Contact.crm_id == "8003")).one()
        assert (grace.email, grace.company_id) == (None, None)
        deals = {d.crm_id: d for d in s.scalars(select(Deal))}
        assert {k: d.status for k, d in deals.items()} == {"7001": "won", "7002": "lost", "7003": "open"}
        assert deals["7001"].amount == 12500.0 and deals["7003"].amount is None
        assert deals["7001"].created_at == datetime(2024, 6, 21, 4, 25, tzinfo=UTC)
        assert deals["7002"].created_at == datetime(2024, 6, 21, tzinfo=UTC)
        assert deals["7002"].close_date == datetime(2024, 6, 30, tzinfo=UTC)
        assert deals["7001"].owner_email is None  # a person's name, not an address
        assert deals["7002"].owner_email == "sam@northwind.io"
        links = set(
            s.execute(
                select(Deal.crm_id, Contact.crm_id)
                .join(DealContact, DealContact.deal_id == Deal.id)
                .join(Contact, Contact.id == DealContact.contact_id)
            )
        )
        assert links == {("7001", "8001"), ("7001", "8002"), ("7002", "8002")}


def test_salesforce_export_is_detected_and_imported_with_contact_roles(
    sessions: sessionmaker[Session],
) -> None:
    folder = DATA / "salesforce"
    report = _import(
        sessions,
        companies=folder / "Account.csv",
        contacts=folder / "Contact.csv",
        deals=folder / "Opportunity.csv",
        deal_contacts=folder / "OpportunityContactRole.csv",
    )
    assert set(report.formats.values()) == {"salesforce"} and len(report.formats) == 4
    assert (report.companies_added, report.contacts_added, report.deals_added) == (2, 3, 3)
    with sessions() as s:
        companies = {c.crm_id: c for c in s.scalars(select(Company))}
        # 15-character report ids are stored in their 18-character form, so they match the Data Loader's
        assert set(companies) == {"0015g00000AbCdEAAV", "0015g00000XyZwQAAV"}
        acme = companies["0015g00000AbCdEAAV"]
        assert set(s.scalars(select(CompanyDomain.domain).where(CompanyDomain.company_id == acme.id))) == {
            "acme-sf.com"
        }
        hans = s.scalars(select(Contact).where(Contact.crm_id == "0035g00000PqRsTAAV")).one()
        assert (hans.name, hans.email, hans.company_id, hans.phone) == (
            "Hans Müller",
            "hans.mueller@globex.de",
            companies["0015g00000XyZwQAAV"].id,
            "+49 30 1234567",
        )
        jane = s.scalars(select(Contact).where(Contact.crm_id == "0035g00000LmNoPAAV")).one()
        assert jane.phone == "+44 7700 900123"
        deals = {d.crm_id: d for d in s.scalars(select(Deal))}
        assert {k: d.status for k, d in deals.items()} == {
            "0065g00000AaBbCAAV": "won",
            "0065g00000DdEeFAAV": "lost",
            "0065g00000GgHhIAAV": "open",
        }
        renewal = deals["0065g00000AaBbCAAV"]
        assert renewal.created_at == datetime(2024, 6, 21, 4, 25, 3, tzinfo=UTC)
        assert (renewal.owner_email, renewal.amount, renewal.company_id) == (
            "sam@northwind.io",
            25000.0,
            acme.id,
        )
        roles = set(
            s.execute(
                select(Contact.crm_id, DealContact.role)
                .join(DealContact, DealContact.contact_id == Contact.id)
                .where(DealContact.deal_id == renewal.id)
            )
        )
        assert roles == {("0035g00000LmNoPAAV", "Decision Maker"), ("0035g00000GhIjKAAV", "Evaluator")}
        assert _count(s, DealContact) == 2

    again = _import(
        sessions,
        companies=folder / "Account.csv",
        contacts=folder / "Contact.csv",
        deals=folder / "Opportunity.csv",
        deal_contacts=folder / "OpportunityContactRole.csv",
    )
    assert (again.companies_added + again.contacts_added + again.deals_added) == 0
    assert (again.companies_updated + again.contacts_updated + again.deals_updated) == 0


# ---------------------------------------------------------------------------------------------- merging


def test_suggested_contact_met_in_mail_is_adopted_not_duplicated(sessions: sessionmaker[Session]) -> None:
    folder = _small()
    _import(sessions, companies=folder / "companies.csv")
    with sessions() as s:
        suggested = Contact(
            crm_id=None, name="O. Morgan", email="omorgan9@gmail.com", origin="suggested", activity_count=3
        )
        s.add(suggested)
        s.flush()
        s.add(
            ContactEmail(key="omorgan9@gmail.com", contact_id=suggested.id, email="omorgan9@gmail.com", is_primary=True)
        )
        s.commit()
        suggested_id = suggested.id

    report = _import(sessions, contacts=folder / "contacts.csv")
    assert report.contacts_added == 200 and report.contacts_adopted == 1
    assert suggested_id in report.changed_contact_ids
    with sessions() as s:
        assert _count(s, Contact) == 200
        c2 = s.get(Contact, suggested_id)
        assert c2 is not None
        assert (c2.crm_id, c2.origin, c2.name, c2.email, c2.activity_count) == (
            "c2",
            "crm",
            "Olivia Morgan",
            "omorgan@beacon.com",
            3,
        )
        assert set(
            s.execute(select(ContactEmail.key, ContactEmail.is_primary).where(ContactEmail.contact_id == suggested_id))
        ) == {("omorgan@beacon.com", True), ("omorgan9@gmail.com", False)}


def test_address_of_a_crm_contact_not_in_the_file_is_refused(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    first = _write(
        tmp_path / "a.csv",
        "id,first_name,last_name,email,other_emails,company_id,title,phone\np1,Ann,A,ann@acme.com,,,,\n",
    )
    _import(sessions, contacts=first)
    second = _write(
        tmp_path / "b.csv",
        "id,first_name,last_name,email,other_emails,company_id,title,phone\np2,Ann,B,ANN@acme.com,,,,\n",
    )
    with sessions() as s, pytest.raises(BadInput) as exc:
        import_crm(s, contacts=second)
    assert exc.value.problems == ["b.csv:2: email 'ann@acme.com' already belongs to contact 'p1' in the database"]
    # ...but moving it between two contacts that are both in the file is fine
    third = _write(
        tmp_path / "c.csv",
        "id,first_name,last_name,email,other_emails,company_id,title,phone\n"
        "p1,Ann,A,ann.a@acme.com,,,,\np2,Ann,B,ann@acme.com,,,,\n",
    )
    report = _import(sessions, contacts=third)
    assert (report.contacts_added, report.contacts_updated) == (1, 1)


def test_contacts_alone_may_reference_companies_already_in_the_db(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    _import(sessions, companies=_write(tmp_path / "companies.csv", "id,name,domains\nk1,Acme,acme.com\n"))
    report = _import(
        sessions,
        contacts=_write(
            tmp_path / "contacts.csv",
            "id,first_name,last_name,email,other_emails,company_id,title,phone\np1,Ann,Lee,ann@acme.com,,k1,CFO,\n",
        ),
    )
    assert report.contacts_added == 1 and report.companies_added == 0
    with sessions() as s:
        ann = s.scalars(select(Contact)).one()
        assert ann.company_id == s.scalar(select(Company.id).where(Company.crm_id == "k1"))
        # the companies' domains were not touched by a contacts-only import
        assert set(s.scalars(select(CompanyDomain.domain))) == {"acme.com"}


def test_domain_given_as_a_website_url_is_stored_as_its_host(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    path = _write(tmp_path / "companies.csv", "id,name,domains\nk1,Acme,https://www.Acme.com/about\n")
    _import(sessions, companies=path)
    with sessions() as s:
        assert list(
            s.execute(
                select(CompanyDomain.domain, Company.crm_id).join(Company, Company.id == CompanyDomain.company_id)
            )
        ) == [("acme.com", "k1")]


def test_domain_held_by_a_company_not_in_the_file_is_refused(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    _import(sessions, companies=_write(tmp_path / "a.csv", "id,name,domains\nk1,Acme,acme.com\n"))
    with sessions() as s, pytest.raises(BadInput) as exc:
        import_crm(s, companies=_write(tmp_path / "b.csv", "id,name,domains\nk2,Acme EU,www.acme.com\n"))
    assert exc.value.problems == ["b.csv:2: domain 'acme.com' already belongs to company 'k1' in the database"]


# ---------------------------------------------------------------------------------------------- value parsing


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("https://www.Acme.com/about", "acme.com"),
        ("acme.com", "acme.com"),
        ("WWW.acme.co.uk:8443/path?q=1", "acme.co.uk"),
        ("http://user@sub.acme.io#x", "sub.acme.io"),
        ("acme.com.", "acme.com"),
        ("www.com", "www.com"),
        ("bücher.de", "xn--bcher-kva.de"),
    ],
)
def test_normalise_domain(raw: str, expected: str) -> None:
    assert normalise_domain(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2025-02-01", datetime(2025, 2, 1, tzinfo=UTC)),
        ("2024-06-21T04:25:03Z", datetime(2024, 6, 21, 4, 25, 3, tzinfo=UTC)),
        ("2024-06-21T06:25:03+02:00", datetime(2024, 6, 21, 4, 25, 3, tzinfo=UTC)),
        ("2024-06-21T04:25:03.000+0000", datetime(2024, 6, 21, 4, 25, 3, tzinfo=UTC)),
        ("2024-06-21 04:25", datetime(2024, 6, 21, 4, 25, tzinfo=UTC)),
        ("6/21/2024", datetime(2024, 6, 21, tzinfo=UTC)),
        ("6/21/2024 4:25 PM", datetime(2024, 6, 21, 16, 25, tzinfo=UTC)),
        ("21/06/2024", datetime(2024, 6, 21, tzinfo=UTC)),
        ("21.06.2024", datetime(2024, 6, 21, tzinfo=UTC)),
        ("1718943903000", datetime(2024, 6, 21, 4, 25, 3, tzinfo=UTC)),
    ],
)
def test_parse_datetime_accepts_crm_export_formats(raw: str, expected: datetime) -> None:
    assert parse_datetime(raw) == expected


def test_parse_datetime_day_first_when_told_and_rejects_nonsense() -> None:
    assert parse_datetime("03/04/2024", dayfirst=True) == datetime(2024, 4, 3, tzinfo=UTC)
    assert parse_datetime("03/04/2024") == datetime(2024, 3, 4, tzinfo=UTC)
    for bad in ("2025-02-30", "13/13/2024", "soon", "2024-06-21T25:00"):
        with pytest.raises(ValueError):
            parse_datetime(bad)
