"""Where the author's own words of a mail end: the quoted earlier messages a reply carries start.

Plain text in, plain text out, no I/O: the parser stores only the author's words (``mailparse.body_excerpt``)
and the deal scorer reads only them (``matching.deals.Text``). Quote markers are those mail clients write in
the languages sales mail is commonly written in.
"""

from __future__ import annotations

import re

# "-----Original Message-----" as mail clients write it in their languages
_RULE_WORDS = (
    "Original Message", "Ursprüngliche Nachricht", "Original-Nachricht", "Message d'origine", "Mensaje original",
    "Mensagem original", "Messaggio originale", "Oorspronkelijk bericht", "Ursprungligt meddelande",
    "Oprindelig meddelelse", "Opprinnelig melding", "Alkuperäinen viesti", "Oryginalna wiadomość",
    "Původní zpráva", "Pôvodná správa", "Eredeti üzenet", "Mesaj original", "Orijinal ileti", "Özgün ileti",
    "Исходное сообщение", "Оригинальное сообщение", "Вихідне повідомлення", "Αρχικό μήνυμα", "原始邮件",
    "原始郵件", "元のメッセージ", "원본 메시지",
)  # fmt: skip
# "On <date>, <name> wrote:": the verb ends the header (an opening word, a date and the name come before it)
_VERBS_AT_END = (
    "wrote", "a écrit", "escribió", "escreveu", "ha scritto", "kirjoitti", "napsal", "napsala", "napsal(a)",
    "napísal", "napísala", "napísal(a)", "написал", "написала", "написал(а)", "пишет", "написав", "пише",
    "yazdı", "ezt írta", "a scris", "έγραψε", "đã viết",
)  # fmt: skip
# ... in scripts written without spaces the verb follows the date or the address directly
_VERBS_AT_END_UNSPACED = ("写道", "寫道", "작성")
# German, Dutch, Scandinavian and Polish put the name after the verb: "Am <date> schrieb <name>:"
_QUOTE_VERB_BEFORE_NAME = ("schrieb", "schreef", "skrev", "napisał")
_OPENING_WORDS = ("On", "Am", "Le", "El", "Em", "Il", "Op", "Den", "På", "W dniu", "Dne", "Dňa", "Vào", "În", "Στις")
# Outlook's "From: <name> Sent: <date>" block: the word before "Sent"'s colon, and the "From" it goes back to
_SENT_WORDS = (
    "Sent", "Gesendet", "Envoyé", "Enviado", "Inviato", "Verzonden", "Skickat", "Sendt", "Lähetetty", "Wysłano",
    "Wysłane", "Odesláno", "Odoslané", "Elküldve", "Trimis", "Gönderildi", "Отправлено", "Надіслано",
    "Στάλθηκε", "发送时间", "寄件日期", "送信日時", "보낸 날짜",
)  # fmt: skip
_FROM_WORDS = (
    "From", "Von", "De", "Da", "Van", "Från", "Fra", "Lähettäjä", "Od", "Feladó", "De la", "Kimden", "От",
    "Від", "Από", "发件人", "寄件者", "差出人", "보낸 사람",
)  # fmt: skip


def _alternatives(words: tuple[str, ...]) -> str:
    return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))


_QUOTE_RULE = re.compile(rf"-{{2,}}\s*(?:{_alternatives(_RULE_WORDS)})", re.I)
_QUOTE_VERB_END = re.compile(
    rf"(?:\b(?:{_alternatives(_VERBS_AT_END)})|(?:{_alternatives(_VERBS_AT_END_UNSPACED)}))\s?$"
)
_QUOTE_OPEN = re.compile(rf"\b(?:{_alternatives(_OPENING_WORDS)})\s")
_QUOTE_SENT_END = re.compile(rf"\b(?:{_alternatives(_SENT_WORDS)})\s?$")
_QUOTE_FROM = re.compile(rf"\b(?:{_alternatives(_FROM_WORDS)})\s?[:：]")
_QUOTED_LINE = re.compile(r"^[ \t]*>.*(?:\n|$)", re.M)
_COLON = re.compile(r"[:：]")
_ASCII_COLON = re.compile(":")
# a date in a header line: a year, or day and month in digits (3.1., 03/01); a time; the end of a sentence
_DATE = re.compile(r"(?<!\d)(?:(?:19|20)\d\d(?!\d)|\d{1,2}[./-] ?\d{1,2}[./-])")
_TIME = re.compile(r"(?<!\d)\d{1,2}:\d\d(?!\d)")
_SENTENCE_END = re.compile(r"[.!?](?:\s|$)|[。！？]")
# a quote header holds one of these before its colon: no colon before the first of them ends one. ">" ends the
# address of a header without a verb ("2026年1月3日 10:00 山田太郎 <yamada@example.jp>:", as Gmail writes it in
# several languages)
_HEADER_WORDS = (*_VERBS_AT_END, *_VERBS_AT_END_UNSPACED, *_QUOTE_VERB_BEFORE_NAME, *_SENT_WORDS, ">")
_ASCII_HEADER_WORDS = tuple(w for w in _HEADER_WORDS if w.isascii())


