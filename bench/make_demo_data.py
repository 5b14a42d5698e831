"""Generate the bundled sample data for ``inkless demo`` (agent/demo_data/), deterministically.

A made-up sales team, "Northwind Labs" (northwind.io, northwindlabs.com), seen through the mailbox and
calendar of one rep, Ana Ruiz <ana@northwind.io>, at the demo's "now" 2026-11-20T12:00:00Z:

    agent/demo_data/meta.json            now, internal domains, owner address and name
    agent/demo_data/crm/*.csv            companies, contacts, deals (generic CSV, as synthetic-dev)
    agent/demo_data/mail.mbox            one mboxrd file, inbox and sent mail
    agent/demo_data/calendar.ics         Ana's calendar (Europe/Madrid)
    agent/demo_data/truth/*.jsonl        what should be logged and attributed (synthetic-dev truth format),
                                         so ``bench/score_synthetic.py agent/demo_data`` can score a demo run

Every name, address and domain is invented for this sample. Run ``python bench/make_demo_data.py``
(``--out DIR`` to write elsewhere); the output is byte-identical on every run, and the script checks
what it wrote (stdlib mailbox, icalendar, recurring_ical_events) before it exits.
"""

from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import io
import json
import quopri
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.header import Header
from email.utils import format_datetime, formataddr
from pathlib import Path
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "agent" / "demo_data"

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
INTERNAL_DOMAINS = ["northwind.io", "northwindlabs.com"]
OWNER = "ana@northwind.io"
OWNER_NAME = "Ana Ruiz"
MADRID = ZoneInfo("Europe/Madrid")
#: truth window for meetings (as synthetic-dev): occurrences up to 30 days after now
MEETING_HORIZON = NOW + timedelta(days=30)

# --------------------------------------------------------------------------------------------------
# CRM

COMPANIES = [
    ("co1", "Halvorsen Marine AS", ["halvorsenmarine.no", "halvorsen-marine.com"]),
    ("co2", "Bluefern Analytics Ltd", ["bluefern.co.uk"]),
    ("co3", "Cedarloop Software Inc.", ["cedarloop.com"]),
    ("co4", "Lumen Orchard Foods S.L.", ["lumenorchard.es"]),
    ("co5", "Falkenried Freight GmbH", ["falkenried-freight.de"]),
    ("co6", "Saffron Row Hotels", ["saffronrow.com"]),
]

# id | first | last | email | other_emails (;) | company | title | phone | timezone (for Date headers)
CONTACTS_TABLE = """
c1|Ingrid|Halvorsen|ingrid@halvorsenmarine.no||co1|CEO|+47 22 00 41 10|Europe/Oslo
c2|Mats|Eriksen|mats.eriksen@halvorsen-marine.com||co1|Fleet IT Manager|+47 22 00 41 27|Europe/Oslo
c3|Sigrid|Nygård|sigrid.nygard@halvorsenmarine.no||co1|Crew Operations Lead|+47 22 00 41 35|Europe/Oslo
c4|Oliver|Pennington|oliver.pennington@bluefern.co.uk|olly.pennington@gmail.com|co2|Head of Data|+44 161 496 0732|Europe/London
c5|Hannah|Cole|hannah.cole@bluefern.co.uk||co2|Analytics Lead|+44 161 496 0745|Europe/London
c6|Grace|Whitfield|grace.whitfield@bluefern.co.uk||co2|Procurement Manager|+44 161 496 0781|Europe/London
c7|Jorge|Ortiz|jorge.ortiz@cedarloop.com||co3|VP Engineering|+1 416 555 0143|America/Toronto
c8|Daniel|Mensah|daniel.mensah@cedarloop.com||co3|Procurement Director|+1 416 555 0178|America/Toronto
c9|Rosa|Delgado|rosa.delgado@lumenorchard.es||co4|COO|+34 961 55 02 14|Europe/Madrid
c10|Wei|Zhang|wei.zhang@lumenorchard.es||co4|IT Director|+34 961 55 02 31|Europe/Madrid
c11|Katrin|Vogel|k.vogel@falkenried-freight.de||co5|Head of Logistics|+49 40 5550 1120|Europe/Berlin
c12|Stefan|Albrecht|s.albrecht@falkenried-freight.de||co5|CFO|+49 40 5550 1100|Europe/Berlin
c13|Élodie|Marchand|elodie.marchand@saffronrow.com||co6|Director of Operations|+33 1 70 36 42 10|Europe/Paris
c14|Rahul|Iyer|rahul.iyer@saffronrow.com||co6|Revenue Manager|+33 1 70 36 42 25|Europe/Paris
c15|Nadia|Haddad|nadia.haddad@saffronrow.com||co6|IT Manager|+33 1 70 36 42 38|Europe/Paris
"""

# id | name | company | stage | status | amount | created_at | close_date | contact ids (;)
DEALS_TABLE = """
d1|Halvorsen Marine – Fleet Telemetry Rollout|co1|Proposal|open|48000|2026-07-20T09:00:00Z|2026-12-15|c1;c2
d2|Halvorsen Marine – Crew Portal Pilot|co1|Discovery|open|12000|2026-09-01T10:30:00Z|2027-01-31|c3
d3|Bluefern – Analytics Platform Renewal 2026|co2|Closed Won|won|36000|2026-06-02T08:00:00Z|2026-09-30|c4;c6
d4|Bluefern – Data Quality Add-on|co2|Negotiation|open|9500|2026-09-15T14:00:00Z|2026-12-18|c5
d5|Cedarloop – Edge Sync Licence|co3|Closed Lost|lost|22000|2026-06-18T15:00:00Z|2026-08-28|c7;c8
d6|Lumen Orchard – Cold Chain Monitoring|co4|Qualification|open|27500|2026-09-09T08:00:00Z|2027-02-26|c9;c10
d7|Falkenried Freight – Route Optimiser|co5|Closed Won|won|41000|2026-08-24T07:30:00Z|2026-10-15|c11;c12
d8|Saffron Row – Guest Wi-Fi Analytics|co6|Proposal|open|18500|2026-09-28T13:00:00Z|2027-01-15|c13;c14;c15
"""


def _table(text: str) -> list[list[str]]:
    return [line.split("|") for line in text.strip().splitlines()]


class Contact(NamedTuple):
    id: str
    first: str
    last: str
    email: str
    other_emails: list[str]
    company: str
    title: str
    phone: str
    tz: str


class Deal(NamedTuple):
    id: str
    name: str
    company: str
    stage: str
    status: str
    amount: int
    created_at: str
    close_date: str
    contacts: list[str]


CONTACTS = [
    Contact(r[0], r[1], r[2], r[3], [e for e in r[4].split(";") if e], r[5], r[6], r[7], r[8])
    for r in _table(CONTACTS_TABLE)
]
DEALS = [Deal(r[0], r[1], r[2], r[3], r[4], int(r[5]), r[6], r[7], r[8].split(";")) for r in _table(DEALS_TABLE)]

# --------------------------------------------------------------------------------------------------
# people who appear in mail and calendar: address -> (display name, timezone)

