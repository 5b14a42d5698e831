"""Local mail sources (Maildir, eml folder, mbox) against the provider contract, plus the parser on
real-world tricky mail."""

from __future__ import annotations

import os
import shutil
import time
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path

import pytest

from providers.base import Source, SyncContext
from providers.mailfiles import EmlFolderSource, MaildirSource, MboxSource
from providers.mailparse import parse_message
from providers.records import Batch, MailItem, Quarantined
from tests.conftest import corpus

NOW = datetime(2026, 11, 24, 13, tzinfo=UTC)


def message(n: int, frm: str = "jane@acme.com", to: str = "ana@northwind.io", body: str = "hello") -> bytes:
    date = format_datetime(datetime(2026, 10, 1, 9, n % 60, tzinfo=UTC))
    return (
        f"From: Jane <{frm}>\r\nTo: {to}\r\nSubject: message {n}\r\nDate: {date}\r\n"
        f"Message-ID: <m{n}@acme.com>\r\n\r\n{body} {n}\r\n"
    ).encode()


class Spy:
    """A SyncContext whose map counts parse jobs and whose sync state is an in-memory set."""

    def __init__(self, batch_size: int = 3) -> None:
        self.parsed = 0
        self.known: set[str] = set()
        self.batch_size = batch_size

    def ctx(self) -> SyncContext:
        def pmap(fn, jobs):  # type: ignore[no-untyped-def]
            jobs = list(jobs)
            self.parsed += len(jobs)
            return map(fn, jobs)

        return SyncContext(NOW, self.batch_size, pmap, lambda ids: {i for i in ids if i in self.known})

    def run(self, src: Source, cursor: dict | None) -> tuple[list[Batch], dict | None]:
        batches = list(src.batches(cursor, self.ctx()))
        for b in batches:
            self.known.update(i.provider_id for i in b.items)
            cursor = b.cursor
        return batches, cursor


def ids(batches: list[Batch]) -> list[str]:
    return [i.message_id for b in batches for i in b.items if isinstance(i, MailItem)]


def write_maildir(root: Path, msgs: dict[str, list[bytes]]) -> None:
    for folder, items in msgs.items():
        base = root if folder == "INBOX" else root / f".{folder}"
        for sub in ("cur", "new", "tmp"):
            (base / sub).mkdir(parents=True, exist_ok=True)
        for i, raw in enumerate(items):
            name = f"17000000{i:02d}.M{i}P1.host{folder}:2,S"
            (base / "cur" / name).write_bytes(raw)


class SourceContract:
    """Every source must: yield each item once, resume from any yielded cursor without loss or
    duplicates, and yield nothing new on a second run. Subclasses provide ``make(tmp_path, n)`` that
    creates a source holding n messages and ``add(src, n)`` that adds one more."""

    def make(self, tmp_path: Path, n: int) -> Source:
        raise NotImplementedError

    def add(self, src: Source, n: int) -> None:
        raise NotImplementedError

    def test_backfill_yields_every_item_once(self, tmp_path: Path) -> None:
        src = self.make(tmp_path, 10)
        batches, _ = Spy().run(src, None)
        assert sorted(ids(batches)) == sorted(f"<m{i}@acme.com>" for i in range(10))

    def test_second_run_parses_nothing(self, tmp_path: Path) -> None:
        src = self.make(tmp_path, 10)
        spy = Spy()
        _, cursor = spy.run(src, None)
        spy.parsed = 0
        batches, _ = spy.run(src, cursor)
        assert ids(batches) == []
        assert spy.parsed == 0

    def test_resume_from_every_cursor_loses_and_duplicates_nothing(self, tmp_path: Path) -> None:
        src = self.make(tmp_path, 10)
        first, _ = Spy().run(src, None)
        for k, b in enumerate(first):
            before = ids(first[: k + 1])
            rest, _ = Spy().run(src, b.cursor)
            assert sorted(before + ids(rest)) == sorted(f"<m{i}@acme.com>" for i in range(10))

    def test_new_message_after_sync_is_the_only_one_yielded(self, tmp_path: Path) -> None:
        src = self.make(tmp_path, 5)
        spy = Spy()
        _, cursor = spy.run(src, None)
        time.sleep(0.01)
        self.add(src, 99)
        batches, _ = spy.run(src, cursor)
        assert ids(batches) == ["<m99@acme.com>"]


