"""Local mail sources: Maildir (with Maildir++ sub-folders), a folder of .eml files, an mbox file.

Folder sources order files by (ctime, relative path): delivery into ``new/``, the move to ``cur/``
and a flag change all rename the file and so bump its ctime. The cursor is the last (ctime, path)
stored. A scan keeps only the ``SCAN_WINDOW`` oldest unseen entries in memory (a bounded heap), so
memory stays flat however large the mailbox; a renamed file whose provider id is already known is
skipped without being read.
"""

from __future__ import annotations

import hashlib
import heapq
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .base import Source, SyncContext
from .errors import Unreachable
from .mailparse import parse_message
from .records import Batch, Item, MailItem, Quarantined

SCAN_WINDOW = 50_000
MAX_MESSAGE_BYTES = 50 * 1024 * 1024


def read_and_parse(job: tuple[str, str, str]) -> Item:
    """Top-level (picklable) worker: read one file and parse it."""
    path, provider_id, locator = job
    try:
        size = os.path.getsize(path)
        if size > MAX_MESSAGE_BYTES:
            return Quarantined(provider_id, locator, f"message larger than {MAX_MESSAGE_BYTES >> 20} MB")
        with open(path, "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        return Quarantined(provider_id, locator, "file vanished before it could be read")
    except OSError as exc:
        return Quarantined(provider_id, locator, f"cannot read file: {exc.strerror or type(exc).__name__}")
    return parse_message(raw, provider_id, locator)


class _FolderSource(Source):
    """Shared scan logic; subclasses say which directories hold messages and how to name them."""

    def _root(self) -> Path:
        root = Path(self.location).expanduser()
        if not root.is_dir():
            raise Unreachable(f"{self.kind} folder not found: {root}")
        return root

    def check(self) -> None:
        self._message_dirs(self._root())

    def _message_dirs(self, root: Path) -> list[Path]:
        raise NotImplementedError

    def provider_id(self, rel: str) -> str:
        return rel

    def _scan(self, root: Path, after: tuple[int, str]) -> tuple[list[tuple[int, str]], int]:
        def entries() -> Iterator[tuple[int, str]]:
            for d in self._message_dirs(root):
                try:
                    it = os.scandir(d)
                except OSError:
                    continue
                with it:
                    for e in it:
                        if e.name.startswith("."):
                            continue
                        try:
                            if not e.is_file(follow_symlinks=False):
                                continue
                            key = (e.stat(follow_symlinks=False).st_ctime_ns, os.path.relpath(e.path, root))
                        except OSError:
                            continue
                        if key > after:
                            yield key

        counter = [0]

        def counted() -> Iterator[tuple[int, str]]:
            for k in entries():
                counter[0] += 1
                yield k

        smallest = heapq.nsmallest(SCAN_WINDOW, counted())
        return smallest, counter[0]

    def batches(self, cursor: dict[str, Any] | None, ctx: SyncContext) -> Iterator[Batch]:
        root = self._root()
        pos = (cursor or {}).get("pos") or [0, ""]
        after = (int(pos[0]), str(pos[1]))
        while True:
            entries, pending = self._scan(root, after)
            if not entries:
                return
            for i in range(0, len(entries), ctx.batch_size):
                chunk = entries[i : i + ctx.batch_size]
                ids = [self.provider_id(rel) for _, rel in chunk]
                known = ctx.is_known(ids)
                jobs = [
                    (str(root / rel), pid, rel) for (_, rel), pid in zip(chunk, ids, strict=True) if pid not in known
                ]
                items = tuple(ctx.pmap(read_and_parse, jobs)) if jobs else ()
                after = chunk[-1]
                pending -= len(chunk)
                yield Batch(items=items, cursor={"pos": [after[0], after[1]]}, total_hint=pending)
            if len(entries) < SCAN_WINDOW:
                return

    def fetch(self, locator: str, ctx: SyncContext) -> Item | None:
        path = self._root() / locator
        if not path.is_file():
            return None
        return read_and_parse((str(path), self.provider_id(locator), locator))


class MaildirSource(_FolderSource):
    """A Maildir: the root's cur/ and new/ plus every Maildir++ sub-folder (.Sent, .Archive, ...).

    The provider id is the Maildir unique name without the ``:2,FLAGS`` info, so moving a message
    between folders or changing its flags does not make it a new item.
    """

    kind = "maildir"
    _INFO = re.compile(r"[:!;]2,[A-Za-z]*$")

    def _message_dirs(self, root: Path) -> list[Path]:
        folders = [root]
        try:
            folders += sorted(p for p in root.iterdir() if p.is_dir() and p.name not in ("cur", "new", "tmp"))
        except OSError as exc:
            raise Unreachable(f"cannot list maildir {root}: {exc.strerror}") from None
        dirs = [f / sub for f in folders for sub in ("new", "cur") if (f / sub).is_dir()]
        if not dirs:
            raise Unreachable(f"not a Maildir (no cur/ or new/ folder): {root}")
        return dirs

    def provider_id(self, rel: str) -> str:
        return self._INFO.sub("", os.path.basename(rel))

    def fetch(self, locator: str, ctx: SyncContext) -> Item | None:
        path = self._root() / locator
        if not path.is_file():
            # the message was renamed (flags) or moved since: find it by its unique name
            uid = self.provider_id(locator)
            for d in self._message_dirs(self._root()):
                for p in d.glob(f"{glob_escape(uid)}*"):
                    return read_and_parse((str(p), uid, os.path.relpath(p, self._root())))
            return None
        return read_and_parse((str(path), self.provider_id(locator), locator))


def glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


class EmlFolderSource(_FolderSource):
    """A folder tree of message files (.eml or any raw RFC 5322 file, one message each)."""

    kind = "eml"

    def _message_dirs(self, root: Path) -> list[Path]:
        dirs = []
        for dirpath, dirnames, _ in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            dirs.append(Path(dirpath))
        return dirs


_FROM_LINE = re.compile(rb"^From ")
_MBOXRD_ESCAPE = re.compile(rb"(?m)^>(>*From )")


class MboxSource(Source):
    """An mbox file (mboxrd/mboxo). The cursor is the byte offset after the last stored message plus a
    hash of the file's first KiB; a file that shrank or was rewritten is read again from the start
    (already-known messages are recognised by their content hash and not parsed twice)."""

    kind = "mbox"

    def _path(self) -> Path:
        p = Path(self.location).expanduser()
        if not p.is_file():
            raise Unreachable(f"mbox file not found: {p}")
        return p

    def check(self) -> None:
        self._path()

    @staticmethod
    def _head(fh: Any) -> str:
        fh.seek(0)
        return hashlib.sha1(fh.read(1024)).hexdigest()

    def _messages(self, fh: Any, offset: int) -> Iterator[tuple[int, int, bytes]]:
        """Yield (start, end, raw) per message; raw is cut past MAX_MESSAGE_BYTES (and then refused)."""
        fh.seek(offset)
        start = pos = offset
        buf: list[bytes] = []
        size = 0
        prev_blank = True
        seen_any = False
        for line in fh:
            if _FROM_LINE.match(line) and prev_blank:
                if seen_any or buf:
                    yield start, pos, b"".join(buf)
                buf, size, start, seen_any = [], 0, pos, True
            elif size <= MAX_MESSAGE_BYTES:
                buf.append(line)
                size += len(line)
            pos += len(line)
            prev_blank = line in (b"\n", b"\r\n")
        if buf:
            yield start, pos, b"".join(buf)

    def batches(self, cursor: dict[str, Any] | None, ctx: SyncContext) -> Iterator[Batch]:
        path = self._path()
        st = path.stat()
        cur = cursor or {}
        with open(path, "rb") as fh:
            head = self._head(fh)
            offset = int(cur.get("offset", 0))
            if cur.get("head") != head or cur.get("inode") != st.st_ino or st.st_size < offset:
                offset = 0
            if offset >= st.st_size:
                return
            pending: list[tuple[int, int, bytes]] = []
            for msg in self._messages(fh, offset):
                pending.append(msg)
                if len(pending) >= ctx.batch_size:
                    yield self._batch(pending, ctx, head, st.st_ino)
                    pending = []
            if pending:
                yield self._batch(pending, ctx, head, st.st_ino)

    def _batch(self, msgs: list[tuple[int, int, bytes]], ctx: SyncContext, head: str, ino: int) -> Batch:
        ids = [hashlib.sha1(raw).hexdigest()[:32] for _, _, raw in msgs]
        known = ctx.is_known(ids)
        items: list[Item] = []
        for (start, _end, raw), pid in zip(msgs, ids, strict=True):
            if pid in known:
                continue
            items.append(self._parse(raw, pid, start))
        return Batch(items=tuple(items), cursor={"offset": msgs[-1][1], "head": head, "inode": ino})

    @staticmethod
    def _parse(raw: bytes, pid: str, start: int) -> Item:
        if len(raw) > MAX_MESSAGE_BYTES:
            return Quarantined(pid, str(start), f"message larger than {MAX_MESSAGE_BYTES >> 20} MB")
        return parse_message(_MBOXRD_ESCAPE.sub(rb"\1", raw), pid, str(start))

    def fetch(self, locator: str, ctx: SyncContext) -> Item | None:
        path = self._path()
        with open(path, "rb") as fh:
            for start, _end, raw in self._messages(fh, int(locator)):
                return self._parse(raw, hashlib.sha1(raw).hexdigest()[:32], start)
        return None


def is_mail(item: Item) -> bool:
    return isinstance(item, MailItem)
