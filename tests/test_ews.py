"""The Exchange (EWS) source: the real exchangelib against requests-mock serving SOAP answers shaped like
Microsoft's EWS reference. Backfill with paging, incremental changes, ignored deletions, expired sync
states through the engine, auth, throttling, 5xx, timeouts, malformed items, a crash mid-sync, the
calendar view against the ICS source, Exchange Online refused, and EWS + mbox as one activity."""

from __future__ import annotations

import base64
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import pytest
import requests
import requests_mock
from exchangelib import BASIC, DELEGATE, Account, Build, Configuration, Credentials, FaultTolerance, Version
from exchangelib.protocol import BaseProtocol, CachingProtocol
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

import providers.base
from agent.crm import import_and_reattribute
from agent.ingest import Ingestor
from agent.sync import SyncEngine
from providers.errors import AuthExpired, CursorExpired, ProviderError, RateLimited, Unreachable
from providers.ews import ExchangeOnlineRefused, ExchangeRetryPolicy, ExchangeSource, is_exchange_online
from providers.ics import expand, sync_window
from providers.mailparse import parse_message
from providers.records import Batch, CalendarItem, MailItem, Quarantined
from store.export import activity_rows, entity_rows
from store.models import Activity, SyncState
from store.models import Source as SourceRow
from store.queries import set_setting
from tests.conftest import ROOT
from tests.dovecot import mbox_messages
from tests.test_mailfiles import NOW, Spy, ids, message

DATA = Path(__file__).parent / "data" / "ews"
DEMO = ROOT / "agent" / "demo_data"
DEMO_NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)
OWNER = "ana@northwind.io"
SERVER = "ews.test"
EP = f"https://{SERVER}/EWS/Exchange.asmx"
M = "{http://schemas.microsoft.com/exchange/services/2006/messages}"
T = "{http://schemas.microsoft.com/exchange/services/2006/types}"
S = "{http://schemas.xmlsoap.org/soap/envelope/}"
ENVELOPE = (DATA / "envelope.xml").read_text()
FOLDERS = {"root": "IPF.Note", "msgfolderroot": "IPF.Note", "inbox": "IPF.Note", "sentitems": "IPF.Note"}


# ------------------------------------------------------------------------------------ the fake server
@dataclass
class Meeting:
    """One calendar item as the calendar view expands it (an occurrence, an exception or a single)."""

    uid: str
    start: datetime
    end: datetime
    subject: str = "Meeting"
    kind: str = "Single"  # Single | Occurrence | Exception
    recurrence_id: datetime | None = None
    organizer: tuple[str, str] = ("Ana", OWNER)
    attendees: list[tuple[str, str, str]] = field(default_factory=list)  # (name, email, response type)
    cancelled: bool = False
    my_response: str = "Organizer"
    all_day: bool = False
    body: str = ""