class TestMaildir(SourceContract):
    def make(self, tmp_path: Path, n: int) -> Source:
        write_maildir(tmp_path / "md", {"INBOX": [message(i) for i in range(n)]})
        return MaildirSource(str(tmp_path / "md"), "ana@northwind.io")

    def add(self, src: Source, n: int) -> None:
        root = Path(src.location)
        (root / "new" / f"1800000000.M{n}P9.host").write_bytes(message(n))

    def test_maildirpp_subfolders_are_read(self, tmp_path: Path) -> None:
        write_maildir(tmp_path / "md", {"INBOX": [message(1)], "Sent": [message(2, frm="ana@northwind.io")]})
        batches, _ = Spy().run(MaildirSource(str(tmp_path / "md"), "ana@northwind.io"), None)
        assert sorted(ids(batches)) == ["<m1@acme.com>", "<m2@acme.com>"]

    def test_flag_change_and_move_to_cur_are_not_new_items(self, tmp_path: Path) -> None:
        src = self.make(tmp_path, 3)
        spy = Spy()
        _, cursor = spy.run(src, None)
        cur = Path(src.location) / "cur"
        for f in sorted(cur.iterdir()):
            os.rename(f, f.with_name(f.name.replace(":2,S", ":2,RS")))
        spy.parsed = 0
        batches, _ = spy.run(src, cursor)
        assert ids(batches) == [] and spy.parsed == 0

    def test_missing_folder_is_a_one_line_error(self, tmp_path: Path) -> None:
        from providers.errors import Unreachable

        with pytest.raises(Unreachable, match="not found"):
            list(MaildirSource(str(tmp_path / "nope"), "a@b.io").batches(None, Spy().ctx()))


class TestEmlFolder(SourceContract):
    def make(self, tmp_path: Path, n: int) -> Source:
        root = tmp_path / "eml"
        (root / "sub").mkdir(parents=True)
        for i in range(n):
            (root / ("sub" if i % 2 else "") / f"{i}.eml").write_bytes(message(i))
        return EmlFolderSource(str(root), "ana@northwind.io")

    def add(self, src: Source, n: int) -> None:
        (Path(src.location) / f"{n}.eml").write_bytes(message(n))


class TestMbox(SourceContract):
    def make(self, tmp_path: Path, n: int) -> Source:
        path = tmp_path / "box.mbox"
        with open(path, "wb") as fh:
            for i in range(n):
                fh.write(b"From jane@acme.com Thu Oct  1 09:00:00 2026\n" + message(i).replace(b"\r\n", b"\n") + b"\n")
        return MboxSource(str(path), "ana@northwind.io")

    def add(self, src: Source, n: int) -> None:
        with open(src.location, "ab") as fh:
            fh.write(b"From jane@acme.com Thu Oct  1 09:00:00 2026\n" + message(n).replace(b"\r\n", b"\n") + b"\n")

    def test_mboxrd_escaped_from_lines_are_restored(self, tmp_path: Path) -> None:
        path = tmp_path / "b.mbox"
        raw = message(1, body="body\n>From the start").replace(b"\r\n", b"\n")
        path.write_bytes(b"From x Thu Oct  1 09:00:00 2026\n" + raw + b"\n")
        batches, _ = Spy().run(MboxSource(str(path), "a@northwind.io"), None)
        item = batches[0].items[0]
        assert isinstance(item, MailItem) and "From the start" in item.body_text and ">From" not in item.body_text

    def test_rewritten_mbox_is_reread_without_reparsing_known_messages(self, tmp_path: Path) -> None:
        src = self.make(tmp_path, 4)
        spy = Spy()
        _, cursor = spy.run(src, None)
        data = Path(src.location).read_bytes()
        first = data.index(b"From ", 1)
        Path(src.location).write_bytes(data[first:])  # a mail client deleted the first message
        self.add(src, 50)
        spy.parsed = 0
        batches, _ = spy.run(src, cursor)
        assert ids(batches) == ["<m50@acme.com>"]