PEOPLE: dict[str, tuple[str, str]] = {
    OWNER: (OWNER_NAME, "Europe/Madrid"),
    "marcus@northwind.io": ("Marcus Lindqvist", "Europe/Stockholm"),
    "priya@northwindlabs.com": ("Priya Raman", "Europe/London"),
    # an unknown person at Cedarloop writing from a regional subdomain
    "lotte.brenner@eu.cedarloop.com": ("Lotte Brenner", "Europe/Berlin"),
    # Oliver's personal address (listed in the CRM as his other email)
    "olly.pennington@gmail.com": ("Olly Pennington", "Europe/London"),
    # Hannah's plus-tagged address
    "hannah.cole+vendors@bluefern.co.uk": ("Hannah Cole", "Europe/London"),
    "carmen.villalba83@gmail.com": ("Carmen Villalba", "Europe/Madrid"),
    "digest@news.revopsdigest.com": ("RevOps Digest", "America/New_York"),
    "no-reply@notifications.contractflow.app": ("ContractFlow", "UTC"),
}
for _cid, _first, _last, _email, _others, _co, _title, _phone, _tz in CONTACTS:
    PEOPLE[_email] = (f"{_first} {_last}", _tz)

ANA = OWNER
MARCUS = "marcus@northwind.io"
PRIYA = "priya@northwindlabs.com"
INGRID = "ingrid@halvorsenmarine.no"
MATS = "mats.eriksen@halvorsen-marine.com"
SIGRID = "sigrid.nygard@halvorsenmarine.no"
OLIVER = "oliver.pennington@bluefern.co.uk"
OLLY = "olly.pennington@gmail.com"
HANNAH = "hannah.cole@bluefern.co.uk"
HANNAH_TAG = "hannah.cole+vendors@bluefern.co.uk"
GRACE = "grace.whitfield@bluefern.co.uk"
JORGE = "jorge.ortiz@cedarloop.com"
DANIEL = "daniel.mensah@cedarloop.com"
LOTTE = "lotte.brenner@eu.cedarloop.com"
ROSA = "rosa.delgado@lumenorchard.es"
WEI = "wei.zhang@lumenorchard.es"
KATRIN = "k.vogel@falkenried-freight.de"
STEFAN = "s.albrecht@falkenried-freight.de"
ELODIE = "elodie.marchand@saffronrow.com"
RAHUL = "rahul.iyer@saffronrow.com"
NADIA = "nadia.haddad@saffronrow.com"
CARMEN = "carmen.villalba83@gmail.com"
DIGEST = "digest@news.revopsdigest.com"
CONTRACTFLOW = "no-reply@notifications.contractflow.app"

#: customers on Microsoft 365 (Outlook-style Message-IDs and headers) -> Content-Language
MICROSOFT_DOMAINS = {"bluefern.co.uk": "en-GB", "falkenried-freight.de": "de-DE", "saffronrow.com": "fr-FR"}


def _hex(seed: str, n: int) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()[:n]


def _b32(seed: str, n: int) -> str:
    return base64.b32encode(hashlib.sha256(seed.encode()).digest()).decode().lower()[:n]


def _b64(seed: str, n: int) -> str:
    return base64.b64encode(hashlib.sha256(seed.encode()).digest() * 2).decode().replace("/", "_")[:n]


# --------------------------------------------------------------------------------------------------
# mail


@dataclass
class Mail:
    key: str
    when: str  # UTC, ISO
    frm: str
    to: list[str]
    subject: str
    body: str
    cc: list[str] = field(default_factory=list)
    reply_to: str | None = None  # key of the message this answers
    log: bool = True
    deal: str | None = None
    ambiguous: bool = False
    family: list[str] = field(default_factory=list)
    headers: list[tuple[str, str]] = field(default_factory=list)
    html: bool = False
    copies: int = 1  # >1: the same message (same Message-ID) is stored more than once
    calendar_part: str | None = None  # text/calendar attachment (METHOD:REQUEST)

    @property
    def dt(self) -> datetime:
        return datetime.fromisoformat(self.when)


def message_id(mail: Mail) -> str:
    domain = mail.frm.rsplit("@", 1)[1]
    if mail.frm in (ANA, MARCUS, PRIYA, OLLY, CARMEN):  # Google Workspace / Gmail
        return f"<CA{_b64('g' + mail.key, 44)}@mail.gmail.com>"
    if domain in MICROSOFT_DOMAINS:
        box = "AM9PR04MB" + _hex("box" + domain, 4).upper()
        return f"<{box}{_hex('o' + mail.key, 23).upper()}@{box}.eurprd04.prod.outlook.com>"
    if mail.frm == DIGEST:
        return f"<0102019a{_hex('ses' + mail.key, 8)}-{_hex('s2' + mail.key, 8)}-000000@eu-west-1.amazonses.com>"
    return f"<{_hex('m' + mail.key, 8)}.{_hex('n' + mail.key, 12)}@{domain}>"