class FakeEws:
    """A tiny EWS server behind requests-mock: folders with a change log, SyncFolderItems paging by
    ``MaxChangesReturned``, GetItem with MimeContent, FindItem CalendarView. ``inject`` queues canned
    answers (errors) for an operation; ``log`` records every operation called."""

    def __init__(self) -> None:
        self.changes: dict[str, list[tuple[str, str]]] = {"inbox": [], "sentitems": []}
        self.mime: dict[str, bytes] = {}
        self.item_errors: dict[str, str] = {}
        self.meetings: list[Meeting] = []
        self.log: list[str] = []
        self.fetched: list[str] = []
        self.injected: dict[str, list[Callable[[], Any]]] = {}
        self._n = 0

    # -- the mailbox -------------------------------------------------------------------------------
    def deliver(self, folder: str, raw: bytes) -> str:
        self._n += 1
        item_id = base64.b64encode(f"AAMkAD-{folder}-{self._n:05d}".encode()).decode()
        self.mime[item_id] = raw
        self.changes[folder].append(("Create", item_id))
        return item_id

    def touch(self, folder: str, item_id: str) -> None:
        self.changes[folder].append(("Update", item_id))

    def delete(self, folder: str, item_id: str) -> None:
        self.changes[folder].append(("Delete", item_id))

    def inject(self, op: str, *answers: Callable[[], Any]) -> None:
        self.injected.setdefault(op, []).extend(answers)

    # -- HTTP --------------------------------------------------------------------------------------
    def install(self, m: requests_mock.Mocker) -> None:
        m.post(EP, content=self._handle)

    def _handle(self, request: Any, context: Any) -> bytes:
        root = ET.fromstring(request.body)
        body = root.find(f"{S}Body")
        assert body is not None
        op_elem = body[0]
        op = op_elem.tag.rpartition("}")[2]
        self.log.append(op)
        context.headers["Content-Type"] = "text/xml; charset=utf-8"
        queued = self.injected.get(op)
        if queued:
            answer = queued.pop(0)()
            if isinstance(answer, tuple):
                context.status_code, text = answer
                return str(text).encode()
            return envelope(op, str(answer)).encode()
        handler = getattr(self, f"_op_{op}")
        return envelope(op, handler(op_elem)).encode()

    def _op_GetFolder(self, req: ET.Element) -> str:
        out = []
        for ref in req.iter():
            name = ref.tag.rpartition("}")[2]
            if name not in ("DistinguishedFolderId", "FolderId"):
                continue
            fid = ref.get("Id", "")
            key = fid.removeprefix("F-")
            if key == "calendar":
                folder = folder_xml("CalendarFolder", "calendar", "IPF.Appointment", "Calendar")
            else:
                folder = folder_xml("Folder", key, FOLDERS.get(key, "IPF.Note"), key.title())
            out.append(f"""<m:GetFolderResponseMessage ResponseClass="Success">
  <m:ResponseCode>NoError</m:ResponseCode><m:Folders>{folder}</m:Folders></m:GetFolderResponseMessage>""")
        return "\n".join(out)

    def _op_SyncFolderItems(self, req: ET.Element) -> str:
        fid = next(e for e in req.iter() if e.tag in (f"{T}FolderId", f"{T}DistinguishedFolderId")).get("Id", "")
        folder = fid.removeprefix("F-")
        state = req.findtext(f"{M}SyncState") or ""
        if state and not state.startswith(f"S-{folder}-"):
            return (DATA / "sync_invalid_state.xml").read_text()
        limit = int(req.findtext(f"{M}MaxChangesReturned") or 100)
        log = self.changes[folder]
        if not state or "-L" in state:
            # a first sync lists what the folder holds now, as creates, page by page
            live: dict[str, None] = {}
            for kind, item_id in log:
                if kind == "Delete":
                    live.pop(item_id, None)
                else:
                    live[item_id] = None
            todo = [("Create", i) for i in live]
            offset = int(state.rpartition("-L")[2]) if state else 0
            chunk = todo[offset : offset + limit]
            done = offset + limit >= len(todo)
            new_state = f"S-{folder}-{len(log)}" if done else f"S-{folder}-L{offset + limit}"
        else:
            start = int(state.rpartition("-")[2])
            chunk = log[start : start + limit]
            done = start + limit >= len(log)
            new_state = f"S-{folder}-{min(start + limit, len(log))}"
        changes = "".join(change_xml(kind, item_id) for kind, item_id in chunk)
        return f"""<m:SyncFolderItemsResponseMessage ResponseClass="Success">
  <m:ResponseCode>NoError</m:ResponseCode>
  <m:SyncState>{new_state}</m:SyncState>
  <m:IncludesLastItemInRange>{str(done).lower()}</m:IncludesLastItemInRange>
  <m:Changes>{changes}</m:Changes>
</m:SyncFolderItemsResponseMessage>"""

    def _op_GetItem(self, req: ET.Element) -> str:
        out = []
        for ref in req.iter(f"{T}ItemId"):
            item_id = ref.get("Id", "")
            self.fetched.append(item_id)
            meeting = next((mt for mt in self.meetings if meeting_id(mt) == item_id), None)
            if item_id in self.item_errors:
                code = self.item_errors[item_id]
                out.append(f"""<m:GetItemResponseMessage ResponseClass="Error">
  <m:MessageText>{code} for this item.</m:MessageText><m:ResponseCode>{code}</m:ResponseCode>
  <m:DescriptiveLinkKey>0</m:DescriptiveLinkKey><m:Items /></m:GetItemResponseMessage>""")
            elif meeting is not None:
                out.append(f"""<m:GetItemResponseMessage ResponseClass="Success">
  <m:ResponseCode>NoError</m:ResponseCode><m:Items>{calendar_item_xml(meeting)}</m:Items></m:GetItemResponseMessage>""")
            elif item_id in self.mime:
                mime = base64.b64encode(self.mime[item_id]).decode()
                out.append(f"""<m:GetItemResponseMessage ResponseClass="Success">
  <m:ResponseCode>NoError</m:ResponseCode><m:Items><t:Message>
    <t:MimeContent CharacterSet="UTF-8">{mime}</t:MimeContent>
    <t:ItemId Id="{item_id}" ChangeKey="CQAAAB" /></t:Message></m:Items></m:GetItemResponseMessage>""")
            else:
                out.append("""<m:GetItemResponseMessage ResponseClass="Error">
  <m:MessageText>The specified object was not found in the store.</m:MessageText>
  <m:ResponseCode>ErrorItemNotFound</m:ResponseCode><m:DescriptiveLinkKey>0</m:DescriptiveLinkKey>
  <m:Items /></m:GetItemResponseMessage>""")
        return "\n".join(out)

    def _op_FindItem(self, req: ET.Element) -> str:
        view = req.find(f"{M}CalendarView")
        assert view is not None, "only calendar views are served"
        lo = datetime.fromisoformat(view.get("StartDate", "").replace("Z", "+00:00"))
        hi = datetime.fromisoformat(view.get("EndDate", "").replace("Z", "+00:00"))
        found = [mt for mt in self.meetings if mt.start < hi and mt.end > lo]
        items = "".join(
            f'<t:CalendarItem><t:ItemId Id="{meeting_id(mt)}" ChangeKey="DwAAAB" /></t:CalendarItem>' for mt in found
        )
        return f"""<m:FindItemResponseMessage ResponseClass="Success">
  <m:ResponseCode>NoError</m:ResponseCode>
  <m:RootFolder TotalItemsInView="{len(found)}" IncludesLastItemInRange="true"><t:Items>{items}</t:Items></m:RootFolder>
</m:FindItemResponseMessage>"""


