"""From OCR lines to title queries: normalise, join adjacent lines, split run-together words.

Posters print titles big, across one to three lines, often without spaces between words
("THECOURT-MARTIALOF"); the recogniser adds noise ("Aphalt"). Matching is therefore done on a
*squashed* form (upper case, letters and digits only), which is blind to missing spaces, and
fuzzy (rapidfuzz) to survive dropped or swapped letters. For search engines that match words
(TMDb), the squashed query is split back into words with wordninja's English unigram model.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

from posterdb.reading.ocr import ReadLine

MIN_CONFIDENCE = 0.6
MIN_CHARS = 2
MAX_JOIN = 3
_NON_ALNUM = re.compile(r"[^0-9A-Z]+")
_YEAR = re.compile(r"(?<!\d)(18[89]\d|19\d\d|20[0-3]\d)(?!\d)")
_ROMAN = {"II": "2", "III": "3", "IV": "4", "V": "5", "VI": "6"}


def _ascii_upper(s: str) -> str:
    s = unicodedata.normalize("NFKD", s)
    s = "".join(c for c in s if not unicodedata.combining(c))
    return s.upper().replace("&", " AND ")


def normalise(s: str) -> str:
    """Upper-case ASCII words separated by single spaces ("Dr. Strangelove" -> "DR STRANGELOVE")."""
    return _NON_ALNUM.sub(" ", _ascii_upper(s)).strip()


def squash(s: str) -> str:
    """Letters and digits only, upper case: "The Court-Martial of" -> "THECOURTMARTIALOF"."""
    return _NON_ALNUM.sub("", _ascii_upper(s))


def title_keys(title: str) -> set[str]:
    """Squashed forms a title may be printed as: itself, without a leading article, without a
    subtitle after ':' or ' - ', and with a roman sequel number as a digit."""
    keys = {squash(title)}
    base = re.split(r"\s*[:\u2013\u2014]\s+|\s+-\s+", title, maxsplit=1)[0]
    keys.add(squash(base))
    words = normalise(title).split()
    if words and words[-1] in _ROMAN:
        keys.add("".join(words[:-1]) + _ROMAN[words[-1]])
    for k in list(keys):
        for art in ("THE", "A", "AN"):
            if k.startswith(art) and len(k) > len(art) + 3:
                keys.add(k[len(art):])
    return {k for k in keys if k}


@lru_cache(maxsize=1)
def _splitter():
    import wordninja
    return wordninja


def spaced(squashed: str) -> str:
    """Split run-together words back apart: "THESHOW" -> "THE SHOW" (for word-based search)."""
    if not squashed:
        return ""
    return " ".join(_splitter().split(squashed.lower())).upper()


@dataclass(frozen=True)
class Query:
    """A candidate title read off the poster: one line or a run of adjacent lines."""

    text: str           # normalised words as read
    key: str            # squashed form, for fuzzy matching
    lines: tuple[int, ...]
    height: float       # tallest line in it relative to the tallest line on the poster (0..1]

    @property
    def search_text(self) -> str:
        """Words for a word-based search engine (run-together words split)."""
        return " ".join(spaced(squash(w)) if len(w) >= 6 else w for w in self.text.split())


def useful_lines(lines: list[ReadLine], min_confidence: float = MIN_CONFIDENCE) -> list[ReadLine]:
    """Lines worth matching, in the detector's reading order (top to bottom, left to right)."""
    return [ln for ln in lines
            if ln.confidence >= min_confidence and len(squash(ln.text)) >= MIN_CHARS]


def queries(lines: list[ReadLine], max_join: int = MAX_JOIN,
            min_confidence: float = MIN_CONFIDENCE) -> list[Query]:
    """Every single line and every run of up to `max_join` adjacent lines, tallest first."""
    good = useful_lines(lines, min_confidence)
    if not good:
        return []
    tallest = max(ln.height for ln in good) or 1.0
    out: dict[str, Query] = {}
    for i in range(len(good)):
        for n in range(1, max_join + 1):
            run = good[i:i + n]
            if len(run) < n:
                break
            text = " ".join(normalise(ln.text) for ln in run)
            key = squash(text)
            if len(key) < MIN_CHARS or key in out:
                continue
            out[key] = Query(text, key, tuple(range(i, i + n)),
                             max(ln.height for ln in run) / tallest)
    return sorted(out.values(), key=lambda q: (-q.height, len(q.lines), -len(q.key)))


def full_text_key(lines: list[ReadLine], min_confidence: float = 0.3) -> str:
    """All the read text squashed into one string, in reading order (for coverage matching)."""
    return "".join(squash(ln.text) for ln in useful_lines(lines, min_confidence))


def years_in(lines: list[ReadLine]) -> set[int]:
    """Four-digit years printed on the poster (release dates, copyright lines)."""
    return {int(m) for ln in lines for m in _YEAR.findall(ln.text)}