MAILS: list[Mail] = [
    # ---- Halvorsen Marine: two open deals, named in the subjects -----------------------------------
    Mail(
        "A1",
        "2026-08-04T07:12:00Z",
        ANA,
        [INGRID],
        "Fleet telemetry rollout - next steps",
        "Hi Ingrid,\n\nThanks for the time on Friday. As promised, a short summary of the fleet telemetry\n"
        "rollout we discussed:\n\n- phase 1: six vessels on the Bergen route, gateways installed in port\n"
        "- phase 2: the remaining fleet after the winter docking window\n\nI've copied Mats so he can "
        "check the gateway requirements with his team.\nCould we book a scoping call in two weeks?\n\n"
        "Best,\nAna\n--\nAna Ruiz | Account Executive | Northwind Labs\n+34 910 55 01 23",
        cc=[MATS],
        deal="d1",
        family=["exact", "multi-deal"],
    ),
    Mail(
        "A2",
        "2026-08-05T11:40:00Z",
        MATS,
        [ANA],
        "Re: Fleet telemetry rollout - next steps",
        "Hi Ana,\n\nThe gateways look fine for us. Two questions: do you support Iridium as a fallback\n"
        "link, and can the data stay in an EU region?\n\nRegards,\nMats Eriksen\nFleet IT Manager, "
        "Halvorsen Marine",
        cc=[INGRID],
        reply_to="A1",
        deal="d1",
        family=["exact", "multi-deal"],
    ),
    Mail(
        "A3",
        "2026-08-06T08:05:00Z",
        ANA,
        [MATS],
        "Re: Fleet telemetry rollout - next steps",
        "Hi Mats,\n\nYes to both: Iridium fallback is supported and we host in Frankfurt. I'll send the\n"
        "scoping call invite for the 18th.\n\nBest,\nAna",
        cc=[INGRID],
        reply_to="A2",
        deal="d1",
        family=["exact", "multi-deal"],
    ),
    Mail(
        "A4",
        "2026-10-21T13:22:00Z",
        INGRID,
        [ANA],
        "Re: Fleet telemetry rollout - next steps",
        "Ana,\n\nWe went through the proposal with the board. Phase 1 is approved in principle; we\n"
        "would like the price for phase 2 split per vessel.\n\nIngrid",
        cc=[MATS],
        reply_to="A3",
        deal="d1",
        family=["exact", "multi-deal"],
    ),
    Mail(
        "B1",
        "2026-09-14T06:48:00Z",
        SIGRID,
        [ANA],
        "Crew portal pilot – spørsmål om pålogging",
        "Hei Ana,\n\nSorry for the Norwegian subject, our captains asked: can crew members log in to the\n"
        "portal with their existing Microsoft accounts during the pilot?\n\nMed vennlig hilsen,\n"
        "Sigrid Nygård\nCrew Operations Lead, Halvorsen Marine",
        deal="d2",
        family=["exact", "multi-deal", "encoded-header"],
    ),
    Mail(
        "B2",
        "2026-09-15T09:10:00Z",
        ANA,
        [SIGRID],
        "Re: Crew portal pilot – spørsmål om pålogging",
        "Hei Sigrid,\n\nYes, single sign-on with Microsoft Entra ID is included in the pilot. I'll share\n"
        "the setup guide once the pilot agreement is signed.\n\nBest,\nAna",
        reply_to="B1",
        deal="d2",
        family=["exact", "multi-deal", "encoded-header"],
    ),
    Mail(
        "B3",
        "2026-11-03T10:30:00Z",
        INGRID,
        [ANA],
        "Invoice address update",
        "Hi Ana,\n\nPlease note our new invoice address from 1 December:\nHalvorsen Marine AS, Strandkaien 14, "
        "5013 Bergen.\nSigrid (cc) will confirm the PO numbers.\n\nIngrid",
        cc=[SIGRID],
        deal=None,
        ambiguous=True,
        family=["exact", "ambiguous-deal"],
    ),
    Mail(
        "B4",
        "2026-11-09T08:15:00Z",
        SIGRID,
        [ANA],
        "Questions from our captains",
        "Hi Ana,\n\nThree more questions came in from the captains:\n1. Can the roster be exported to PDF?\n"
        "2. Does the app work offline at sea?\n3. Can we add our own safety checklists?\n\nThanks,\nSigrid",
        deal="d2",
        family=["exact", "deal-by-contact"],
    ),
    # ---- Bluefern: renewal won on 30 Sept, add-on opened 15 Sept -------------------------------------
    Mail(
        "C1",
        "2026-08-11T14:02:00Z",
        OLIVER,
        [ANA],
        "Renewal 2026 - usage figures",
        "Hi Ana,\n\nAhead of the renewal, could you send us the usage figures for the last twelve\n"
        "months? Finance wants to see the number of active dashboards.\n\nCheers,\nOliver",
        html=True,
        deal="d3",
        family=["exact", "closed-vs-open"],
    ),
    Mail(
        "C2",
        "2026-08-12T08:30:00Z",
        ANA,
        [OLIVER],
        "Re: Renewal 2026 - usage figures",
        "Hi Oliver,\n\nAttached are the figures: 214 active dashboards, 61 weekly users. I've copied\n"
        "Grace for the purchase order on the renewal.\n\nBest,\nAna",
        cc=[GRACE],
        reply_to="C1",
        deal="d3",
        family=["exact", "closed-vs-open"],
    ),
    Mail(
        "C3",
        "2026-09-02T20:47:00Z",
        OLLY,
        [ANA],
        "Renewal - signed copy tonight",
        "Ana - on the train, sending from my personal account. Signed the renewal order form,\n"
        "Grace will send it with the PO tomorrow.\n\nOlly",
        deal="d3",
        family=["alias-normalise", "closed-vs-open"],
    ),
    Mail(
        "C4",
        "2026-09-29T09:55:00Z",
        GRACE,
        [ANA],
        "PO for analytics platform renewal",
        "Dear Ana,\n\nPlease find our purchase order PO-BF-20417 for the analytics platform renewal.\n"
        "Invoices to ap@bluefern.co.uk, please.\n\nKind regards,\nGrace Whitfield\nProcurement Manager",
        html=True,
        deal="d3",
        family=["exact", "closed-vs-open"],
    ),
    Mail(
        "C5",
        "2026-10-20T15:05:00Z",
        OLIVER,
        [ANA],
        "Data quality add-on pricing",
        "Hi Ana,\n\nNow that the renewal is done: what would the data quality add-on cost for the\n"
        "three analytics teams? Hannah is running the trial.\n\nOliver",
        deal="d4",
        family=["exact", "closed-vs-open", "multi-deal"],
    ),
    Mail(
        "D1",
        "2026-10-06T07:20:00Z",
        ANA,
        [HANNAH],
        "Data quality add-on - trial setup",
        "Hi Hannah,\n\nYour trial workspace for the data quality add-on is ready. The first checks run\n"
        "nightly at 02:00 UTC; results show up under Monitors.\n\nBest,\nAna",
        deal="d4",
        family=["exact"],
        copies=2,
    ),
    Mail(
        "D2",
        "2026-10-07T12:41:00Z",
        HANNAH_TAG,
        [ANA],
        "Re: Data quality add-on - trial setup",
        "Hi Ana,\n\nWorks nicely. Could we get a weekly check-in on Thursdays while the trial runs?\n\nHannah",
        reply_to="D1",
        html=True,
        deal="d4",
        family=["alias-normalise"],
    ),
    Mail(
        "D3",
        "2026-11-12T16:00:00Z",
        ANA,
        [HANNAH],
        "Re: Data quality add-on - trial setup",
        "Hi Hannah,\n\nAs discussed I moved this week's check-in to Friday 11:00. Quote for the three\n"
        "teams follows on Monday.\n\nBest,\nAna",
        reply_to="D2",
        deal="d4",
        family=["exact"],
    ),
    # ---- Cedarloop: deal lost on 28 Aug; a reply from an unknown colleague on a subdomain -------------
    Mail(
        "E1",
        "2026-07-28T15:30:00Z",
        ANA,
        [JORGE],
        "Edge Sync licence - proposal",
        "Hi Jorge,\n\nAs promised, the Edge Sync licence proposal for 40 sites is attached. The price\n"
        "includes the first year of support.\n\nBest,\nAna",
        deal="d5",
        family=["exact", "closed-vs-open"],
    ),
    Mail(
        "E2",
        "2026-08-03T09:12:00Z",
        LOTTE,
        [ANA],
        "Re: Edge Sync licence - proposal",
        "Hello Ana,\n\nI lead the European sites for Jorge. Does the licence cover our Berlin and Lyon\n"
        "data centres, or only the edge devices?\n\nBest regards,\nLotte Brenner\nCedarloop Europe",
        cc=[JORGE],
        reply_to="E1",
        deal="d5",
        family=["unknown-at-company", "closed-vs-open"],
    ),
    Mail(
        "E3",
        "2026-08-27T18:40:00Z",
        DANIEL,
        [ANA],
        "Edge Sync licence - decision",
        "Hi Ana,\n\nThank you for the proposal and the time your team invested. We have decided to go\n"
        "with an in-house solution this year, so we will not move forward with the Edge Sync licence.\n\n"
        "Daniel Mensah\nProcurement Director, Cedarloop",
        cc=[JORGE],
        deal="d5",
        family=["exact", "closed-vs-open"],
    ),
    Mail(
        "E4",
        "2026-10-29T14:10:00Z",
        ANA,
        [JORGE],
        "Checking in",
        "Hi Jorge,\n\nHope the in-house build is going well. If you hit scaling issues at the edge, I'm\n"
        "happy to share what other teams did.\n\nBest,\nAna",
        deal=None,
        family=["exact", "closed-vs-open"],
    ),
    # ---- Lumen Orchard: one open deal ----------------------------------------------------------------
    Mail(
        "F1",
        "2026-09-08T07:35:00Z",
        ROSA,
        [ANA],
        "Cold chain monitoring for our Valencia warehouse",
        "Hola Ana,\n\nWe met at the logistics fair in Valencia. We need temperature monitoring for two\n"
        "cold rooms and twelve trucks.\nFrom what I saw at your stand, your sensors would fit our trucks.\n"
        "Could you send some information?\n\nUn saludo,\nRosa Delgado\nCOO, Lumen Orchard Foods",
        deal="d6",
        family=["exact"],
    ),
    Mail(
        "F2",
        "2026-09-08T10:02:00Z",
        ANA,
        [ROSA],
        "Re: Cold chain monitoring for our Valencia warehouse",
        "Hola Rosa,\n\nGreat to hear from you. I've copied Wei for the IT side; shall we do an intro call\n"
        "on Thursday at 16:00?\n\nUn saludo,\nAna",
        cc=[WEI],
        reply_to="F1",
        deal="d6",
        family=["exact"],
    ),
    Mail(
        "F3",
        "2026-11-16T08:50:00Z",
        WEI,
        [ANA],
        "Re: Cold chain monitoring - sensor list",
        "Hi Ana,\n\nHere is our sensor list: 24 probes for the cold rooms, 12 truck units. I've sent an\n"
        "invitation for a walkthrough on Tuesday 24th.\n\nWei",
        cc=[ROSA],
        reply_to="F2",
        deal="d6",
        family=["exact"],
    ),
    Mail(
        "F4",
        "2026-11-17T09:05:00Z",
        ANA,
        [WEI],
        "Re: Cold chain monitoring - sensor list",
        "Hi Wei,\n\nThanks, accepted. I'll bring a truck unit to show the installation.\n\nAna",
        cc=[ROSA],
        reply_to="F3",
        deal="d6",
        family=["exact"],
    ),
    # ---- Falkenried Freight: deal won on 15 Oct ---------------------------------------------------------
    Mail(
        "G1",
        "2026-09-22T08:00:00Z",
        ANA,
        [KATRIN],
        "Route optimiser - contract draft",
        "Hi Katrin,\n\nPlease find the contract draft for the route optimiser. Stefan asked for the\n"
        "payment terms in section 7.\n\nBest regards,\nAna",
        deal="d7",
        family=["exact", "closed-vs-open"],
    ),
    Mail(
        "G2",
        "2026-09-23T13:15:00Z",
        STEFAN,
        [ANA],
        "Re: Route optimiser - contract draft",
        "Dear Ana,\n\nSection 7 works for us if we can pay quarterly. Katrin is out this week; she is\n"
        "back on the 28th.\n\nBest regards,\nStefan Albrecht\nCFO, Falkenried Freight GmbH",
        cc=[KATRIN],
        reply_to="G1",
        html=True,
        deal="d7",
        family=["exact", "closed-vs-open"],
    ),
    Mail(
        "G3",
        "2026-10-14T07:45:00Z",
        KATRIN,
        [ANA],
        "Signed: Route optimiser order form",
        "Hello Ana,\n\nThe signed order form is attached. Looking forward to the rollout.\n\nKatrin",
        cc=[STEFAN],
        html=True,
        deal="d7",
        family=["exact", "closed-vs-open"],
    ),
    # ---- Saffron Row ---------------------------------------------------------------------------------
    Mail(
        "H1",
        "2026-10-01T12:20:00Z",
        ELODIE,
        [ANA],
        "Guest Wi-Fi analytics – pilot hotels",
        "Bonjour Ana,\n\nWe would like to run the guest Wi-Fi analytics pilot in our Lyon and Nantes\n"
        "hotels. Who should our IT manager talk to?\n\nBien cordialement,\nÉlodie Marchand\n"
        "Directrice des opérations, Saffron Row Hotels",
        html=True,
        deal="d8",
        family=["exact", "encoded-header"],
    ),
    Mail(
        "H2",
        "2026-10-02T08:10:00Z",
        ANA,
        [ELODIE],
        "Re: Guest Wi-Fi analytics – pilot hotels",
        "Bonjour Élodie,\n\nGreat choice of hotels. I've copied Rahul for the revenue reports and Nadia\n"
        "for the access points. Our kickoff slot would be early December.\n\nBien cordialement,\nAna",
        cc=[RAHUL, NADIA],
        reply_to="H1",
        deal="d8",
        family=["exact", "encoded-header"],
    ),
    Mail(
        "H3",
        "2026-11-18T10:25:00Z",
        NADIA,
        [ANA],
        "Re: Guest Wi-Fi analytics – access points list",
        "Hi Ana,\n\nAttached is the access point list for both hotels (86 APs, all on firmware 7.2).\n\nNadia",
        reply_to="H2",
        deal="d8",
        family=["exact", "encoded-header"],
    ),
    # ---- two customers on one mail -------------------------------------------------------------------
    Mail(
        "K1",
        "2026-11-05T10:00:00Z",
        ANA,
        [ROSA, KATRIN],
        "Intro: Falkenried Freight as a reference for cold chain",
        "Hi Rosa, hi Katrin,\n\nAs promised, an introduction. Katrin's team runs our route optimiser on\n"
        "their refrigerated trucks and kindly offered to share their experience for the cold chain\n"
        "monitoring project at Lumen Orchard. I'll let you two find a time.\n\nBest,\nAna",
        deal="d6",
        family=["exact", "multi-company"],
    ),
    # ---- never logged --------------------------------------------------------------------------------
    Mail(
        "N1",
        "2026-08-14T07:30:00Z",
        MARCUS,
        [ANA],
        "Halvorsen demo prep",
        "Ana,\n\nFor the Halvorsen scoping call on Tuesday: do you want me to show the Iridium\n"
        "fallback live? I can bring the test gateway.\n\nMarcus",
        cc=[PRIYA],
        log=False,
        family=["internal"],
    ),
    Mail(
        "N2",
        "2026-08-14T08:02:00Z",
        ANA,
        [MARCUS],
        "Re: Halvorsen demo prep",
        "Yes please, Mats will ask about it. Thanks!\n\nAna",
        cc=[PRIYA],
        reply_to="N1",
        log=False,
        family=["internal"],
    ),
    Mail(
        "N3",
        "2026-08-28T07:10:00Z",
        ANA,
        [PRIYA],
        "Fwd: Edge Sync licence - decision",
        "Priya, FYI - we lost Cedarloop to an in-house build. Notes for the pipeline review below.\n\n"
        "---------- Forwarded message ---------\nFrom: Daniel Mensah <daniel.mensah@cedarloop.com>\n"
        "Date: Thu, 27 Aug 2026 at 14:40\nSubject: Edge Sync licence - decision\n\n"
        "We have decided to go with an in-house solution this year.",
        log=False,
        family=["internal"],
    ),
    Mail(
        "N4",
        "2026-09-10T13:00:00Z",
        DIGEST,
        [ANA],
        "5 ways to shorten your sales cycle this quarter",
        "RevOps Digest - Week 37\n\n1. Stop chasing unqualified leads\n2. Let the CRM log itself\n"
        "3. Multi-thread every deal\n4. Mutual action plans\n5. Review stale deals on Mondays\n\n"
        "You receive this because you subscribed at revopsdigest.com.\nUnsubscribe: "
        "https://news.revopsdigest.com/u/7c1e2a",
        html=True,
        log=False,
        family=["newsletter"],
        headers=[
            ("List-Id", "RevOps Digest Weekly <weekly.news.revopsdigest.com>"),
            (
                "List-Unsubscribe",
                (
                    "<mailto:unsubscribe@news.revopsdigest.com?subject=unsub-7c1e2a>, "
                    "<https://news.revopsdigest.com/u/7c1e2a>"
                ),
            ),
            ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
            ("Precedence", "bulk"),
            ("Feedback-ID", "7c1e2a:weekly:revopsdigest"),
        ],
    ),
    Mail(
        "N5",
        "2026-10-13T16:21:00Z",
        CONTRACTFLOW,
        [ANA],
        'Stefan Albrecht viewed "Falkenried Freight - Route optimiser order form"',
        "Hi Ana Ruiz,\n\nStefan Albrecht (s.albrecht@falkenried-freight.de) viewed your document\n"
        '"Falkenried Freight - Route optimiser order form" on 13 Oct 2026, 18:21 CEST.\n\n'
        "This is an automated notification, please do not reply.\nContractFlow",
        log=False,
        family=["automated"],
        headers=[("Auto-Submitted", "auto-generated"), ("X-Auto-Response-Suppress", "All")],
    ),
    Mail(
        "N6",
        "2026-09-22T08:01:00Z",
        KATRIN,
        [ANA],
        "Automatische Antwort: Route optimiser - contract draft",
        "Vielen Dank für Ihre Nachricht. Ich bin bis zum 28.09. nicht im Büro und habe nur\n"
        "eingeschränkt Zugriff auf meine E-Mails. In dringenden Fällen wenden Sie sich bitte an\n"
        "logistik@falkenried-freight.de.\n\nThank you for your message. I am out of the office until 28 Sept.\n\n"
        "Katrin Vogel",
        reply_to="G1",
        log=False,
        family=["automated", "out-of-office"],
        headers=[("Auto-Submitted", "auto-replied"), ("X-Auto-Response-Suppress", "All")],
    ),
    Mail(
        "N7",
        "2026-09-17T18:05:00Z",
        CARMEN,
        [ANA],
        "Dinner on Saturday?",
        "Hola guapa!\n\nAre you free on Saturday? Javi found a new place in Lavapiés. 21:30?\n\nBesos,\nCarmen",
        log=False,
        family=["personal"],
    ),
    Mail(
        "N8",
        "2026-09-17T19:12:00Z",
        ANA,
        [CARMEN],
        "Re: Dinner on Saturday?",
        "Yes! 21:30 is perfect. See you there.\n\nAna",
        reply_to="N7",
        log=False,
        family=["personal"],
    ),
    Mail(
        "N9",
        "2026-11-13T09:30:00Z",
        WEI,
        [ANA],
        "Invitation: Sensor walkthrough @ Tue 24 Nov 2026 15:00 - 16:00 (CET) (ana@northwind.io)",
        "Wei Zhang has invited you to: Sensor walkthrough\n\nWhen: Tue 24 Nov 2026 15:00 - 16:00 (CET)\n"
        "Where: Lumen Orchard, Almacén 3, Paterna (Valencia)\n\nGoing? Yes - Maybe - No",
        cc=[ROSA],
        log=False,
        family=["invite-email"],
        calendar_part="M4",
    ),
]