def test_parser_decodes_rfc2047_names_and_subjects() -> None:
    raw = (
        b"From: =?utf-8?q?Jos=C3=A9_M=C3=BCller?= <Jose@Acme.COM>\r\nTo: ana@northwind.io\r\n"
        b"Subject: =?utf-8?b?UmU6IMOcYmVyc2ljaHQ=?=\r\nDate: Tue, 2 Jun 2026 09:28:22 +0200\r\n\r\nhi\r\n"
    )
    item = parse_message(raw, "p", "l")
    assert isinstance(item, MailItem)
    assert item.sender is not None and item.sender.name == "José Müller" and item.sender.email == "jose@acme.com"
    assert item.subject == "Re: Übersicht"
    assert item.occurred_at == datetime(2026, 6, 2, 7, 28, 22, tzinfo=UTC)
    assert item.message_id.endswith("@inkless.invalid>")  # no Message-ID: a stable synthetic one


@pytest.mark.parametrize(
    "quote",
    [
        "On Tue, 2 Jun 2026 at 09:12, Jane Doe <jane@acme.com> wrote:\nOur old budget figures are in the sheet.",
        "Am 02.06.2026 um 09:12 schrieb Jürgen Weiß <jw@acme.de>:\nUnsere alten Budgetzahlen stehen im Blatt.",
        "Le mar. 2 juin 2026 à 09:12, Chloé Martin <cm@acme.fr> a écrit :\nNos anciens chiffres de budget.",
        "-----Ursprüngliche Nachricht-----\nVon: Jürgen Weiß\nGesendet: Dienstag, 2. Juni 2026 09:12\nBudgetzahlen.",
        "De : María López\nEnviado: martes, 2 de junio de 2026 9:12\nPara: Ana\nLas cifras del presupuesto.",
        "> Our old budget figures are in the sheet.\n> Jane",
        # clients in more languages: Czech, Russian, Turkish, Hungarian, Polish, Greek, Romanian (verb or
        # Outlook block), Japanese, Chinese and Korean (full-width colons, no spaces, no verb at all)
        "Dne 2. 6. 2026 9:12, Jan Novák <jan@acme.cz> napsal(a):\nNaše staré rozpočtové údaje.",
        "02.06.2026 09:12, Иван Петров пишет:\nНаши старые цифры бюджета.",
        "вт, 2 июн. 2026 г. в 09:12, Иван Петров <ivan@acme.ru>:\nНаши старые цифры бюджета.",
        "От: Иван Петров <ivan@acme.ru>\nОтправлено: 2 июня 2026 г. 9:12\nКому: Ana\nСтарые цифры.",
        "Ayşe Yılmaz <ayse@acme.com.tr>, 2 Haz 2026 Sal, 09:12 tarihinde şunu yazdı:\nEski bütçe rakamları.",
        "2026. június 2., kedd 9:12 időpontban Kovács Péter (<peter@acme.hu>) ezt írta:\nA régi költségvetés.",
        "Od: Jan Kowalski <jan@acme.pl>\nWysłano: wtorek, 2 czerwca 2026 09:12\nDo: Ana\nStare dane.",
        "Στις Τρί, 2 Ιουν 2026 στις 9:12 π.μ., Γιώργος Παπαδόπουλος <gp@acme.gr> έγραψε:\nΤα παλιά στοιχεία.",
        "În mar., 2 iun. 2026 la 09:12, Ion Popescu <ion@acme.ro> a scris:\nCifrele vechi.",
        "-----Původní zpráva-----\nOd: Jan Novák\nOdesláno: 2. 6. 2026\nStaré údaje.",
        "差出人: 山田太郎 <yamada@acme.co.jp>\n送信日時: 2026年6月2日 9:12\n宛先: Ana\n古い予算の数字です。",
        "2026年6月2日(火) 9:12 山田太郎 <yamada@acme.co.jp>:\n古い予算の数字です。",
        "张伟 <zhang@acme.cn> 于2026年6月2日周二 09:12写道：\n旧的预算数字。",
        "2026년 6월 2일 (화) 오전 9:12, 김민준 <kim@acme.kr>님이 작성:\n이전 예산 수치입니다.",
        "보낸 사람: 김민준 <kim@acme.kr>\n보낸 날짜: 2026년 6월 2일 화요일 오전 9:12\n받는 사람: Ana\n이전 예산.",
    ],
)
def test_only_the_authors_own_words_are_stored(quote: str) -> None:
    """Bodies are stored only as far as attribution and the timeline need: the quoted earlier mail of a reply,
    whatever the language of the mail client that quoted it, is not kept."""
    raw = (
        "From: Ana Ruiz <ana@northwind.io>\r\nTo: jane@acme.com\r\nSubject: Re: budget\r\n"
        "Date: Tue, 2 Jun 2026 10:00:00 +0200\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        f"Thanks, the new figures are attached.\r\n\r\n{quote}\r\n"
    ).encode()
    item = parse_message(raw, "p", "l")
    assert isinstance(item, MailItem)
    assert item.body_text == "Thanks, the new figures are attached."


