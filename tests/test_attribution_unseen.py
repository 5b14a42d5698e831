"""Labelled attribution cases in families and vocabulary the other tests and the sample corpora lack.

Non-English deal names and mail (German, French, Spanish, Portuguese, a little Japanese), product codes and
versions, camelCase and hyphenated words, inflected forms, reply prefixes of several mail clients, quoted
replies, HTML leftovers, names with apostrophes, hyphens, middle names, double surnames, transliterations
and RFC 2047 encoded words, emoji, public-suffix domains, namesakes, a contact who changed employer and
closed deals at their date boundaries. Every company, person and product here is made up for these tests."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from matching.attribute import attribute
from matching.index import CompanyRec, ContactRec, CrmIndex, DealRec, Team
from providers.records import Participant

T = datetime(2026, 3, 10, 9, 30, tzinfo=UTC)
TEAM = Team(["harborline.io"], ["sam@harborline.io"])
CREATED = datetime(2025, 11, 1, tzinfo=UTC)


# other accounts, so that generic words ("Upgrade", "Renewal", "Pilot", "Phase") are as common as in a real CRM
BACKGROUND = [
    ("Bluepeak Logistics", "bluepeak.com", ["Platform Upgrade 2026", "Licence Renewal 2026", "Monitoring Pilot"]),
    ("Corvid Systems", "corvid.systems", ["Cloud Migration Phase 1", "Analytics Expansion", "Support Renewal"]),
    ("Deltamar Shipping", "deltamar.com", ["Portal Upgrade", "Data Platform Pilot", "Project Consolidation"]),
    ("Ferngrove Foods", "ferngrove.com", ["ERP Migration", "App Renewal 2025", "Monitoring Expansion"]),
    ("Glenholm Energy", "glenholm.energy", ["Analytics Platform Upgrade", "Licence Expansion", "Pilot Phase 2"]),
]


def crm() -> CrmIndex:
    idx = CrmIndex()
    companies = [
        (1, "Brauerei Hohenfels GmbH", ("hohenfels.de",)),
        (2, "Éditions Lumière SAS", ("lumiere-editions.fr",)),
        (3, "Constructora Andina S.A.", ("andina.com.ar", "constructora-andina.com")),
        (4, "Kestrel Analytics Ltd", ("kestrel-analytics.co.uk", "kestrel.io")),
        (5, "Sakura Denki K.K.", ("sakura-denki.co.jp",)),
        (6, "Atlas Mining Pty Ltd", ("atlasmining.com.au",)),
        (7, "Vale Verde Agro Ltda.", ("valeverde.com.br",)),
        (8, "Northgate Retail Group", ("northgate-retail.com",)),
        (9, "Oakridge Health", ("oakridgehealth.org",)),
        *((50 + k, name, (domain,)) for k, (name, domain, _) in enumerate(BACKGROUND)),
    ]
    for cid, name, domains in companies:
        idx.add_company(CompanyRec(cid, f"co{cid}", name, domains))
    people = [
        (20, "Siobhán", "O'Brien", 4, ["s.obrien@kestrel-analytics.co.uk"], "+44 161 496 0732"),
        (21, "Jean-Luc", "Marchand", 2, ["jl.marchand@lumiere-editions.fr"], "+33 1 42 68 53 00"),
        (22, "Jürgen", "Weiß", 1, ["j.weiss@hohenfels.de"], "+49 89 1234 5678"),
        (23, "María José", "Fernández García", 3, ["mj.fernandez@andina.com.ar"], "+54 11 4321 9876"),
        (24, "Katherine", "Moore", 8, ["kmoore@northgate-retail.com"], "+1 (312) 555-0147"),
        (25, "Haruki", "Sato", 5, ["h.sato@sakura-denki.co.jp"], "+81 3 5555 0123"),
        (26, "Liam", "Byrne", 6, ["liam.byrne@atlasmining.com.au"], "+61 8 9123 4567"),
        (27, "Thiago", "Nogueira", 7, ["thiago@valeverde.com.br", "thiago.nogueira+crm@gmail.com"],
         "+55 11 98765-4321"),
        (28, "Elizabeth", "Chen", 8, ["echen@northgate-retail.com"], ""),
        (29, "Robert", "Fairweather", 8, ["rfairweather@northgate-retail.com"], ""),
        (30, "Priya", "Raman", 9, ["priya.raman@oakridgehealth.org"], ""),
        (31, "Liam", "Byrne", 4, ["l.byrne@kestrel.io"], "+44 20 7946 0321"),  # a namesake at another company
        (32, "William", "Okafor", 4, ["w.okafor@kestrel-analytics.co.uk"], ""),
        (33, "Anne-Sophie", "Duval", 2, ["as.duval@lumiere-editions.fr"], ""),
        (34, "Klaus", "Müller", 1, ["k.mueller@hohenfels.de"], ""),
    ]  # fmt: skip
    for cid, first, last, co, emails, phone in people:
        digits = "".join(ch for ch in phone if ch.isdigit())
        idx.add_contact(ContactRec(cid, f"c{cid}", f"{first} {last}", co, "crm", first, last, digits), emails)
    phase1 = ("won", datetime(2025, 6, 1, tzinfo=UTC), datetime(2026, 1, 31, tzinfo=UTC))
    won = ("won", datetime(2025, 1, 15, tzinfo=UTC), datetime(2025, 12, 15, tzinfo=UTC))
    deals = [
        (100, "Hohenfels – Modernisierung der Abfüllanlage", 1, {22}, None),
        (101, "Hohenfels – Einführung Lagerverwaltung", 1, {34}, None),
        (102, "Hohenfels – Wartung Gärkeller", 1, set(), None),
        (110, "Lumière – Plateforme de distribution numérique", 2, {21}, None),
        (111, "Lumière – Refonte du site e-commerce", 2, {33}, None),
        (112, "Lumière – Solution pour les libraires", 2, set(), None),
        (120, "Andina – Migración del ERP a la nube", 3, {23}, None),
        (121, "Andina – Renovación de licencias 2026", 3, set(), None),
        (122, "Andina – Portal para proveedores", 3, set(), None),
        (130, "Kestrel – DataLake Consolidation", 4, {20}, None),
        (131, "Kestrel – Licence Renewals 2025", 4, {32}, won),
        (132, "Kestrel – Licence Renewals 2026", 4, {32}, ("open", datetime(2026, 1, 10, tzinfo=UTC), None)),
        (133, "Kestrel – Risk Engine", 4, set(), None),
        (140, "Sakura Denki – SAP S/4HANA Upgrade", 5, {25}, None),
        (141, "Sakura Denki – Factory IoT Pilot", 5, set(), None),
        (150, "Project Atlas – Phase 2", 6, {26}, ("open", datetime(2026, 1, 20, tzinfo=UTC), None)),
        (151, "Atlas Mining – Fleet Telematics", 6, set(), None),
        (152, "Project Atlas – Phase 1", 6, {26}, phase1),
        (153, "PRJ-2041 Tailings Monitoring", 6, set(), None),
        (160, "Vale Verde – Rastreabilidade de Grãos", 7, {27}, None),
        (161, "Vale Verde – Gestão da Frota", 7, set(), None),
        (170, "Northgate – E-Commerce Replatforming", 8, {28}, None),
        (171, "Northgate – Store Analytics Migrations", 8, {29}, None),
        (172, "Northgate – Loyalty App", 8, {29}, None),
        (173, "Northgate – Customer Data Platform", 8, set(), None),
        (174, "Northgate – Project Lighthouse", 8, set(), None),
        (180, "Oakridge – Patient Portal", 9, {30}, None),
    ]  # fmt: skip
    for k, (_, _, names) in enumerate(BACKGROUND):
        deals += [(500 + 10 * k + j, name, 50 + k, set(), None) for j, name in enumerate(names)]
    for did, name, co, roles, dates in deals:
        status, created, closed = dates or ("open", CREATED, None)
        idx.add_deal(DealRec(did, f"d{did}", name, co, status, created, closed, frozenset(roles)))
    return idx


CRM = crm()


def person(email: str, name: str | None = None, role: str = "from") -> Participant:
    return Participant(email=email, name=name, role=role)


def run(
    people: list[Participant],
    subject: str = "",
    body: str = "",
    when: datetime = T,
    thread_deal: int | None = None,
    thread_decided: bool = False,
):
    everyone = [*people, person("sam@harborline.io", "Sam Reyes", "to")]
    return attribute(everyone, when, subject, body, CRM, TEAM, thread_deal, thread_decided)


def contact_ids(res) -> list[int]:
    return sorted(link.target_id for link in res.contacts)


def company_ids(res) -> list[int]:
    return sorted(link.target_id for link in res.companies)


def deal_of(res) -> int | None:
    return res.deal.target_id if res.deal else None


# ------------------------------------------------------------------------------------------ people
@pytest.mark.parametrize(
    ("address", "display", "contact"),
    [
        # apostrophes, hyphens and the ways mail clients write them
        ("siobhan@kestrel.io", "Siobhán O'Brien", 20),
        ("sobrien@kestrel.io", "O’Brien, Siobhan", 20),
        ("siobhan.obrien@kestrel.io", "Siobhan OBrien", 20),
        ("jeanluc@lumiere-editions.fr", "Jean-Luc Marchand", 21),
        ("jeanluc@lumiere-editions.fr", "Marchand, Jean-Luc", 21),
        ("jeanluc@lumiere-editions.fr", "Jean Luc MARCHAND", 21),
        ("annesophie@lumiere-editions.fr", "Anne Sophie Duval", 33),
        # diacritics, German transliteration (ß -> ss, ü -> ue) and RFC 2047 as decoded or still raw
        ("juergen.weiss@hohenfels.de", "Jürgen Weiß", 22),
        ("juergen.weiss@hohenfels.de", "Juergen Weiss", 22),
        ("juergen.weiss@hohenfels.de", "=?UTF-8?Q?J=C3=BCrgen_Wei=C3=9F?=", 22),
        ("klaus@hohenfels.de", "Dr. Klaus Mueller", 34),
        # given names of two words and double surnames, in either order, abridged as people do
        ("mariajose@andina.com.ar", "María José Fernández García", 23),
        ("mariajose@andina.com.ar", "Fernández García, María José", 23),
        ("mariajose@andina.com.ar", "María José Fernández", 23),
        ("mariajose@andina.com.ar", "=?ISO-8859-1?Q?Mar=EDa_Jos=E9_Fern=E1ndez_Garc=EDa?=", 23),
        # "Last, First" with a middle initial, nicknames, initials, capitals, emoji, a subdomain
        ("katherine.moore@northgate-retail.com", "Moore, Katherine A.", 24),
        ("kate@northgate-retail.com", "Kate Moore", 24),
        ("bill@kestrel.io", "Bill Okafor", 32),
        ("e.chen@northgate-retail.com", "E. Chen", 28),
        ("liz@northgate-retail.com", "Liz Chen 🌸", 28),
        ("liz@northgate-retail.com", "🌸 Liz Chen", 28),
        ("bob@shop.northgate-retail.com", "Bob Fairweather (Northgate)", 29),
        ("haruki.sato@sakura-denki.co.jp", "SATO, Haruki", 25),
        ("lbyrne@atlasmining.com.au", "LIAM BYRNE", 26),
        # listed other address, normalised (gmail dots, +tag, googlemail)
        ("thiagonogueira@gmail.com", "Thiago", 27),
        ("thiago.nogueira@googlemail.com", None, 27),
    ],
)
def test_unlisted_or_normalised_address_is_the_contact(address: str, display: str | None, contact: int) -> None:
    res = run([person(address, display)])
    assert contact_ids(res) == [contact]
    assert company_ids(res) == [CRM.contacts[contact].company_id]
    assert res.new_contacts == []


def test_namesakes_at_two_companies_are_told_apart_by_domain() -> None:
    assert contact_ids(run([person("lbyrne@atlasmining.com.au", "Liam Byrne")])) == [26]
    assert contact_ids(run([person("liam@kestrel.io", "Liam Byrne")])) == [31]


def test_a_namesake_on_freemail_without_corroboration_is_a_stranger() -> None:
    res = run([person("liam.byrne77@outlook.com", "Liam Byrne")], "bike", "Hi mate, still keen on the bike? Cheers")
    assert res.contacts == [] and res.companies == [] and res.deal is None


@pytest.mark.parametrize(
    ("address", "display", "body", "contact"),
    [
        ("liam.byrne77@outlook.com", "Liam Byrne", "Liam Byrne\nSite Manager | Atlas Mining\nM +61 8 9123 4567", 26),
        ("liam.byrne77@outlook.com", "Liam Byrne", "Cheers, Liam\nMob. +61 (0)8 9123 4567", 26),
        ("liam.byrne77@outlook.com", "Liam Byrne", "Liam Byrne – Senior Analyst, Kestrel Analytics", 31),
        ("thiago.n@hotmail.com", "Thiago Nogueira",
         "Abraços,\nThiago Nogueira\nGerente de Compras\nVale Verde Agro\nTel: +55 (11) 98765-4321", 27),
        ("juergen.weiss@web.de", "Jürgen Weiß",
         "Mit freundlichen Grüßen\nJürgen Weiß\nLeiter Einkauf\nBrauerei Hohenfels GmbH & Co. KG\n"
         "Tel. +49 (0)89 1234-5678", 22),
        ("jlm.perso@gmail.com", "Jean-Luc Marchand",
         "Cordialement,\nJean-Luc Marchand\nDirecteur commercial – Éditions Lumière\nTél. : 01 42 68 53 00", 21),
        ("haruki.s@yahoo.co.jp", "Sato Haruki", "佐藤 春樹 / Haruki Sato\nSakura Denki K.K.\nTEL: 03-5555-0123", 25),
    ],
)  # fmt: skip
def test_a_contact_on_a_personal_address_is_recognised_by_name_and_signature(
    address: str, display: str, body: str, contact: int
) -> None:
    res = run([person(address, display)], "Re: quick note", body)
    assert contact_ids(res) == [contact]
    assert company_ids(res) == [CRM.contacts[contact].company_id]


def test_a_signature_in_a_recipients_name_does_not_link_a_freemail_recipient() -> None:
    body = "Liam Byrne | Atlas Mining | +61 8 9123 4567"
    res = run([person("s.obrien@kestrel-analytics.co.uk"), person("liam.byrne77@outlook.com", "Liam Byrne", "cc")],
              body=body)  # fmt: skip
    assert contact_ids(res) == [20]


@pytest.mark.parametrize(
    ("body", "contact"),
    [
        ("Cheers, Liam\nwww.atlasmining.com.au", 26),
        ("Liam Byrne\nliam.byrne@atlasmining.com.au (work)", 26),
        ("Liam\nhttps://kestrel.io/team", 31),
        ("Liam\nwww.atlasmining.com.au.example.net", None),  # a host under someone else's domain
        ("Liam\nwww.myatlasmining.com.au", None),  # another domain that ends in the same letters
        ("Liam\nI read that Atlas Mining Pty Ltd is hiring", 26),  # the company's name, legal form aside
        ("Liam\nAtlas and mining stocks fell", None),  # its words, but not its name
    ],
)
def test_a_signature_shows_the_company_by_its_domain_or_name_not_by_lookalikes(body: str, contact: int | None) -> None:
    res = run([person("liam.byrne77@outlook.com", "Liam Byrne")], "Re: quick note", body)
    assert contact_ids(res) == ([] if contact is None else [contact])


def test_a_personal_address_is_placed_among_thousands_of_namesakes_by_index_lookups() -> None:
    """A common surname has hundreds of contacts in a large CRM: the signature's company, domain and phone are
    looked up, and only the namesakes there are compared with the name."""
    from matching.people import _Signature

    idx = crm()
    for k in range(3000):
        idx.add_company(CompanyRec(1000 + k, f"x{k}", f"Byrne Holdings No{k}", (f"byrne{k}.example",)))
        idx.add_contact(ContactRec(5000 + k, f"x{k}", "Liam Byrne", 1000 + k, "crm", "Liam", "Byrne",
                                   f"3531555{k:04d}"), [f"liam@byrne{k}.example"])  # fmt: skip
    idx.add_contact(ContactRec(9000, "x", "Liam Byrne", None, "crm", "Liam", "Byrne", "61755501234"), [])
    body = "Liam Byrne\nSite Manager | Atlas Mining\nM +61 8 9123 4567"
    assert _Signature(body).contacts_named("byrne", idx) == [26, 26]  # by the company's name and by the phone
    assert _Signature("Liam\nbyrne1234.example").contacts_named("byrne", idx) == [6234]
    assert _Signature("Liam, mobile 07 5550 1234").contacts_named("byrne", idx) == [9000]  # no company: phone
    res = attribute([person("liam.byrne77@outlook.com", "Liam Byrne"), person("sam@harborline.io", "Sam", "to")],
                    T, "Re: site visit", body, idx, TEAM)  # fmt: skip
    assert contact_ids(res) == [26]
    res = attribute([person("liam.b@gmail.com", "Liam Byrne"), person("sam@harborline.io", "Sam", "to")],
                    T, "Re: site visit", "Liam\nByrne Holdings No17", idx, TEAM)  # fmt: skip
    assert contact_ids(res) == [5017]
    res = attribute([person("liam.b@gmail.com", "Liam Byrne"), person("sam@harborline.io", "Sam", "to")],
                    T, "Re: site visit", "Liam\n+353 1 555 00", idx, TEAM)  # fmt: skip
    assert contact_ids(res) == []  # a part of a number that a hundred of them share is nobody's phone


def test_a_contact_who_moved_to_another_company_is_not_linked_to_the_old_record() -> None:
    # the CRM still has Priya at Oakridge; mail from her new employer's domain is that employer's
    res = run([person("priya.raman@kestrel.io", "Priya Raman")], "Hello from my new role")
    assert contact_ids(res) == [] and company_ids(res) == [4]
    assert [n.email for n in res.new_contacts] == ["priya.raman@kestrel.io"]


@pytest.mark.parametrize(
    ("address", "company"),
    [
        ("ops@eu.kestrel-analytics.co.uk", 4),
        ("facturacion@constructora-andina.com", 3),
        ("compras@valeverde.com.br", 7),
        ("kaigi@mail.sakura-denki.co.jp", 5),
        ("someone@other.co.uk", None),
        ("someone@valeverde.com", None),  # not their domain: only valeverde.com.br is
        ("someone@com.au", None),
    ],
)
def test_unknown_people_are_placed_by_registered_domain(address: str, company: int | None) -> None:
    res = run([person(address, "Sam Unknown")])
    assert res.contacts == []
    assert company_ids(res) == ([company] if company else [])


def test_a_thread_with_people_of_two_companies_links_both() -> None:
    res = run([person("s.obrien@kestrel-analytics.co.uk"), person("liam.byrne@atlasmining.com.au", role="cc")],
              "DataLake consolidation – joint workshop")  # fmt: skip
    assert contact_ids(res) == [20, 26] and company_ids(res) == [4, 6]
    assert deal_of(res) == 130


# ------------------------------------------------------------------------------------------- deals
UNKNOWN = {  # people the CRM does not list at each company: no role on any deal
    1: "einkauf@hohenfels.de",
    2: "compta@lumiere-editions.fr",
    3: "compras@andina.com.ar",
    4: "procurement@kestrel.io",
    5: "kobai@sakura-denki.co.jp",
    6: "site.office@atlasmining.com.au",
    7: "compras@valeverde.com.br",
    8: "ap@northgate-retail.com",
}


@pytest.mark.parametrize(
    ("company", "subject", "body", "deal"),
    [
        # German, French, Spanish and Portuguese deal names, with reply prefixes of their mail clients
        (1, "AW: Angebot Modernisierung Abfüllanlage", "", 100),
        (1, "WG: Abfuellanlage – Termin", "Anbei die Unterlagen.", 100),
        (1, "Lagerverwaltung: Einführung im Q2?", "", 101),
        (1, "Frage", "<p>Kurze Frage zur&nbsp;<b>Einf&uuml;hrung der Lagerverwaltung</b></p>", 101),
        (2, "TR: Devis refonte du site", "", 111),
        (2, "RE: Plateforme numérique – calendrier", "", 110),
        (2, "Ecommerce : budget de la refonte", "", 111),
        (3, "RV: Renovación licencias – orden de compra", "", 121),
        (3, "re: migracion erp", "", 120),
        (7, "Re: Rastreabilidade de graos – proposta", "", 160),
        (7, "ENC: Gestão de frota", "", 161),
        # camelCase, hyphens, product codes and versions, lower-case acronyms, numbers that tell deals apart
        (4, "Data lake consolidation – timeline", "", 130),
        (4, "datalake sizing", "", 130),
        (5, "S/4HANA upgrade – cutover weekend", "", 140),
        (5, "S4HANA cutover", "", 140),
        (5, "【ご相談】S/4HANA移行の件", "", 140),
        (5, "iot pilot: sensor list", "", 141),
        (8, "cdp vendor shortlist", "", 173),  # an acronym of three deal words, in lower case
        (4, "dlc: storage sizing", "", 130),  # DLC: Data Lake Consolidation (DataLake split at its capital)
        (6, "PRJ-2041 weekly status", "", 153),
        (6, "Ref PRJ2041", "", 153),
        (6, "Project Atlas phase 2 – steering committee", "", 150),
        (6, "Atlas Mining fleet telematics rollout", "", 151),
        (8, "eCommerce replatforming go-live", "", 170),
        (8, "Re: E-commerce", "Where are we with the replatforming?", 170),
        # inflected forms, a distinctive single word, emoji and list tags
        (8, "Store analytics migration plan", "", 171),
        (4, "Licence renewal quote", "", 132),
        (8, "Lighthouse – revised SOW", "", 174),
        (8, "🚀 Loyalty App launch", "", 172),
        (8, "Loyalty apps – store listing", "", 172),  # the plural of a short deal word
        (4, "Quick update", "On the data lake: let's go with option B. Thanks!", 130),  # "On ...:" is no quote
        (6, "[EXT] Re: Fleet telematics", "", 151),
    ],
)
def test_the_deal_named_in_the_mail_wins(company: int, subject: str, body: str, deal: int) -> None:
    res = run([person(UNKNOWN[company])], subject, body)
    assert deal_of(res) == deal, (res.deal_candidates, res.evidence)
    assert res.status == "auto"


@pytest.mark.parametrize(
    ("company", "subject", "body"),
    [
        # reply and forward prefixes are not acronyms of a deal (RE: Risk Engine, WG: Wartung Gärkeller)
        (4, "RE: invoice address", "Please use the new address from April."),
        (1, "WG: Rechnung März", "Bitte um Prüfung."),
        # function words of other languages are no deal words ("pour", "para", "da")
        (2, "Rendez-vous jeudi", "Merci pour votre retour, à jeudi."),
        (3, "Reunión del jueves", "Les escribo para confirmar la reunión con el equipo."),
        (7, "Reunião da próxima semana", "Podemos falar da agenda na segunda?"),
        # the company's own name is not a mention of a deal that shares a word with it
        (6, "Atlas update", "Quick update from site."),
        (8, "Northgate retail – holiday hours", "Our stores close early on Friday."),
        # a given name in lower case is no acronym (sam: Store Analytics Migrations)
        (8, "call with sam tomorrow", "Can we move it to 4pm?"),
    ],
)
def test_no_deal_is_guessed_without_a_real_mention(company: int, subject: str, body: str) -> None:
    res = run([person(UNKNOWN[company])], subject, body)
    assert res.deal is None, res.evidence
    assert res.status == "needs_review"


def test_a_quoted_reply_mentioning_another_deal_does_not_move_the_item() -> None:
    body = (
        "Looks good to me, go ahead.\n\n"
        "Am 09.03.2026 um 17:02 schrieb Bob Fairweather <rfairweather@northgate-retail.com>:\n"
        "> Quick note: the e-commerce replatforming is paused until April."
    )
    res = run([person("echen@northgate-retail.com")], "Re: Loyalty app beta feedback", body)
    assert deal_of(res) == 172


@pytest.mark.parametrize(
    "header",
    [
        "09.03.2026 17:02, Bob Fairweather пишет:",  # Thunderbird in Russian: no opening word
        "Bob Fairweather <rfairweather@northgate-retail.com>, 9 Mar 2026 Pzt, 17:02 tarihinde şunu yazdı:",
    ],
)
def test_a_quoted_reply_in_other_languages_does_not_move_the_item(header: str) -> None:
    body = f"Looks good to me, go ahead.\n\n{header}\nQuick note: the e-commerce replatforming is paused until April."
    res = run([person("echen@northgate-retail.com")], "Re: Loyalty app beta feedback", body)
    assert deal_of(res) == 172


def test_outlook_style_quote_header_in_french_is_not_the_authors_words() -> None:
    body = (
        "Parfait, merci. De : Jean-Luc Marchand Envoyé : lundi 9 mars 2026 18:04 À : Sam Reyes "
        "Objet : Plateforme de distribution numérique Nous reprenons la refonte du site e-commerce en avril."
    )
    res = run([person(UNKNOWN[2])], "RE: Solution pour les libraires – devis", body)
    assert deal_of(res) == 112


def test_a_single_distinctive_word_of_a_long_deal_name_makes_it_the_first_candidate() -> None:
    res = run([person(UNKNOWN[6])], "Tailings dam sensors")
    assert deal_of(res) in (153, None) and res.deal_candidates[0][0] == 153


def test_a_forward_keeps_the_forwarded_mail_as_its_content() -> None:
    body = (
        "Zur Info, bitte übernehmen. Von: Max Brandt Gesendet: Montag, 9. März 2026 10:00 An: Sam Reyes "
        "Betreff: Anfrage Wir möchten die Einführung der Lagerverwaltung im zweiten Quartal besprechen."
    )
    assert deal_of(run([person(UNKNOWN[1])], "WG: Anfrage", body)) == 101


def test_a_reply_prefix_is_not_read_as_an_acronym_but_the_rest_of_the_subject_is() -> None:
    assert deal_of(run([person(UNKNOWN[4])], "RE: RE model – backtesting results")) == 133


def test_a_name_written_family_name_first_needs_corroboration_like_any_other() -> None:
    res = run([person("byrne.l@outlook.com", "Byrne Liam")], "hi", "see you Saturday")
    assert res.contacts == [] and res.companies == []


def test_only_the_contacts_role_tells_open_deals_apart() -> None:
    # Liz is on one of Northgate's five open deals: it comes first, though a call may be about any of them
    liz = run([person("echen@northgate-retail.com")], "Call tomorrow?", "Does 3pm work?")
    assert deal_of(liz) in (170, None) and liz.deal_candidates[0][0] == 170
    bob = run([person("rfairweather@northgate-retail.com")], "Call tomorrow?", "Does 3pm work?")
    assert bob.deal is None and bob.status == "needs_review"
    assert {d for d, _ in bob.deal_candidates[:2]} == {171, 172}


def test_the_text_outweighs_a_role_on_another_deal() -> None:
    res = run([person("echen@northgate-retail.com")], "Loyalty app – push notifications")
    assert deal_of(res) == 172


def test_a_thread_keeps_its_deal_when_the_subject_drifts_despite_a_role_elsewhere() -> None:
    res = run([person("echen@northgate-retail.com")], "AW: AW: Termin nächste Woche", "Passt mir.", thread_deal=171)
    assert deal_of(res) == 171


def test_a_correction_on_the_thread_beats_a_mention_of_another_deal() -> None:
    res = run([person(UNKNOWN[8])], "Re: Loyalty app", "", thread_deal=173, thread_decided=True)
    assert deal_of(res) == 173


@pytest.mark.parametrize(
    ("when", "deal"),
    [
        (datetime(2025, 12, 10, 14, tzinfo=UTC), 131),  # before the 2025 renewal was won
        (datetime(2025, 12, 15, 16, tzinfo=UTC), 131),  # on its close date
        (datetime(2025, 12, 15, 23, 50, tzinfo=UTC), 131),  # late on its close date
        (datetime(2026, 1, 5, 12, tzinfo=UTC), None),  # won, and the next one not opened yet: ask
        (datetime(2026, 1, 10, 12, tzinfo=UTC), 132),  # the day the 2026 renewal was opened
        (datetime(2026, 2, 2, 9, tzinfo=UTC), 132),  # after: the open renewal
    ],
)
def test_closed_deals_at_their_date_boundaries(when: datetime, deal: int | None) -> None:
    res = run([person(UNKNOWN[4])], "Licence renewals – PO number", "", when=when)
    assert deal_of(res) == deal, res.evidence
    assert res.status == ("auto" if deal else "needs_review")


def test_the_phase_number_tells_two_phases_of_a_project_apart() -> None:
    when = datetime(2026, 1, 25, tzinfo=UTC)  # both phases open
    assert deal_of(run([person(UNKNOWN[6])], "Phase 1 acceptance sign-off", when=when)) == 152
    assert deal_of(run([person(UNKNOWN[6])], "Project Atlas phase 2 kickoff", when=when)) == 150
    # once phase 1 is won, mail about phase 1 is no longer put on it
    assert deal_of(run([person(UNKNOWN[6])], "Phase 1 acceptance – invoice query", when=T)) != 152


def test_mail_dated_before_a_deal_existed_is_not_on_it() -> None:
    res = run([person(UNKNOWN[6])], "Project Atlas phase 2 – early thoughts", when=datetime(2025, 12, 1, tzinfo=UTC))
    assert deal_of(res) != 150


def _japanese_crm() -> CrmIndex:
    idx = CrmIndex()
    idx.add_company(CompanyRec(1, "c1", "桜電機株式会社", ("sakura-denki.co.jp",)))
    idx.add_company(CompanyRec(2, "c2", "Bluepeak Logistics", ("bluepeak.com",)))
    idx.add_contact(ContactRec(10, "p10", "佐藤 春樹", 1, "crm", "春樹", "佐藤", ""), ["h.sato@sakura-denki.co.jp"])
    deals = [(100, "桜電機 – 工場IoT パイロット", 1), (101, "桜電機 – 基幹システム 刷新", 1),
             (102, "桜電機 – 保守契約 更新", 1), (103, "Platform Upgrade", 2), (104, "データ移行", 2)]  # fmt: skip
    for did, name, co in deals:
        idx.add_deal(DealRec(did, f"d{did}", name, co, "open", CREATED, None, frozenset()))
    return idx


@pytest.mark.parametrize(
    ("subject", "body", "deal", "shown"),
    [
        ("工場のパイロットの件", "よろしくお願いします。", 100, "工場 パイロット"),
        ("基幹システム刷新のお見積り", "", 101, "基幹システム 刷新"),
        ("保守契約の更新について", "ご確認ください。", 102, "保守契約 更新"),
        ("ﾊﾟｲﾛｯﾄの件（工場）", "", 100, "工場 パイロット"),  # half-width katakana, voiced marks
        ("Re: パイロットの進め方", "佐藤です。工場での実施について相談させてください。", 100, "工場 パイロット"),
        ("来週の打ち合わせ", "よろしくお願いします。", None, None),
        ("データ移行の件", "", None, None),  # another company's deal
    ],
)
def test_deal_words_of_unspaced_scripts_are_found_inside_longer_runs(
    subject: str, body: str, deal: int | None, shown: str | None
) -> None:
    """Japanese (like Chinese) writes words without spaces, with particles attached: the deal word パイロット is
    inside the run パイロットの件; ﾊﾟ (half-width) and パ (a voiced kana) are the same letter."""
    people = [person("h.sato@sakura-denki.co.jp", "佐藤 春樹"), person("sam@harborline.io", "Sam Reyes", "to")]
    res = attribute(people, T, subject, body, _japanese_crm(), TEAM)
    assert deal_of(res) == deal, res.evidence
    if shown is not None:
        assert any(f"mentions '{shown}'" in line for line in res.deal.evidence), res.deal.evidence


@pytest.mark.parametrize(
    ("text", "folded"),
    [
        ("パイロット", "パイロット"),  # voiced and semi-voiced kana stay whole
        ("ﾃﾞｰﾀ移行", "データ移行"),  # half-width katakana written full width
        ("한국어 데이터", "한국어 데이터"),  # Hangul syllables recomposed
        ("हिन्दी परियोजना", "हिन्दी परियोजना"),  # Devanagari vowel signs are part of their word
        ("Éditions_Lumière – Weiß", "editions lumiere weiss"),
    ],
)
def test_folding_keeps_the_letters_of_every_script_whole(text: str, folded: str) -> None:
    from matching.identity import fold

    assert fold(text) == folded