# --------------------------------------------------------------------------------------------------
# calendar


@dataclass
class Event:
    key: str
    uid: str
    summary: str
    start: datetime  # local Madrid time, naive
    minutes: int
    organizer: str | None
    attendees: list[tuple[str, str]]  # (address, PARTSTAT)
    status: str = "CONFIRMED"
    location: str = ""
    rrule_until_utc: datetime | None = None  # weekly, same weekday
    exdates: list[datetime] = field(default_factory=list)  # local
    overrides: dict[datetime, datetime] = field(default_factory=dict)  # original local start -> new local start
    log: bool = True
    deal: str | None = None
    family: list[str] = field(default_factory=list)
    sequence: int = 0
    created: datetime | None = None  # UTC; default 12 days before the start, never after now

    def created_at(self) -> datetime:
        if self.created is not None:
            return self.created
        return min(madrid_to_utc(self.start) - timedelta(days=12, hours=3, minutes=17), NOW - timedelta(days=6))


def _google_uid(key: str) -> str:
    return _b32("uid" + key, 26) + "@google.com"


def _outlook_uid(key: str) -> str:
    return (
        "040000008200E00074C5B7101A82E00800000000"
        + _hex("ol" + key, 16).upper()
        + "0" * 16
        + "10000000"
        + (_hex("ol2" + key, 32).upper())
    )