@pytest.mark.parametrize(
    "text",
    [
        "Petr napsal: pošleme to zítra.",
        "The meeting is at 10:00: bring the figures.",
        "Note: Jane wrote: we are fine with 2026 pricing",
        "Contact: Jane Doe <jane@acme.com>: our lead for 2026",
        "请查看附件：2026年预算。",
        "Спасибо: цифры за 2026 год в приложении.",
    ],
)
def test_a_colon_in_the_authors_words_is_no_quote_header(text: str) -> None:
    from providers.quotes import own_words

    body = f"Thanks, the new figures are attached.\n{text}\nAna"
    assert own_words(body) == body


def test_a_reply_written_below_the_quote_keeps_the_words_below() -> None:
    from providers.quotes import own_words

    body = (
        "on 11/5/01 1:42 PM, Jane Doe <jane@acme.com> wrote:\n\n> Has a password been set for him?\n>\n"
        "> Thanks.\n\nJane, the log-on for all members is BC01.\nCathy"
    )
    assert own_words(body).strip() == "Jane, the log-on for all members is BC01.\nCathy"
    # the author's words run on into the header where line breaks were lost
    flat = "Спасибо. 02.06.2026 09:12, Иван Петров пишет: Наши старые цифры."
    assert own_words(flat).strip() == "Спасибо."


def test_parser_quarantines_what_is_not_mail() -> None:
    assert isinstance(parse_message(b"", "p", "l"), Quarantined)
    assert isinstance(parse_message(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1rest", "p", "l"), Quarantined)
    junk = parse_message(b"just some text\nwithout headers\n", "p", "l")
    assert isinstance(junk, Quarantined) and "address" in junk.reason


def test_every_tricky_email_is_parsed_or_quarantined_with_a_reason() -> None:
    root = corpus("eml-tricky")
    counts = {"parsed": 0, "quarantined": 0}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        item = parse_message(path.read_bytes(), str(path), str(path))
        if isinstance(item, Quarantined):
            assert item.reason and "\n" not in item.reason
            counts["quarantined"] += 1
        else:
            assert item.occurred_at.tzinfo is not None and item.message_id.startswith("<")
            counts["parsed"] += 1
    assert counts["parsed"] > 200, counts


def test_maildir_memory_window_pages_through_large_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import providers.mailfiles as mf

    monkeypatch.setattr(mf, "SCAN_WINDOW", 4)  # force several scans
    write_maildir(tmp_path / "md", {"INBOX": [message(i) for i in range(11)]})
    batches, _ = Spy(batch_size=2).run(MaildirSource(str(tmp_path / "md"), "a@northwind.io"), None)
    assert sorted(ids(batches)) == sorted(f"<m{i}@acme.com>" for i in range(11))


def test_copy_of_corpus_file_keeps_working(tmp_path: Path) -> None:
    src_dir = corpus("eml-tricky", "cpython-test_email")
    shutil.copytree(src_dir, tmp_path / "eml")
    batches, _ = Spy(batch_size=50).run(EmlFolderSource(str(tmp_path / "eml"), "a@northwind.io"), None)
    assert sum(len(b.items) for b in batches) == len(list(src_dir.iterdir()))