def own_words(body: str) -> str:
    """The body up to the first quoted mail: the author's words, not the earlier messages a reply carries."""
    quoted = body.startswith(">") or "\n>" in body
    if quoted:
        body = _QUOTED_LINE.sub("", body)  # quoted lines, wherever the author wrote (above or below them)
    cut = len(body)
    if "-----" in body:
        m = _QUOTE_RULE.search(body, 0, cut)
        if m:
            cut = m.start()
    # every quote header ends in a colon followed by a space or a line break (not a time, not a URL); in CJK
    # text the colon may be a full-width one
    ascii_only = body.isascii()
    wide = not ascii_only and "：" in body
    p = body.find(":", 0, cut)
    if p < 0 and not wide:
        return body[:cut]
    words = _ASCII_HEADER_WORDS if ascii_only else _HEADER_WORDS
    first = min((i for i in (body.find(w, 0, cut) for w in words) if i >= 0), default=-1)
    if first < 0:  # none of the words a header needs before its colon: no quote header
        return body[:cut]
    for m in (_COLON if wide else _ASCII_COLON).finditer(body, first if wide else max(p, first), cut):
        start = _header_ending_at(body, m.start())
        if start is not None:
            return _before(body, start, m.start(), quoted)
    return body[:cut]


def _before(body: str, start: int, colon: int, quoted: bool) -> str:
    """The words before the quote header; when there are none and the quote was "> " lines, the author wrote
    below it (the answer follows what it answers): the words after the header."""
    if quoted and not body[:start].strip():
        return own_words(body[colon + 1 :])
    return body[:start]


def _header_ending_at(body: str, colon: int) -> int | None:
    if colon + 1 == len(body) or body[colon + 1].isspace() or body[colon] == "：":
        return _quote_header_start(body, colon)
    return None


def _quote_header_start(body: str, colon: int) -> int | None:
    """Where the quote header ending at this colon starts, or None when the colon ends no quote header."""
    head = body[max(0, colon - 300) : colon]
    offset = colon - len(head)
    tail = head[-16:]
    if _QUOTE_SENT_END.search(tail):
        froms = [f.start() for f in _QUOTE_FROM.finditer(head)]
        return offset + froms[-1] if froms else None
    verb = _QUOTE_VERB_END.search(tail)
    if verb is not None:
        at = len(head) - len(tail) + verb.start()
    elif head.endswith(">") and "@" in head[head.rfind("<") :]:  # "<date> <name> <address>:", no verb
        at = len(head)
    else:
        found = [head.rfind(v) for v in _QUOTE_VERB_BEFORE_NAME]
        at = max(found)
        if at < 0:
            return None
    opens = [o.start() for o in _QUOTE_OPEN.finditer(head, max(0, at - 250), at)]
    # the nearest opening word before the verb, with a date (digits) between them
    if opens and any(ch.isdigit() for ch in head[opens[-1] : at]):
        return offset + opens[-1]
    return _line_header_start(head, at, offset)


def _line_header_start(head: str, at: int, offset: int) -> int | None:
    """A header without an opening word ("03.01.2026 10:00, Иван Петров пишет:", "Jan Novák <jan@example.cz>,
    3 Oca 2026 10:00 tarihinde şunu yazdı:"): the line (or two, when it wraps) up to the verb, with a date and
    a time or an address. It starts at the line, or after the last sentence before its first digit (the
    author's words may run on into it when line breaks were lost)."""
    start = head.rfind("\n", 0, at) + 1
    if not _DATE.search(head, start, at) and start > 0:
        start = head.rfind("\n", 0, start - 1) + 1  # wrapped: the date is on the line before
    line = head[start:at]
    if len(line) > 200 or not _DATE.search(line) or not (_TIME.search(line) or "@" in line):
        return None
    digit = next(i for i, ch in enumerate(line) if ch.isdigit())
    ends = [m.end() for m in _SENTENCE_END.finditer(line, 0, digit)]
    if ends:
        start += ends[-1]
        while start < at and head[start].isspace():
            start += 1
    return offset + start