def envelope(op: str, messages: str) -> str:
    return ENVELOPE.replace("{op}", op).replace("{messages}", messages)


def folder_xml(tag: str, key: str, cls: str, name: str) -> str:
    return f"""<t:{tag}><t:FolderId Id="F-{key}" ChangeKey="AQAAAB" /><t:FolderClass>{cls}</t:FolderClass>
  <t:DisplayName>{name}</t:DisplayName><t:TotalCount>0</t:TotalCount><t:ChildFolderCount>0</t:ChildFolderCount>
  <t:UnreadCount>0</t:UnreadCount></t:{tag}>"""


def change_xml(kind: str, item_id: str) -> str:
    if kind == "Delete":
        return f'<t:Delete><t:ItemId Id="{item_id}" ChangeKey="CQAAAB" /></t:Delete>'
    return f'<t:{kind}><t:Message><t:ItemId Id="{item_id}" ChangeKey="CQAAAB" /></t:Message></t:{kind}>'


def meeting_id(mt: Meeting) -> str:
    rid = mt.recurrence_id.isoformat() if mt.recurrence_id else ""
    return base64.b64encode(f"AAMkCAL-{mt.uid}-{rid}".encode()).decode()


def iso(d: datetime) -> str:
    return d.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def mailbox_xml(name: str, email: str) -> str:
    return (
        f"<t:Mailbox><t:Name>{escape(name)}</t:Name><t:EmailAddress>{escape(email)}</t:EmailAddress>"
        "<t:RoutingType>SMTP</t:RoutingType><t:MailboxType>Mailbox</t:MailboxType></t:Mailbox>"
    )


def calendar_item_xml(mt: Meeting) -> str:
    attendees = "".join(
        f"<t:Attendee>{mailbox_xml(n, e)}<t:ResponseType>{r}</t:ResponseType></t:Attendee>" for n, e, r in mt.attendees
    )
    rid = f"<t:RecurrenceId>{iso(mt.recurrence_id)}</t:RecurrenceId>" if mt.recurrence_id else ""
    original = f"<t:OriginalStart>{iso(mt.recurrence_id)}</t:OriginalStart>" if mt.recurrence_id else ""
    # element order follows the CalendarItem schema (item fields, then calendar fields)
    return f"""<t:CalendarItem>
  <t:ItemId Id="{meeting_id(mt)}" ChangeKey="DwAAAB" />
  <t:Subject>{escape(mt.subject)}</t:Subject>
  <t:TextBody BodyType="Text">{escape(mt.body)}</t:TextBody>
  <t:UID>{escape(mt.uid)}</t:UID>
  {rid}
  <t:Start>{iso(mt.start)}</t:Start>
  <t:End>{iso(mt.end)}</t:End>
  {original}
  <t:IsAllDayEvent>{str(mt.all_day).lower()}</t:IsAllDayEvent>
  <t:IsCancelled>{str(mt.cancelled).lower()}</t:IsCancelled>
  <t:CalendarItemType>{mt.kind}</t:CalendarItemType>
  <t:MyResponseType>{mt.my_response}</t:MyResponseType>
  <t:Organizer>{mailbox_xml(*mt.organizer)}</t:Organizer>
  <t:RequiredAttendees>{attendees}</t:RequiredAttendees>
</t:CalendarItem>"""


def busy(ms: int) -> Callable[[], tuple[int, str]]:
    """EWS throttling: a SOAP fault ErrorServerBusy with BackOffMilliseconds, sent as HTTP 500."""
    text = (DATA / "server_busy.xml").read_text().replace("{ms}", str(ms))
    return lambda: (500, text)


def http(status: int, text: str = "") -> Callable[[], tuple[int, str]]:
    return lambda: (status, text)


def raises(exc: BaseException) -> Callable[[], Any]:
    def go() -> Any:
        raise exc

    return go