def _meet(key: str) -> str:
    code = _b32("meet" + key, 10).replace("2", "a").replace("3", "b").replace("4", "c").replace("5", "d")
    code = code.replace("6", "e").replace("7", "f")
    return f"https://meet.google.com/{code[:3]}-{code[3:7]}-{code[7:10]}"


ACC = "ACCEPTED"
EVENTS: list[Event] = [
    Event(
        "M1",
        _google_uid("M1"),
        "Halvorsen Marine - fleet telemetry scoping",
        datetime(2026, 8, 18, 10, 0),
        60,
        ANA,
        [(ANA, ACC), (INGRID, ACC), (MATS, ACC), (MARCUS, ACC)],
        location=_meet("M1"),
        deal="d1",
        family=["meeting-external", "meeting-deal", "multi-deal"],
    ),
    Event(
        "M2",
        _google_uid("M2"),
        "Lumen Orchard - intro call",
        datetime(2026, 9, 10, 16, 0),
        45,
        ANA,
        [(ANA, ACC), (ROSA, ACC), (WEI, "TENTATIVE")],
        location=_meet("M2"),
        created=datetime(2026, 9, 8, 10, 40, tzinfo=UTC),
        deal="d6",
        family=["meeting-external", "meeting-deal"],
    ),
    Event(
        "M3",
        _google_uid("M3"),
        "Falkenried Freight - contract review",
        datetime(2026, 10, 8, 11, 0),
        60,
        ANA,
        [(ANA, ACC), (KATRIN, ACC), (STEFAN, ACC)],
        location=_meet("M3"),
        deal="d7",
        family=["meeting-external", "meeting-deal", "closed-vs-open"],
    ),
    Event(
        "M4",
        _outlook_uid("M4"),
        "Sensor walkthrough",
        datetime(2026, 11, 24, 15, 0),
        60,
        WEI,
        [(WEI, ACC), (ANA, ACC), (ROSA, "NEEDS-ACTION")],
        location="Lumen Orchard, Almacén 3, Paterna (Valencia)",
        created=datetime(2026, 11, 13, 9, 29, tzinfo=UTC),
        deal="d6",
        family=["meeting-external", "meeting-deal", "upcoming"],
    ),
    Event(
        "M5",
        _google_uid("M5"),
        "Saffron Row - guest Wi-Fi analytics pilot kickoff",
        datetime(2026, 12, 3, 10, 0),
        90,
        ANA,
        [(ANA, ACC), (ELODIE, ACC), (RAHUL, "NEEDS-ACTION"), (NADIA, ACC)],
        location=_meet("M5"),
        deal="d8",
        family=["meeting-external", "meeting-deal", "upcoming"],
    ),
    Event(
        "M6",
        _google_uid("M6"),
        "Halvorsen Marine - crew portal demo",
        datetime(2026, 12, 10, 16, 30),
        45,
        ANA,
        [(ANA, ACC), (SIGRID, ACC)],
        location=_meet("M6"),
        deal="d2",
        family=["meeting-external", "meeting-deal", "multi-deal", "upcoming"],
    ),
    # weekly on Thursdays 09:30 Madrid: crosses the end of summer time (25 Oct), one week skipped,
    # one occurrence moved from Thursday 12 Nov to Friday 13 Nov 11:00
    Event(
        "R1",
        _google_uid("R1"),
        "Bluefern - data quality trial check-in",
        datetime(2026, 10, 8, 9, 30),
        30,
        ANA,
        [(ANA, ACC), (HANNAH, ACC), (OLIVER, ACC)],
        location=_meet("R1"),
        rrule_until_utc=datetime(2026, 12, 17, 8, 30, tzinfo=UTC),
        exdates=[datetime(2026, 10, 29, 9, 30)],
        overrides={datetime(2026, 11, 12, 9, 30): datetime(2026, 11, 13, 11, 0)},
        created=datetime(2026, 10, 7, 14, 3, tzinfo=UTC),
        deal="d4",
        family=["meeting-external", "meeting-recurring", "meeting-deal"],
    ),
    Event(
        "X1",
        _google_uid("X1"),
        "Pipeline review",
        datetime(2026, 11, 16, 10, 0),
        45,
        PRIYA,
        [(PRIYA, ACC), (ANA, ACC), (MARCUS, ACC)],
        location=_meet("X1"),
        log=False,
        family=["meeting-internal"],
    ),
    Event(
        "X2",
        _google_uid("X2"),
        "Cedarloop - Edge Sync follow-up",
        datetime(2026, 9, 3, 17, 0),
        30,
        ANA,
        [(ANA, ACC), (JORGE, ACC), (DANIEL, "NEEDS-ACTION")],
        location=_meet("X2"),
        status="CANCELLED",
        log=False,
        family=["meeting-cancelled"],
        sequence=1,
    ),
    Event(
        "X3",
        _outlook_uid("X3"),
        "Falkenried Freight - partner dinner Hamburg",
        datetime(2026, 10, 22, 19, 0),
        150,
        KATRIN,
        [(KATRIN, ACC), (ANA, "DECLINED"), (STEFAN, ACC)],
        location="Restaurant Elbblick, Hamburg",
        log=False,
        family=["meeting-declined"],
    ),
    Event(
        "X4",
        _google_uid("X4"),
        "Dentist",
        datetime(2026, 11, 4, 18, 30),
        60,
        None,
        [],
        location="Clínica Dental Arganzuela",
        log=False,
        family=["meeting-personal"],
    ),
]

