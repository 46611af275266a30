"""Text handling for narrative matching: cleaning noisy captions and building decoys from example captions.

Pure functions, no model. Captions arrive full of hashtags, mentions, links and emoji; sentence models read
"#TrumpArrest" as one odd token, so hashtags are split into their words. Decoys are what keeps a caption
about the same person but another story ("Trump speaks at a rally") from matching "Trump arrested": the
names in a narrative's examples placed in bland contexts, so a caption that is close to the examples only
because it names the same people is close to the decoys too (see monitor.narratives).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence

_URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_TAG = re.compile(r"[#@]([\w']+)")
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])|(?<=[A-Za-z])(?=\d)|(?<=\d)(?=[A-Za-z])")
_WORD = re.compile(r"[^\W_][\w'\u2019.-]*", re.UNICODE)

#: Capitalised words that start sentences or headlines without naming anyone.
_NOT_NAMES = frozenset(
    [
        "a",
        "an",
        "the",
        "this",
        "that",
        "these",
        "those",
        "in",
        "on",
        "at",
        "of",
        "for",
        "to",
        "from",
        "by",
        "with",
        "after",
        "before",
        "during",
        "as",
        "and",
        "or",
        "but",
        "breaking",
        "watch",
        "look",
        "new",
        "old",
        "why",
        "how",
        "what",
        "when",
        "where",
        "who",
        "is",
        "are",
        "was",
        "were",
        "it",
        "its",
        "his",
        "her",
        "their",
        "our",
        "my",
        "leaked",
        "exclusive",
        "photo",
        "video",
        "image",
        "picture",
        "footage",
        "report",
        "reports",
    ]
)

#: Bland contexts for a name: what any caption about that person or place might say. English only: the
#: models are multilingual, and decoys in other languages would also pull down true translations.
DECOY_TEMPLATES: tuple[str, ...] = (
    "{}",
    "{} speaks to reporters",
    "{} at an official meeting",
    "latest news about {}",
    "{} visits the city",
    "a photo of {}",
    "{} today",
)


def clean_caption(text: str) -> str:
    """A caption as a sentence model should read it: links dropped, hashtags and mentions split into words,
    emoji and other pictographs dropped, whitespace collapsed. Never raises; may return ''."""
    text = _URL.sub(" ", text)
    text = _TAG.sub(lambda m: " " + _CAMEL.sub(" ", m.group(1)).replace("_", " ") + " ", text)
    text = "".join(" " if unicodedata.category(ch) in ("So", "Sk", "Cs", "Co", "Cn") else ch for ch in text)
    return " ".join(text.split())


def names(texts: Iterable[str]) -> list[str]:
    """The names and subjects in example captions: runs of capitalised words ("Pope Francis", "NYPD",
    "Eiffel Tower", and the capitalised first word that is usually the caption's subject: "Shark swimming
    on a flooded highway"), in order of first appearance, without duplicates. Articles, prepositions and
    headline words ("The", "Breaking", "Leaked") never count.
    """
    found: list[str] = []
    for text in texts:
        run: list[str] = []
        for word in _WORD.findall(clean_caption(text)):
            if word[:1].isupper() and word.lower() not in _NOT_NAMES:
                run.append(word.rstrip(".'\u2019"))
            elif run:
                found.append(" ".join(run))
                run = []
        if run:
            found.append(" ".join(run))
    return list(dict.fromkeys(n for n in found if n))


def decoys(examples: Sequence[str], templates: Sequence[str] = DECOY_TEMPLATES) -> list[str]:
    """Bland captions about the names in a narrative's examples (none if the examples name no one)."""
    return [template.format(name) for name in names(examples) for template in templates]