# ------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(autouse=True)
def _fast_retries(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # exchangelib waits RETRY_WAIT (10 s), doubling, before retrying a failure without a server hint
    monkeypatch.setattr(BaseProtocol, "RETRY_WAIT", 0.01)
    # exchangelib caches one protocol (with its retry policy and back-off state) per endpoint and credentials
    CachingProtocol.clear_cache()
    yield
    CachingProtocol.clear_cache()


@pytest.fixture
def ews() -> Iterator[FakeEws]:
    fake = FakeEws()
    with requests_mock.Mocker() as m:
        fake.install(m)
        yield fake


def make_account(max_wait: float = 2.0, policy: Any = None) -> Account:
    config = Configuration(
        service_endpoint=EP,
        credentials=Credentials(OWNER, "pw"),
        auth_type=BASIC,
        version=Version(build=Build(15, 1, 2507, 6)),
        retry_policy=policy or ExchangeRetryPolicy(max_wait=max_wait),
    )
    return Account(OWNER, config=config, autodiscover=False, access_type=DELEGATE)


def source(account: Account | None = None, **settings: Any) -> ExchangeSource:
    return ExchangeSource(
        SERVER, OWNER, {"server": SERVER, "calendar": False, **settings}, account=account or make_account()
    )


def mail_ids(batches: list[Batch]) -> list[str]:
    return sorted(ids(batches))


# ------------------------------------------------------------------------------------------ mail sync
def test_backfill_pages_through_inbox_and_sent_and_fetches_mime_once_per_chunk(
    ews: FakeEws, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(7):
        ews.deliver("inbox", message(i))
    for i in range(10, 13):
        ews.deliver("sentitems", message(i, frm=OWNER, to="jane@acme.com"))
    monkeypatch.setattr("providers.ews.SYNC_PAGE", 3)  # three SyncFolderItems pages for the inbox
    batches, cursor = Spy(batch_size=4).run(source(), None)
    assert mail_ids(batches) == sorted(f"<m{i}@acme.com>" for i in [*range(7), 10, 11, 12])
    assert ews.log.count("SyncFolderItems") == 3 + 1
    assert ews.log.count("GetItem") == 2 + 1  # inbox chunks of 4 + 3, sent 3
    assert cursor == {
        "folders": {"inbox": {"state": "S-inbox-7"}, "sentitems": {"state": "S-sentitems-3"}},
        "calendar": {},
    }
    first = next(i for b in batches for i in b.items if isinstance(i, MailItem) and i.message_id == "<m0@acme.com>")
    assert first.provider_id == first.locator and base64.b64decode(first.provider_id).startswith(b"AAMkAD-inbox")
    # a batch committed inside a pass carries the state the pass started from, never a half-way one
    assert batches[0].cursor == {"folders": {}, "calendar": {}}
    ref = parse_message(message(0), "x", "x")
    assert isinstance(ref, MailItem)
    assert (first.subject, first.occurred_at, first.participants, first.body_text) == (
        ref.subject,
        ref.occurred_at,
        ref.participants,
        ref.body_text,
    )


def test_incremental_sync_yields_only_new_mail_and_ignores_updates_of_known_and_deletions(ews: FakeEws) -> None:
    ids0 = [ews.deliver("inbox", message(i)) for i in range(3)]
    spy = Spy(batch_size=10)
    src = source()
    _, cursor = spy.run(src, None)
    ews.fetched.clear()
    ews.deliver("inbox", message(50))
    ews.touch("inbox", ids0[0])  # flagged / categorised: not a new item
    ews.delete("inbox", ids0[1])  # deleted by the rep: stays logged
    batches, cursor2 = spy.run(src, cursor)
    assert ids(batches) == ["<m50@acme.com>"]
    assert all(not b.deleted for b in batches)
    assert len(ews.fetched) == 1  # only the new message's MIME was downloaded
    assert cursor2 is not None and cursor2["folders"]["inbox"]["state"] == "S-inbox-6"
    again, _ = spy.run(src, cursor2)
    assert ids(again) == [] and spy.parsed == 4


def test_invalid_sync_state_raises_cursor_expired(ews: FakeEws) -> None:
    ews.deliver("inbox", message(1))
    with pytest.raises(CursorExpired):
        list(source().batches({"folders": {"inbox": {"state": "garbage"}}}, Spy().ctx()))


def test_error_answer_without_sync_state_element_is_also_a_cursor_expiry(ews: FakeEws) -> None:
    # exchangelib 5.6 raises AttributeError on this answer instead of ErrorInvalidSyncStateData
    ews.inject("SyncFolderItems", lambda: (DATA / "sync_invalid_state_bare.xml").read_text())
    with pytest.raises(CursorExpired):
        list(source().batches({"folders": {"inbox": {"state": "S-inbox-0"}}}, Spy().ctx()))


# ------------------------------------------------------------------------------------------- errors
def test_401_is_auth_expired_with_the_exact_reconnect_command(ews: FakeEws) -> None:
    ews.inject("GetFolder", http(401, "Unauthorized"))
    with pytest.raises(AuthExpired) as err:
        list(source().batches(None, Spy().ctx()))
    assert f"`inkless connect exchange --owner {OWNER} --server {SERVER}`" in str(err.value)
    assert "pw" not in str(err.value).split("`")[0]


def test_401_under_plain_fault_tolerance_is_still_auth_expired(ews: FakeEws) -> None:
    # FaultTolerance treats a 401 as throttling; the source recognises it in the cause chain
    for _ in range(20):
        ews.inject("GetFolder", http(401, "Unauthorized"))
    src = source(make_account(policy=FaultTolerance(max_wait=0.05)))
    with pytest.raises(AuthExpired, match="inkless connect exchange --owner ana@northwind.io --server ews.test"):
        list(src.batches(None, Spy().ctx()))


def test_server_busy_is_retried_within_the_bound_then_rate_limited(ews: FakeEws) -> None:
    ews.deliver("inbox", message(1))
    ews.inject("SyncFolderItems", busy(30), busy(30))
    batches, _ = Spy().run(source(make_account(max_wait=2)), None)
    assert ids(batches) == ["<m1@acme.com>"]
    assert ews.log.count("SyncFolderItems") == 2 + 2  # two refused, then inbox and sent
    ews.inject("SyncFolderItems", busy(600_000))
    with pytest.raises(RateLimited) as err:
        list(source(make_account(max_wait=2)).batches(None, Spy().ctx()))
    assert err.value.retry_after == pytest.approx(600)


def test_http_500_is_unreachable(ews: FakeEws) -> None:
    ews.inject("GetFolder", http(500, "<html><body>Internal Server Error</body></html>"))
    with pytest.raises(Unreachable, match="HTTP 500"):
        list(source().batches(None, Spy().ctx()))


def test_503_is_retried_and_a_lasting_one_is_unreachable(ews: FakeEws) -> None:
    ews.deliver("inbox", message(1))
    ews.inject("GetFolder", http(503, "Service Unavailable"))
    assert ids(Spy().run(source(), None)[0]) == ["<m1@acme.com>"]
    for _ in range(50):
        ews.inject("SyncFolderItems", http(503, "Service Unavailable"))
    with pytest.raises(Unreachable, match="kept failing"):
        list(source(make_account(max_wait=0.1)).batches(None, Spy().ctx()))


def test_timeout_is_unreachable(ews: FakeEws) -> None:
    ews.inject("GetFolder", raises(requests.exceptions.ConnectTimeout("timed out")))
    with pytest.raises(Unreachable, match="ews.test"):
        list(source().batches(None, Spy().ctx()))


def test_malformed_items_are_quarantined_and_the_rest_is_read(ews: FakeEws) -> None:
    ews.deliver("inbox", message(1))
    junk = ews.deliver("inbox", (DATA / "not_a_message.eml").read_bytes())
    corrupt = ews.deliver("inbox", message(2))
    gone = ews.deliver("inbox", message(3))
    ews.item_errors[corrupt] = "ErrorCorruptData"
    ews.item_errors[gone] = "ErrorItemNotFound"  # deleted between the sync and the fetch
    batches, cursor = Spy().run(source(), None)
    assert ids(batches) == ["<m1@acme.com>"]
    q = {i.provider_id: i.reason for b in batches for i in b.items if isinstance(i, Quarantined)}
    assert set(q) == {junk, corrupt}
    assert "From" in q[junk] and "ErrorCorruptData" in q[corrupt]
    assert cursor is not None and cursor["folders"]["inbox"]["state"] == "S-inbox-4"


def test_exchange_online_is_refused_with_the_graph_hint() -> None:
    for server in ("outlook.office365.com", "https://outlook.office365.com/EWS/Exchange.asmx", "outlook.office.com"):
        assert is_exchange_online(server)
        with pytest.raises(ExchangeOnlineRefused, match="inkless connect microsoft"):
            ExchangeSource(server, OWNER, {"server": server})
    assert not is_exchange_online("mail.corp.example") and not is_exchange_online("office.corp.example")
    assert issubclass(ExchangeOnlineRefused, ProviderError)


def test_default_account_uses_the_settings_and_a_bounded_patient_retry_policy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("INKLESS_TEST_EWS_PW", "s3cret")
    src = ExchangeSource(
        SERVER,
        OWNER,
        {
            "server": "mail.corp.example",
            "auth": "basic",
            "user": "CORP\\ana",
            "password_env": "INKLESS_TEST_EWS_PW",
            "max_wait": 42,
        },
    )
    acc = src._default_account()
    policy = acc.protocol.config.retry_policy
    assert isinstance(policy, ExchangeRetryPolicy) and policy.max_wait == 42
    assert acc.protocol.config.server == "mail.corp.example"
    assert acc.protocol.credentials.username == "CORP\\ana"
    monkeypatch.setattr("providers.ews.load_secret", lambda ref, hint="": f"stored for {ref}")
    stored = ExchangeSource(f"ews://{OWNER}@mail.corp.example", OWNER, {"token_ref": f"exchange:{OWNER}"})
    assert stored.server == "mail.corp.example"  # the location `inkless connect exchange` writes
    assert stored._default_account().protocol.credentials.password == f"stored for exchange:{OWNER}"
    monkeypatch.undo()
    nopw = ExchangeSource(SERVER, OWNER, {"server": "mail.corp.example"})
    with pytest.raises(AuthExpired, match="inkless connect exchange --owner ana@northwind.io --server mail"):
        nopw._default_account()


# ------------------------------------------------------------------------------------------ calendar
ICS = b"""BEGIN:VCALENDAR\r
VERSION:2.0\r
PRODID:-//test//EN\r
BEGIN:VEVENT\r
UID:weekly-1@acme.com\r
DTSTART:20261102T150000Z\r
DTEND:20261102T153000Z\r
RRULE:FREQ=WEEKLY;COUNT=4\r
SUMMARY:Weekly sync\r
ORGANIZER;CN=Jane:mailto:jane@acme.com\r
ATTENDEE;CN=Ana;PARTSTAT=ACCEPTED:mailto:ana@northwind.io\r
END:VEVENT\r
BEGIN:VEVENT\r
UID:weekly-1@acme.com\r
RECURRENCE-ID:20261109T150000Z\r
DTSTART:20261110T160000Z\r
DTEND:20261110T163000Z\r
SUMMARY:Weekly sync (moved)\r
ORGANIZER;CN=Jane:mailto:jane@acme.com\r
ATTENDEE;CN=Ana;PARTSTAT=ACCEPTED:mailto:ana@northwind.io\r
END:VEVENT\r
BEGIN:VEVENT\r
UID:demo-1@acme.com\r
DTSTART:20261125T100000Z\r
DTEND:20261125T110000Z\r
SUMMARY:Demo\r
ORGANIZER;CN=Jane:mailto:jane@acme.com\r
ATTENDEE;CN=Ana;PARTSTAT=ACCEPTED:mailto:ana@northwind.io\r
END:VEVENT\r
END:VCALENDAR\r
"""


def weekly_meetings() -> list[Meeting]:
    jane = ("Jane", "jane@acme.com")
    ana = [("Ana", OWNER, "Accept")]
    out = []
    for k in range(4):
        rid = datetime(2026, 11, 2, 15, tzinfo=UTC) + timedelta(weeks=k)
        start = datetime(2026, 11, 10, 16, tzinfo=UTC) if k == 1 else rid
        out.append(
            Meeting(
                "weekly-1@acme.com",
                start,
                start + timedelta(minutes=30),
                "Weekly sync",
                "Exception" if k == 1 else "Occurrence",
                rid,
                jane,
                ana,
                my_response="Accept",
            )
        )
    out.append(
        Meeting(
            "demo-1@acme.com",
            datetime(2026, 11, 25, 10, tzinfo=UTC),
            datetime(2026, 11, 25, 11, tzinfo=UTC),
            "Demo",
            organizer=jane,
            attendees=ana,
            my_response="Accept",
        )
    )
    return out


def test_calendar_view_yields_occurrences_keyed_like_the_ics_source(ews: FakeEws) -> None:
    ews.meetings = weekly_meetings()
    batches, cursor = Spy().run(source(calendar=True), None)
    cal = batches[-1]
    meetings = [i for i in cal.items if isinstance(i, CalendarItem)]
    ics_items = [i for i in expand(ICS, sync_window(NOW)) if isinstance(i, CalendarItem)]
    assert sorted((m.ical_uid, m.recurrence_id, m.start) for m in meetings) == sorted(
        (i.ical_uid, i.recurrence_id, i.start) for i in ics_items
    )
    assert {m.provider_id for m in meetings} == {"cal|" + i.provider_id for i in ics_items}
    assert cal.complete_for == ("cal|",) and cal.window == sync_window(NOW) and not cal.snapshot
    assert "FindItem" in ews.log
    moved = next(m for m in meetings if m.start == datetime(2026, 11, 10, 16, tzinfo=UTC))
    assert moved.recurrence_id == datetime(2026, 11, 9, 15, tzinfo=UTC)
    assert moved.organizer is not None and moved.organizer.email == "jane@acme.com"
    assert [(a.email, a.partstat) for a in moved.attendees] == [(OWNER, "ACCEPTED")]
    assert cursor is not None and cursor["calendar"] == {"synced_at": NOW.isoformat(), "count": 5}
    # not incremental: re-read only after calendar_every
    ews.log.clear()
    Spy().run(source(calendar=True), cursor)
    assert "FindItem" not in ews.log


def test_cancelled_and_declined_meetings_carry_status_and_partstat(ews: FakeEws) -> None:
    start = datetime(2026, 11, 26, 9, tzinfo=UTC)
    ews.meetings = [
        Meeting(
            "c@acme.com",
            start,
            start + timedelta(hours=1),
            "Cancelled",
            organizer=("Jane", "jane@acme.com"),
            attendees=[("Ana", OWNER, "Accept")],
            cancelled=True,
            my_response="Accept",
        ),
        Meeting(
            "d@acme.com",
            start,
            start + timedelta(hours=1),
            "Declined",
            organizer=("Jane", "jane@acme.com"),
            attendees=[("Ana", OWNER, "NoResponseReceived"), ("Bob", "bob@acme.com", "Accept")],
            my_response="Decline",
        ),
    ]
    batches, _ = Spy().run(source(calendar=True), None)
    got = {i.ical_uid: i for b in batches for i in b.items if isinstance(i, CalendarItem)}
    assert got["c@acme.com"].status == "CANCELLED"
    assert got["d@acme.com"].status == "CONFIRMED"
    assert {(a.email, a.partstat) for a in got["d@acme.com"].attendees} == {
        (OWNER, "DECLINED"),
        ("bob@acme.com", "ACCEPTED"),
    }


# ------------------------------------------------------------------------------- through the engine
def setup_crm(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        set_setting(s, "internal_domains", ["northwind.io", "northwindlabs.com"])
    c = DEMO / "crm"
    import_and_reattribute(sessions, DEMO_NOW, c / "companies.csv", c / "contacts.csv", c / "deals.csv")


def add_source(sessions: sessionmaker[Session], kind: str, location: str, settings: dict[str, Any]) -> int:
    with sessions.begin() as s:
        row = SourceRow(kind=kind, location=location, owner=OWNER, settings=settings, created_at=DEMO_NOW)
        s.add(row)
        s.flush()
        return row.id


def load_demo_mail(ews: FakeEws) -> int:
    msgs = mbox_messages(DEMO / "mail.mbox")
    for raw in msgs:
        item = parse_message(raw, "x", "x")
        mine = isinstance(item, MailItem) and item.sender is not None and item.sender.email == OWNER
        ews.deliver("sentitems" if mine else "inbox", raw)
    return len(msgs)


@pytest.fixture
def engine_ews(ews: FakeEws, monkeypatch: pytest.MonkeyPatch) -> FakeEws:
    """The engine builds ExchangeSource from the registry; its default account is the mocked one."""
    monkeypatch.setitem(providers.base.REGISTRY, "exchange", "providers.ews:ExchangeSource")
    account = make_account()
    monkeypatch.setattr(ExchangeSource, "_default_account", lambda self: account)
    return ews


def export_rows(sessions: sessionmaker[Session]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    with sessions() as s:
        return list(activity_rows(s)), list(entity_rows(s))


def count(sessions: sessionmaker[Session], model: Any) -> int:
    with sessions() as s:
        return int(s.execute(select(func.count()).select_from(model)).scalar_one())


def cursor_of(sessions: sessionmaker[Session], sid: int) -> dict[str, Any]:
    with sessions() as s:
        row = s.get(SourceRow, sid)
        assert row is not None and row.cursor is not None
        return dict(row.cursor)


def test_expired_sync_state_resyncs_through_the_engine_without_duplicates(
    sessions: sessionmaker[Session], engine_ews: FakeEws
) -> None:
    n = load_demo_mail(engine_ews)
    setup_crm(sessions)
    sid = add_source(sessions, "exchange", SERVER, {"server": SERVER, "calendar": False})
    first = SyncEngine(sessions, DEMO_NOW, workers=1, batch_size=10).run()[0]
    assert first.error is None and first.stats.seen == n and first.stats.logged > 20
    before, acts = export_rows(sessions), count(sessions, Activity)
    # the server forgets our sync states (mailbox moved to another database)
    engine_ews.changes = {k: [("Create", i) for _, i in v] for k, v in engine_ews.changes.items()}
    with sessions.begin() as s:
        row = s.get(SourceRow, sid)
        assert row is not None
        row.cursor = {"folders": {"inbox": {"state": "S-stale-1"}, "sentitems": {"state": "S-stale-2"}}}
    engine_ews.fetched.clear()
    rep = SyncEngine(sessions, DEMO_NOW, workers=1, batch_size=10).run()[0]
    assert rep.error is None and rep.stats.logged == 0
    assert engine_ews.fetched == []  # every id was recognised: nothing downloaded or parsed again
    assert count(sessions, Activity) == acts and export_rows(sessions) == before
    assert cursor_of(sessions, sid)["folders"]["inbox"]["state"].startswith("S-inbox-")


def test_crash_mid_backfill_loses_and_duplicates_nothing(
    sessions: sessionmaker[Session], engine_ews: FakeEws, monkeypatch: pytest.MonkeyPatch
) -> None:
    n = load_demo_mail(engine_ews)
    setup_crm(sessions)
    sid = add_source(sessions, "exchange", SERVER, {"server": SERVER, "calendar": False})
    real_apply = Ingestor.apply
    calls = {"n": 0}

    def crashing_apply(self: Ingestor, batch: Batch) -> Any:
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("power cut")  # the third batch's transaction is rolled back
        return real_apply(self, batch)

    monkeypatch.setattr(Ingestor, "apply", crashing_apply)
    crashed = SyncEngine(sessions, DEMO_NOW, workers=1, batch_size=10).run()[0]
    assert crashed.error is not None and crashed.batches == 2
    stored = count(sessions, SyncState)
    assert stored == 20
    assert cursor_of(sessions, sid)["folders"] == {}  # the inbox pass never completed
    monkeypatch.setattr(Ingestor, "apply", real_apply)
    engine_ews.fetched.clear()
    rep = SyncEngine(sessions, DEMO_NOW, workers=1, batch_size=10).run()[0]
    assert rep.error is None and rep.stats.seen == n - stored
    assert len(engine_ews.fetched) == n - stored  # the stored ones were not downloaded again
    assert count(sessions, SyncState) == n
    again = SyncEngine(sessions, DEMO_NOW, workers=1).run()[0]
    assert again.error is None and again.stats.seen == 0


def test_same_mail_via_ews_and_via_mbox_is_one_activity(
    sessions: sessionmaker[Session], engine_ews: FakeEws, tmp_path: Path
) -> None:
    n = load_demo_mail(engine_ews)
    setup_crm(sessions)
    mbox = tmp_path / "mail.mbox"
    shutil.copy(DEMO / "mail.mbox", mbox)
    add_source(sessions, "mbox", str(mbox), {})
    SyncEngine(sessions, DEMO_NOW, workers=1).run([1])
    only_mbox = export_rows(sessions)
    acts = count(sessions, Activity)
    assert acts > 20
    add_source(sessions, "exchange", SERVER, {"server": SERVER, "calendar": False})
    rep = SyncEngine(sessions, DEMO_NOW, workers=1).run([2])[0]
    assert rep.error is None and rep.stats.seen == n and rep.stats.logged == 0
    assert count(sessions, Activity) == acts
    rows, entities = export_rows(sessions)
    assert [r["message_ids"] for r in rows] == [r["message_ids"] for r in only_mbox[0]]
    assert entities == only_mbox[1]


def test_calendar_meetings_removed_from_exchange_are_removed_and_mail_is_kept(
    sessions: sessionmaker[Session], engine_ews: FakeEws
) -> None:
    setup_crm(sessions)
    for i in range(3):
        engine_ews.deliver("inbox", message(i, frm="pat@contoso.com"))
    engine_ews.meetings = weekly_meetings()
    sid = add_source(sessions, "exchange", SERVER, {"server": SERVER, "calendar_every": 0})
    assert SyncEngine(sessions, NOW, workers=1).run()[0].error is None
    with sessions() as s:
        pids = set(s.execute(select(SyncState.provider_id).where(SyncState.source_id == sid)).scalars())
    assert sum(p.startswith("cal|") for p in pids) == 5 and len(pids) == 8
    engine_ews.meetings = [m for m in engine_ews.meetings if m.uid != "demo-1@acme.com"]
    rep = SyncEngine(sessions, NOW + timedelta(hours=1), workers=1).run()[0]
    assert rep.error is None
    with sessions() as s:
        after = set(s.execute(select(SyncState.provider_id).where(SyncState.source_id == sid)).scalars())
    assert pids - after == {"cal|demo-1@acme.com|"}
    # a calendar that suddenly lists nothing removes nothing
    engine_ews.meetings = []
    rep = SyncEngine(sessions, NOW + timedelta(hours=2), workers=1).run()[0]
    assert rep.error is not None and "confirm" in rep.error
    with sessions() as s:
        assert set(s.execute(select(SyncState.provider_id).where(SyncState.source_id == sid)).scalars()) == after


def test_fetch_reads_one_message_again_by_its_locator_and_check_opens_the_inbox(ews: FakeEws) -> None:
    item_id = ews.deliver("inbox", message(7))
    src = source()
    src.check()
    got = src.fetch(item_id, Spy().ctx())
    assert isinstance(got, MailItem) and got.message_id == "<m7@acme.com>" and got.locator == item_id
    assert src.fetch("cal|x@acme.com|", Spy().ctx()) is None


def test_auth_failure_through_the_engine_marks_the_source_with_the_reconnect_command(
    sessions: sessionmaker[Session], engine_ews: FakeEws
) -> None:
    setup_crm(sessions)
    sid = add_source(sessions, "exchange", SERVER, {"server": SERVER, "calendar": False})
    engine_ews.inject("GetFolder", http(401, "Unauthorized"))
    rep = SyncEngine(sessions, DEMO_NOW, workers=1).run()[0]
    assert rep.error is not None and f"inkless connect exchange --owner {OWNER} --server {SERVER}" in rep.error
    with sessions() as s:
        row = s.get(SourceRow, sid)
        assert row is not None and row.status in ("error", "needs_reconnect") and row.cursor is None