VTIMEZONE_MADRID = [
    "BEGIN:VTIMEZONE",
    "TZID:Europe/Madrid",
    "X-LIC-LOCATION:Europe/Madrid",
    "BEGIN:DAYLIGHT",
    "TZOFFSETFROM:+0100",
    "TZOFFSETTO:+0200",
    "TZNAME:CEST",
    "DTSTART:19700329T020000",
    "RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU",
    "END:DAYLIGHT",
    "BEGIN:STANDARD",
    "TZOFFSETFROM:+0200",
    "TZOFFSETTO:+0100",
    "TZNAME:CET",
    "DTSTART:19701025T030000",
    "RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU",
    "END:STANDARD",
    "END:VTIMEZONE",
]


def madrid_to_utc(local: datetime) -> datetime:
    return local.replace(tzinfo=MADRID).astimezone(UTC)


def occurrences(event: Event) -> list[tuple[datetime | None, datetime]]:
    """(recurrence id in UTC or None, start in UTC) for every occurrence up to the truth horizon."""
    if event.rrule_until_utc is None:
        return [(None, madrid_to_utc(event.start))]
    out: list[tuple[datetime | None, datetime]] = []
    local = event.start
    while madrid_to_utc(local) <= event.rrule_until_utc:
        if local not in event.exdates:
            start = event.overrides.get(local, local)
            out.append((madrid_to_utc(local), madrid_to_utc(start)))
        local += timedelta(days=7)
    return out


def _ics_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,").replace("\n", "\\n")


def _fold(line: str) -> list[str]:
    """Fold a content line at 75 octets without splitting a UTF-8 character (RFC 5545 3.1)."""
    out: list[str] = []
    current = ""
    limit = 75
    for ch in line:
        if len((current + ch).encode()) > limit:
            out.append(current)
            current = " "
            limit = 75
        current += ch
    out.append(current)
    return out


def _ics_dt(local: datetime) -> str:
    return local.strftime("%Y%m%dT%H%M%S")


def _utc_stamp(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def _who(addr: str) -> str:
    return PEOPLE[addr][0]


def vevent_lines(
    event: Event,
    start: datetime,
    recurrence_id: datetime | None = None,
    *,
    master: bool = True,
    sequence: int | None = None,
    stamp: datetime = NOW,
) -> list[str]:
    end = start + timedelta(minutes=event.minutes)
    lines = [
        "BEGIN:VEVENT",
        f"DTSTART;TZID=Europe/Madrid:{_ics_dt(start)}",
        f"DTEND;TZID=Europe/Madrid:{_ics_dt(end)}",
        f"DTSTAMP:{_utc_stamp(stamp)}",
        f"UID:{event.uid}",
    ]
    if recurrence_id is not None:
        lines.append(f"RECURRENCE-ID;TZID=Europe/Madrid:{_ics_dt(recurrence_id)}")
    if master and event.rrule_until_utc is not None:
        lines.append(f"RRULE:FREQ=WEEKLY;UNTIL={_utc_stamp(event.rrule_until_utc)};BYDAY=TH")
        lines.extend(f"EXDATE;TZID=Europe/Madrid:{_ics_dt(ex)}" for ex in event.exdates)
    if event.organizer:
        lines.append(f'ORGANIZER;CN="{_who(event.organizer)}":mailto:{event.organizer}')
    for addr, partstat in event.attendees:
        rsvp = "TRUE" if partstat == "NEEDS-ACTION" else "FALSE"
        lines.append(
            f'ATTENDEE;CN="{_who(addr)}";CUTYPE=INDIVIDUAL;PARTSTAT={partstat};ROLE=REQ-PARTICIPANT;'
            f"RSVP={rsvp}:mailto:{addr}"
        )
    created = event.created_at()
    # an override was edited on the day of the occurrence it moves
    modified = madrid_to_utc(recurrence_id) + timedelta(hours=7) if recurrence_id else created + timedelta(hours=2)
    lines += [
        f"CREATED:{_utc_stamp(created)}",
        f"LAST-MODIFIED:{_utc_stamp(modified)}",
        f"SEQUENCE:{event.sequence if sequence is None else sequence}",
        f"SUMMARY:{_ics_escape(event.summary)}",
    ]
    if event.location:
        lines.append(f"LOCATION:{_ics_escape(event.location)}")
        if event.location.startswith("https://meet.google.com/"):
            lines.append(f"DESCRIPTION:{_ics_escape('Join with Google Meet: ' + event.location)}")
    lines += [f"STATUS:{event.status}", "TRANSP:OPAQUE", "END:VEVENT"]
    return lines


def render_calendar(events: list[Event], method: str | None = None, stamp: datetime = NOW) -> str:
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        "PRODID:-//Google Inc//Google Calendar 70.9054//EN",
        "CALSCALE:GREGORIAN",
        f"METHOD:{method or 'PUBLISH'}",
    ]
    if method is None:
        lines += [f"X-WR-CALNAME:{OWNER}", "X-WR-TIMEZONE:Europe/Madrid"]
    lines += VTIMEZONE_MADRID
    for event in events:
        lines += vevent_lines(event, event.start, stamp=stamp)
        for original, moved in event.overrides.items():
            lines += vevent_lines(event, moved, original, master=False, sequence=event.sequence + 1, stamp=stamp)
    lines.append("END:VCALENDAR")
    return "".join(part + "\r\n" for line in lines for part in _fold(line))


# --------------------------------------------------------------------------------------------------
# rendering mail


