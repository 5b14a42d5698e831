"""Where the author's own words of a mail end: the quoted earlier messages a reply carries start.

Plain text in, plain text out, no I/O: the parser stores only the author's words (``mailparse.body_excerpt``)
and the deal scorer reads only them (``matching.deals.Text``). Quote markers are those mail clients write in
the languages sales mail is commonly written in.
"""

from __future__ import annotations

import re

# quoted mail in a reply: "> " lines; "-----Original Message-----" in its languages; a header line
# ending in a colon: "On <date>, <name> wrote:" in its languages (an opening word, a date, the verb; German,
# Dutch, Swedish and Polish put the name after the verb) and Outlook's "From: <name> Sent: <date>" block
_QUOTE_RULE = re.compile(
    r"-{2,}\s*(?:Original Message|Ursprüngliche Nachricht|Message d'origine|Mensaje original|Mensagem original"
    r"|Messaggio originale|Oorspronkelijk bericht|Ursprungligt meddelande|Alkuperäinen viesti)",
    re.I,
)
_QUOTE_VERB_END = re.compile(r"\b(?:wrote|a écrit|escribió|escreveu|ha scritto|kirjoitti)\s?$")
_QUOTE_VERB_BEFORE_NAME = ("schrieb", "schreef", "skrev", "napisał")
_QUOTE_OPEN = re.compile(r"\b(?:On|Am|Le|El|Em|Il|Op|Den|På|W dniu)\s")
_QUOTE_SENT_END = re.compile(r"\b(?:Sent|Gesendet|Envoyé|Enviado|Inviato|Verzonden|Skickat|Sendt|Lähetetty)\s?$")
_QUOTE_FROM = re.compile(r"\b(?:From|Von|De|Da|Van|Från|Fra|Lähettäjä)\s?:")
_QUOTED_LINE = re.compile(r"^[ \t]*>.*(?:\n|$)", re.M)
# a quote header holds one of these words before its colon: no colon before the first of them ends one
_HEADER_WORDS = (
    *_QUOTE_VERB_END.pattern.removeprefix(r"\b(?:").removesuffix(r")\s?$").split("|"),
    *_QUOTE_VERB_BEFORE_NAME,
    *_QUOTE_SENT_END.pattern.removeprefix(r"\b(?:").removesuffix(r")\s?$").split("|"),
)

_ASCII_HEADER_WORDS = tuple(w for w in _HEADER_WORDS if w.isascii())


def own_words(body: str) -> str:
    """The body up to the first quoted mail: the author's words, not the earlier messages a reply carries."""
    if body.startswith(">") or "\n>" in body:
        body = _QUOTED_LINE.sub("", body)  # quoted lines, wherever the author wrote (above or below them)
    cut = len(body)
    if "-----" in body:
        m = _QUOTE_RULE.search(body, 0, cut)
        if m:
            cut = m.start()
    # every quote header ends in a colon followed by a space or a line break (not a time, not a URL)
    p = body.find(":", 0, cut)
    if p >= 0:  # no colon, no quote header; else none before the first word a header needs
        words = _ASCII_HEADER_WORDS if body.isascii() else _HEADER_WORDS
        first = min((i for i in (body.find(w, 0, cut) for w in words) if i >= 0), default=-1)
        p = body.find(":", max(p, first), cut) if first >= 0 else -1
    while p >= 0:
        if p + 1 == len(body) or body[p + 1].isspace():
            start = _quote_header_start(body, p)
            if start is not None:
                return body[:start]
        p = body.find(":", p + 1, cut)
    return body[:cut]


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
    else:
        found = [head.rfind(v) for v in _QUOTE_VERB_BEFORE_NAME]
        at = max(found)
        if at < 0:
            return None
    opens = [o.start() for o in _QUOTE_OPEN.finditer(head, max(0, at - 250), at)]
    # the nearest opening word before the verb, with a date (digits) between them
    if opens and any(ch.isdigit() for ch in head[opens[-1] : at]):
        return offset + opens[-1]
    return None