def _addr(addr: str) -> str:
    name = PEOPLE[addr][0]
    return formataddr((name, addr), charset="utf-8")


def _header_value(text: str) -> str:
    if text.isascii():
        return text
    return Header(text, "utf-8").encode(linesep="\n", maxlinelen=76)


def _encode_body(text: str) -> tuple[str, str]:
    """(Content-Transfer-Encoding, encoded text) with LF line ends."""
    if text.isascii():
        return "7bit", text
    return "quoted-printable", quopri.encodestring(text.encode("utf-8")).decode("ascii")


def _html(text: str) -> str:
    import html

    paras = [f"<p>{html.escape(p).replace(chr(10), '<br>')}</p>" for p in text.split("\n\n")]
    return '<html><body><div dir="ltr">' + "".join(paras) + "</div></body></html>"


def _quote(parent: Mail, when_local: datetime) -> str:
    who = PEOPLE[parent.frm][0]
    stamp = when_local.strftime("%a, %d %b %Y at %H:%M")
    first = parent.body.strip().split("\n\n")[1] if "\n\n" in parent.body else parent.body
    quoted = "\n".join("> " + ln for ln in first.split("\n"))
    return f"\n\nOn {stamp}, {who} <{parent.frm}> wrote:\n{quoted}"


def render_mail(mail: Mail, by_key: dict[str, Mail], mids: dict[str, str]) -> str:
    tz = ZoneInfo(PEOPLE[mail.frm][1])
    local = mail.dt.astimezone(tz)
    mid = mids[mail.key]
    inbound = mail.frm != OWNER
    headers: list[tuple[str, str]] = []
    domain = mail.frm.rsplit("@", 1)[1]
    microsoft = domain in MICROSOFT_DOMAINS
    if inbound:
        if domain == "gmail.com" or domain in INTERNAL_DOMAINS:
            relay = "mail-sor-f" + str(40 + int(_hex("r" + mail.key, 2), 16) % 20) + ".google.com"
        elif microsoft:
            relay = (
                "mail-am6eur05on20"
                + str(60 + int(_hex("r" + mail.key, 2), 16) % 40)
                + ".outbound.protection.outlook.com"
            )
        elif mail.frm == DIGEST:
            relay = "a48-112.smtp-out.eu-west-1.amazonses.com"
        else:
            relay = f"mx1.{domain}"
        headers.append(("Delivered-To", OWNER))
        headers.append(
            (
                "Received",
                (
                    f"from {relay} ({relay} [198.51.100.{int(_hex('ip' + mail.key, 2), 16) % 250 + 2}])\n"
                    f"        by mx.google.com with ESMTPS id {_hex('id' + mail.key, 12)}\n"
                    f"        for <{OWNER}>; {format_datetime(mail.dt + timedelta(seconds=19))}"
                ),
            )
        )
    headers.append(("Return-Path", f"<{'bounces+7c1e2a@news.revopsdigest.com' if mail.frm == DIGEST else mail.frm}>"))
    headers.append(("MIME-Version", "1.0"))
    headers.append(("Date", format_datetime(local)))
    headers.append(("Message-ID", mid))
    subject = mail.subject
    body = mail.body
    if mail.reply_to is not None:
        parent = by_key[mail.reply_to]
        refs: list[str] = []
        chain: Mail | None = parent
        while chain is not None:
            refs.insert(0, mids[chain.key])
            chain = by_key[chain.reply_to] if chain.reply_to else None
        headers.append(("In-Reply-To", mids[parent.key]))
        headers.append(("References", "\n ".join(refs)))
        if "out-of-office" not in mail.family:
            body += _quote(parent, parent.dt.astimezone(tz))
    headers.append(("Subject", _header_value(subject)))
    headers.append(("From", _addr(mail.frm)))
    headers.append(("To", ", ".join(_addr(a) for a in mail.to)))
    if mail.cc:
        headers.append(("Cc", ", ".join(_addr(a) for a in mail.cc)))
    headers.extend(mail.headers)
    if microsoft:
        headers.append(("Thread-Topic", _header_value(subject.split(": ", 1)[-1])))
        headers.append(("Content-Language", MICROSOFT_DOMAINS[domain]))

    boundary = "000000000000" + _hex("b" + mail.key, 14)
    cte, text = _encode_body(body.rstrip("\n") + "\n")
    if mail.calendar_part is not None:
        event = next(e for e in EVENTS if e.key == mail.calendar_part)
        ics = render_calendar([event], method="REQUEST", stamp=mail.dt)
        ics_b64 = base64.encodebytes(ics.encode("utf-8")).decode("ascii")
        headers.append(("Content-Type", f'multipart/alternative; boundary="{boundary}"'))
        payload = (
            f'--{boundary}\nContent-Type: text/plain; charset="UTF-8"\nContent-Transfer-Encoding: {cte}\n\n{text}'
            f'--{boundary}\nContent-Type: text/calendar; charset="UTF-8"; method=REQUEST\n'
            f"Content-Transfer-Encoding: base64\n\n{ics_b64}--{boundary}--\n"
        )
    elif mail.html:
        hcte, htext = _encode_body(_html(body) + "\n")
        if hcte == "7bit":
            hcte, htext = "quoted-printable", quopri.encodestring(htext.encode()).decode("ascii")
        headers.append(("Content-Type", f'multipart/alternative; boundary="{boundary}"'))
        payload = (
            f'--{boundary}\nContent-Type: text/plain; charset="UTF-8"\nContent-Transfer-Encoding: {cte}\n\n{text}'
            f'--{boundary}\nContent-Type: text/html; charset="UTF-8"\nContent-Transfer-Encoding: {hcte}\n\n'
            f"{htext}--{boundary}--\n"
        )
    else:
        headers.append(("Content-Type", 'text/plain; charset="UTF-8"'))
        headers.append(("Content-Transfer-Encoding", cte))
        payload = text
    head = "".join(f"{name}: {value}\n" for name, value in headers)
    return head + "\n" + payload


def mboxrd_escape(text: str) -> str:
    out = []
    for line in text.split("\n"):
        if line.lstrip(">").startswith("From "):
            line = ">" + line
        out.append(line)
    return "\n".join(out)


def render_mbox(mails: list[Mail], mids: dict[str, str]) -> str:
    by_key = {m.key: m for m in mails}
    chunks = []
    for mail in sorted(mails, key=lambda m: (m.dt, m.key)):
        raw = render_mail(mail, by_key, mids)
        envelope = mail.frm if mail.frm != DIGEST else "bounces+7c1e2a@news.revopsdigest.com"
        stamp = mail.dt.strftime("%a %b ") + f"{mail.dt.day:2d}" + mail.dt.strftime(" %H:%M:%S %Y")
        for copy in range(mail.copies):
            text = raw if copy == 0 else f"Delivered-To: {OWNER}\n" + raw
            chunks.append(f"From {envelope} {stamp}\n" + mboxrd_escape(text.rstrip("\n")) + "\n\n")
    return "".join(chunks)


# --------------------------------------------------------------------------------------------------
# truth (synthetic-dev format)


def _registered(domain: str, known: str) -> bool:
    return domain == known or domain.endswith("." + known)


def resolve(addr: str) -> tuple[str | None, str | None]:
    """(contact id or email:addr, company id) for an external address, as the truth records it."""
    addr = addr.lower()
    local, _, domain = addr.partition("@")
    canonical = local.split("+", 1)[0] + "@" + domain
    for cid, _first, _last, email, others, company, *_rest in CONTACTS:
        if addr == email or canonical == email or addr in others:
            return cid, company
    for co_id, _name, domains in COMPANIES:
        if any(_registered(domain, d) for d in domains):
            return f"email:{addr}", co_id
    return None, None


def _external(addrs: list[str]) -> list[str]:
    return [a for a in addrs if not any(_registered(a.rsplit("@", 1)[1], d) for d in INTERNAL_DOMAINS)]


def _attribution(addrs: list[str]) -> tuple[list[str], list[str]]:
    contacts: list[str] = []
    companies: list[str] = []
    for addr in _external(addrs):
        cid, co = resolve(addr)
        if cid is not None and cid not in contacts:
            contacts.append(cid)
        if co is not None and co not in companies:
            companies.append(co)
    return contacts, companies


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_truth(mids: dict[str, str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    rows: list[tuple[datetime, dict[str, Any]]] = []
    for mail in MAILS:
        contacts, companies = _attribution([mail.frm, *mail.to, *mail.cc]) if mail.log else ([], [])
        rows.append(
            (
                mail.dt,
                {
                    "kind": "email",
                    "message_id": mids[mail.key],
                    "occurred_at": _iso(mail.dt),
                    "log": mail.log,
                    "contacts": contacts,
                    "companies": companies,
                    "deal": mail.deal,
                    "ambiguous_deal": mail.ambiguous,
                    "family": mail.family,
                },
            )
        )
    for event in EVENTS:
        addrs = [a for a, _ in event.attendees] + ([event.organizer] if event.organizer else [])
        contacts, companies = _attribution(addrs) if event.log else ([], [])
        for rid, start in occurrences(event):
            if start > MEETING_HORIZON:
                continue
            rows.append(
                (
                    start,
                    {
                        "kind": "meeting",
                        "ical_uid": event.uid,
                        "recurrence_id": _iso(rid) if rid else None,
                        "start": _iso(start),
                        "log": event.log,
                        "contacts": contacts,
                        "companies": companies,
                        "deal": event.deal,
                        "ambiguous_deal": False,
                        "family": event.family,
                    },
                )
            )
    rows.sort(key=lambda r: (r[0], r[1].get("message_id") or r[1].get("ical_uid")))
    activities = [r for _, r in rows]

    entities = []
    for etype, ids, field_name in (
        ("contact", [c[0] for c in CONTACTS], "contacts"),
        ("company", [c[0] for c in COMPANIES], "companies"),
        ("deal", [d[0] for d in DEALS], "deal"),
    ):
        for crm_id in ids:
            last: datetime | None = None
            nxt: datetime | None = None
            for when, row in rows:
                if not row["log"]:
                    continue
                linked = row[field_name] == crm_id if field_name == "deal" else crm_id in row[field_name]
                if not linked:
                    continue
                if when <= NOW and (last is None or when > last):
                    last = when
                if row["kind"] == "meeting" and when > NOW and (nxt is None or when < nxt):
                    nxt = when
            entities.append(
                {
                    "type": etype,
                    "crm_id": crm_id,
                    "last_contact_at": _iso(last) if last else None,
                    "next_meeting_at": _iso(nxt) if nxt else None,
                }
            )
    return activities, entities


# --------------------------------------------------------------------------------------------------
# CRM files


def _csv(rows: list[list[str]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerows(rows)
    return buf.getvalue()


def crm_files() -> dict[str, str]:
    companies = [["id", "name", "domains"]] + [[i, n, ";".join(d)] for i, n, d in COMPANIES]
    contacts = [["id", "first_name", "last_name", "email", "other_emails", "company_id", "title", "phone"]] + [
        [cid, first, last, email, ";".join(others), co, title, phone]
        for cid, first, last, email, others, co, title, phone, _tz in CONTACTS
    ]
    deals = [
        [
            "id",
            "name",
            "company_id",
            "stage",
            "status",
            "amount",
            "created_at",
            "close_date",
            "owner_email",
            "contact_ids",
        ]
    ] + [
        [i, n, co, stage, status, str(amount), created, close, OWNER, ";".join(cids)]
        for i, n, co, stage, status, amount, created, close, cids in DEALS
    ]
    return {
        "crm/companies.csv": _csv(companies),
        "crm/contacts.csv": _csv(contacts),
        "crm/deals.csv": _csv(deals),
    }


# --------------------------------------------------------------------------------------------------


def generate() -> dict[str, str]:
    mids = {m.key: message_id(m) for m in MAILS}
    assert len(set(mids.values())) == len(mids), "Message-IDs must be unique"
    activities, entities = build_truth(mids)
    files = {
        "meta.json": json.dumps(
            {"now": _iso(NOW), "internal_domains": INTERNAL_DOMAINS, "owner": OWNER, "name": OWNER_NAME},
            indent=2,
            ensure_ascii=False,
        )
        + "\n",
        **crm_files(),
        "mail.mbox": render_mbox(MAILS, mids),
        "calendar.ics": render_calendar(EVENTS),
        "truth/activities.jsonl": "".join(json.dumps(a, ensure_ascii=False) + "\n" for a in activities),
        "truth/entities.jsonl": "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in entities),
    }
    return files


def check(out: Path) -> list[str]:
    """Re-read what was written with the libraries inkless uses; returns a summary, raises on problems."""
    import mailbox

    import icalendar
    import recurring_ical_events

    summary = []
    box = mailbox.mbox(str(out / "mail.mbox"), create=False)
    messages = list(box)
    expected = sum(m.copies for m in MAILS)
    assert len(messages) == expected, (len(messages), expected)
    ids = [m["Message-ID"] for m in messages]
    assert all(ids), "every message needs a Message-ID"
    assert len(set(ids)) == len(MAILS), "one duplicate copy expected"
    for msg in messages:
        assert msg["Date"] and msg["From"], msg["Message-ID"]
    summary.append(f"mail.mbox: {len(messages)} messages, {len(set(ids))} distinct Message-IDs")

    cal = icalendar.Calendar.from_ical((out / "calendar.ics").read_bytes())
    expanded = recurring_ical_events.of(cal).between(NOW - timedelta(days=180), MEETING_HORIZON)
    got = sorted((str(ev["UID"]), ev["DTSTART"].dt.astimezone(UTC), ev.get("STATUS")) for ev in expanded)
    want = sorted(
        (e.uid, start, e.status) for e in EVENTS for _rid, start in occurrences(e) if start <= MEETING_HORIZON
    )
    assert [(u, s) for u, s, _ in got] == [(u, s) for u, s, _ in want], (got, want)
    truth = [json.loads(line) for line in (out / "truth/activities.jsonl").read_text().splitlines()]
    assert {a["message_id"] for a in truth if a["kind"] == "email"} == {str(i) for i in ids}
    summary.append(f"calendar.ics: {len(EVENTS)} events, {len(got)} occurrences in the window")
    summary.append(
        f"truth: {sum(a['log'] for a in truth)} items to log "
        f"({sum(a['log'] for a in truth if a['kind'] == 'email')} emails, "
        f"{sum(a['log'] for a in truth if a['kind'] == 'meeting')} meeting occurrences), "
        f"{sum(not a['log'] for a in truth)} to skip"
    )
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    assert total < 100_000, total
    summary.append(f"total size: {total} bytes")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory (default agent/demo_data)")
    args = parser.parse_args(argv)
    files = generate()
    for rel, text in files.items():
        path = args.out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
    for line in check(args.out):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
