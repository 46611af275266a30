"""Text handling for narrative matching: cleaning noisy captions and building decoys from example captions.

Pure functions, no model. Captions arrive full of hashtags, mentions, links and emoji; sentence models read
"#TrumpArrest" as one odd token, so hashtags are split into their words.

Decoys are captions built from a narrative's own examples that the narrative must NOT match; a caption as
close to a decoy as to the examples is probably another story (see monitor.narratives.matcher). Three kinds:

- name decoys (`decoys`): every name of the examples in bland contexts ("Trump today"), against captions
  that are close to the examples only because they name the same people;
- story decoys (`story_decoys`): the narrative's subjects (or, failing those, its proper names) in
  everyday stories of the kind that on-topic captions tell ("Trump gives a speech", "tourists visit
  Louvre"), the same thing with more ground;
- swap decoys (`swap_decoys`): the examples with their subjects replaced by "someone" ("someone arrested
  and dragged away by police officers"), against the same kind of event happening to another subject
  ("Greta Thunberg detained by police"). A title just before the name goes with it ("Kenyan president
  Ruto dozing off" -> "someone dozing off"): a decoy that kept it would still name the subject and refuse
  the captions that name it by its title only ("the Kenyan president asleep at the UN"). They do not count
  against a caption that names one of the narrative's subjects (`SubjectIndex`): such a caption cannot be
  about another subject.

A narrative's subjects are the proper names that come back in at least two of its examples (the person,
place or thing the story is about: "Trump", "Louvre", "Matterhorn"), not the incidental ones ("NYPD").

Role examples (`role_variants`) are the reverse of swap decoys: the examples with the subject named by the
title an example gives it ("Kenyan president Ruto" -> "the Kenyan president fast asleep in his seat at the
UN"), banked as more examples of the narrative, for the captions that name the subject by its title only.

Captions are read by the model as `caption_text` gives them: cleaned, shouted words in ordinary case
("ALBANESE ON A MILLIONAIRE'S YACHT" -> "Albanese On A Millionaire's Yacht"), and `sentences` splits the long
ones so that the sentence that tells the story is scored on its own as well (monitor.narratives.matcher).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from difflib import SequenceMatcher

_URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_TAG = re.compile(r"[#@]([\w']+)")
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])|(?<=[A-Za-z])(?=\d)|(?<=\d)(?=[A-Za-z])")
_WORD = re.compile(r"[^\W_][\w'\u2019.-]*", re.UNICODE)
_TOKEN = re.compile(r"[^\W_]+", re.UNICODE)

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


#: Everyday stories about a narrative's subjects (people first, then places and things). English only, like
#: the bland contexts; bland on purpose: none of them is a claim anyone would fake a picture for.
STORY_TEMPLATES: tuple[str, ...] = (
    "{} gives a speech",
    "{} speaks at a rally",
    "{} meets world leaders",
    "{} gives an interview on television",
    "{} at a press conference",
    "{} visits a school",
    "{} attends a ceremony",
    "{} waves to the crowd",
    "{} announces a new plan",
    "{} on holiday with family",
    "{} wins an award",
    "{} posts a message on social media",
    "tourists visit {}",
    "{} lit up at night",
    "fireworks over {}",
    "{} at sunset",
    "{} reopens to the public",
    "crowds gather at {}",
    "a new exhibition at {}",
    "{} celebrates its anniversary",
    "{} covered in scaffolding for renovation",
    "a beautiful view of {} on a sunny day",
)

#: English function words: a caption with none of them is in another language (or has no sentence at all).
_ENGLISH_WORDS = frozenset(
    [
        "the",
        "of",
        "on",
        "at",
        "is",
        "to",
        "and",
        "with",
        "his",
        "her",
        "after",
        "for",
        "from",
        "by",
        "its",
        "their",
        "has",
        "was",
        "are",
        "this",
        "that",
        "into",
        "over",
        "while",
        "being",
    ]
)


def _word_set(text: str) -> frozenset[str]:
    return frozenset(text.split())


#: Words that name the kind of thing rather than the thing ("Mount", "Castle", "Tower", "Prince"), in the six
#: languages: a caption that says "a medieval castle" or "Mount Nyiragongo" does not name "Neuschwanstein
#: Castle" or "Mount Kilimanjaro". Subject names are recognised in captions by their other words.
GENERIC_NAME_WORDS = _word_set(
    """
    mount mountain mountains peak volcano island islands lake river falls bay sea ocean desert valley rock
    tower castle palace fortress gate gates bridge church cathedral basilica temple mosque shrine abbey
    statue monument memorial house hall building stadium arena museum park garden gardens square street
    avenue city town village capital port airport station harbour harbor wall great national royal grand
    king queen prince princess president minister chancellor pope saint st san santa sao north south east
    west northern southern eastern western new old united republic state states tour torre turm castillo
    castello schloss chateau palais palacio palazzo porte porta puerta tor place plaza piazza platz praca
    pont ponte puente brucke kirche iglesia chiesa igreja catedral cattedrale dom monte mont berg lac lago
    see isla isola insel ile rio fleuve
    """
)

#: What a narrative's subjects become in its swap decoys.
SWAP_PLACEHOLDER = "someone"

#: Lower-case words that join the parts of one name ("Statue of Liberty", "Houses of Parliament").
_NAME_JOINERS = frozenset(["of", "de", "du", "des", "del", "van", "von", "der", "bin"])


def clean_caption(text: str) -> str:
    """A caption as a sentence model should read it: links dropped, hashtags and mentions split into words,
    emoji and other pictographs dropped, whitespace collapsed. Never raises; may return ''."""
    text = _URL.sub(" ", text)
    text = _TAG.sub(lambda m: " " + _CAMEL.sub(" ", m.group(1)).replace("_", " ") + " ", text)
    text = "".join(" " if unicodedata.category(ch) in ("So", "Sk", "Cs", "Co", "Cn") else ch for ch in text)
    return " ".join(text.split())


_SHOUTED = re.compile(r"(?<!\w)[^\W\d_]{4,}(?!\w)")


def calm_capitals(text: str) -> str:
    """Words of 4+ letters written all in capitals, capitalised instead ("KILIMANJARO IS ERUPTING" ->
    "Kilimanjaro IS Erupting"): the caption model reads a shouted word as rarer tokens, further from the same
    word in an example (chosen on the tuning sets: 3 more of 900 positives matched, no more flags)."""
    return _SHOUTED.sub(lambda m: m.group(0).capitalize() if m.group(0).isupper() else m.group(0), text)


def caption_text(text: str) -> str:
    """A caption as the matcher embeds it: `clean_caption`, then `calm_capitals`. May return ''."""
    return calm_capitals(clean_caption(text))


_SENTENCE_BREAK = re.compile(r"(?<=[.!?\u2026])\s+|\s+[\u2013\u2014-]\s+|\s*[|\u2022]\s*")
#: A sentence shorter than this many words is not scored on its own ("Say it with me", "wow").
SENTENCE_WORDS = 3


def sentences(text: str, min_words: int = SENTENCE_WORDS) -> list[str]:
    """The sentences of a cleaned caption that are worth scoring alone: split at sentence ends, dashes and
    bars, those of `min_words` words or more; [] unless there are at least two (a one-sentence caption is
    scored whole anyway). "While Victoria burns, Albo is out on a superyacht. Say it with me: out of
    touch." -> ["While Victoria burns, Albo is out on a superyacht.", "Say it with me: out of touch."]"""
    parts = [p.strip() for p in _SENTENCE_BREAK.split(text)]
    kept = [p for p in parts if len(p.split()) >= min_words]
    return kept if len(kept) > 1 else []


_TRAILING_TAGS = re.compile(r"(?:\s*[#@][\w']+[^\w#@]*)+$")


def caption_parts(text: str) -> list[str]:
    """What the matcher scores of one raw caption, the best counting (monitor.narratives.matcher): the
    caption (`caption_text`), its `sentences`, and the caption without the hashtags and mentions that end it
    where that leaves `SENTENCE_WORDS` words or more ("Milei vs Congress in the chamber #Milei #Argentina"
    -> "Milei vs Congress in the chamber"): a tail of tags repeats the names and pulls the caption towards
    the bland name decoys. [] for a caption with nothing to read."""
    whole = caption_text(text)
    if not whole:
        return []
    parts = [whole, *sentences(whole)]
    tags = _TRAILING_TAGS.search(text)
    if tags and tags.start() > 0:
        rest = caption_text(text[: tags.start()])
        if len(rest.split()) >= SENTENCE_WORDS and rest not in parts:
            parts.append(rest)
    return parts


def looks_english(text: str) -> bool:
    """Whether a caption reads as (at least partly) English: it has one of the commonest English function
    words ("the", "of", "with"...). Captions in French, German... and bare lists of names or hashtags do not.
    The decoys are English, so they take less from a caption that does not look English
    (monitor.narratives.matcher).
    """
    return any(w in _ENGLISH_WORDS for w in re.findall(r"[a-z]+", text.lower()))


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


def fold(text: str) -> str:
    """Lower case without accents: "Erdoğan" -> "erdogan", "Zürich" -> "zurich"."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def _strip(word: str) -> str:
    """A name's word without trailing punctuation or possessive: "Trump's" -> "Trump"."""
    word = word.rstrip(".'\u2019")
    return re.sub(r"['\u2019]s$", "", word)


def proper_names(texts: Iterable[str]) -> list[str]:
    """The proper names of example captions, stricter than `names`: runs of capitalised words (joined by
    "of", "de"... inside one name) and all-capital acronyms ("NASA"); a single capitalised word that opens
    its caption counts only where some example also capitalises it inside a longer name or mid-sentence
    ("Trump tackled..." with "Donald Trump" elsewhere), not "Snow falls on..." or "Huge flames...".
    In order of first appearance, without duplicates."""
    parsed: list[tuple[int, list[tuple[int, list[str]]], list[str]]] = []
    capitalised_elsewhere: set[str] = set()
    for text in texts:
        words = _WORD.findall(clean_caption(text))
        runs: list[tuple[int, list[str]]] = []
        run: list[str] = []
        start = 0
        for i, word in enumerate(words):
            if word[:1].isupper() and word.lower() not in _NOT_NAMES:
                if not run:
                    start = i
                run.append(_strip(word))
            elif run and word in _NAME_JOINERS and i + 1 < len(words) and words[i + 1][:1].isupper():
                run.append(word)
            elif run:
                runs.append((start, run))
                run = []
        if run:
            runs.append((start, run))
        first = next((i for i, w in enumerate(words) if w.lower() not in _NOT_NAMES), 0)
        for begin, found in runs:
            if begin != first or len(found) > 1:
                capitalised_elsewhere.update(w.lower() for w in found)
        parsed.append((first, runs, words))
    out: list[str] = []
    for first, runs, words in parsed:
        for begin, found in runs:
            lone = begin == first and len(found) == 1 and found[0].lower() not in capitalised_elsewhere
            if lone and not (len(found[0]) > 1 and found[0].isupper()):
                continue  # a capitalised common word opening the caption, not an acronym
            out.append(" ".join(found))
        out.extend(
            _strip(w) for w in words if len(_strip(w)) > 1 and _strip(w).isupper() and _strip(w).isalpha()
        )
    return list(dict.fromkeys(n for n in out if n and n.lower() not in _NOT_NAMES))


def _has_word(text: str, word: str) -> bool:
    return re.search(r"(?<!\w)" + re.escape(fold(word)) + r"(?!\w)", fold(clean_caption(text))) is not None


def subject_names(examples: Sequence[str]) -> list[str]:
    """Every proper name of the examples whose last word comes back in at least two examples: the forms
    of the narrative's subjects ("Donald Trump", "Trump"), the incidental names left out ("NYPD")."""
    return [
        name
        for name in proper_names(examples)
        if sum(_has_word(text, name.split()[-1]) for text in examples) >= 2
    ]


def subjects(examples: Sequence[str]) -> list[str]:
    """The narrative's subjects, one form each (the shortest: "Trump" for "Donald Trump" and "Trump")."""
    groups: dict[str, list[str]] = {}
    for name in subject_names(examples):
        groups.setdefault(fold(name.split()[-1]), []).append(name)
    return [min(forms, key=len) for forms in groups.values()]


def story_decoys(examples: Sequence[str], templates: Sequence[str] = STORY_TEMPLATES) -> list[str]:
    """Everyday stories about the narrative's subjects or, where no name comes back in two examples ("the
    pyramids of Giza" / "the Egyptian pyramids and the Sphinx"), about each of its proper names; none if
    the examples name nothing."""
    named = subjects(examples) or proper_names(examples)
    return [template.format(name) for name in named for template in templates]


def swap_decoys(examples: Sequence[str], placeholder: str = SWAP_PLACEHOLDER) -> list[str]:
    """The examples with every form of the narrative's subjects replaced by the placeholder: the same event
    with someone else in it. Examples that do not name a subject give none."""
    forms = subject_names(examples)
    if not forms:
        return []
    words = {w for name in forms for w in name.split()}
    targets = {n for n in proper_names(examples) if words & set(n.split())} | set(forms)
    targets |= {n.split()[-1] for n in targets}
    pattern = re.compile(
        "|".join(
            r"(?<!\w)" + re.escape(t) + r"(?:'s|\u2019s)?(?!\w)"
            for t in sorted(targets, key=len, reverse=True)
        )
    )
    out: list[str] = []
    for text in examples:
        cleaned = clean_caption(text)
        swapped = pattern.sub("\x00", cleaned)
        if swapped == cleaned:
            continue
        swapped = re.sub(r"\x00(?:\s*\x00)*", "\x00", swapped)
        swapped = _drop_titles(swapped).replace("\x00", placeholder)
        out.append(" ".join(swapped.split()))
    return list(dict.fromkeys(out))


#: Words of a title that stands for its holder ("Kenyan president Ruto", "Microsoft founder Bill Gates",
#: "UK prime minister Starmer"): in a swap decoy the title goes with the name, or the decoy would still name
#: the subject ("UK prime minister someone dozing off") and refuse the captions that name it by its title
#: only ("the British PM nodded off").
TITLE_WORDS = _word_set(
    """
    president prime minister pm chancellor premier leader dictator king queen prince princess pope founder
    co-founder cofounder chief executive ceo boss owner chairman billionaire tycoon mogul star striker
    footballer player captain coach manager singer rapper actor actress presenter host senator governor
    mayor general former ex- first lady opposition supreme
    """
)


def _title_start(words: Sequence[str], end: int) -> int:
    """Where the title just before words[end] starts: the run of title words and capitalised words that
    ends there, where it holds at least one title word; `end` itself where there is no title."""
    run = end
    while run > 0 and (
        words[run - 1].lower() in TITLE_WORDS
        or (words[run - 1][:1].isupper() and words[run - 1].lower() not in _NOT_NAMES)
    ):
        run -= 1
    return run if any(w.lower() in TITLE_WORDS for w in words[run:end]) else end


def _without_title(name: str) -> str:
    """A name without the title it starts with ("Apple CEO Tim Cook" -> "Tim Cook", "Pope Leo" -> "Leo");
    '' for a title alone ("CEO")."""
    words = name.split()
    last = max((i for i, w in enumerate(words) if w.lower() in TITLE_WORDS), default=-1)
    return " ".join(words[last + 1 :])


def role_variants(examples: Sequence[str]) -> list[str]:
    """The examples with a subject named only by the title some example gives it: "Kenyan president Ruto
    dozing off" and "William Ruto fast asleep at the UN" -> "The Kenyan president dozing off", "The Kenyan
    president fast asleep at the UN". Banked as more examples of the narrative, they meet the captions that
    say "the Kenyan president" and never the name, which sit as close to the swap decoy ("someone fast
    asleep at the UN") as to the named examples. The title keeps what tells two holders apart (the country,
    the company), so two narratives of one event with different subjects stay apart. None where no example
    puts a title before a subject; one subject at a time ("Modi hugging the Pakistani prime minister")."""
    groups: dict[str, set[str]] = {}
    for form in subject_names(examples):
        groups.setdefault(fold(_strip(form.split()[-1])), set()).add(form)
    cleaned = [clean_caption(t) for t in examples]
    out: list[str] = []
    for forms in groups.values():
        words = {w for name in forms for w in name.split()}
        targets = {n for n in proper_names(examples) if words & set(n.split())} | forms
        targets |= {n.split()[-1] for n in targets}
        targets = {_without_title(t) for t in targets} - {""}
        alternatives = "|".join(re.escape(t) for t in sorted(targets, key=len, reverse=True))
        pattern = re.compile(r"(?<!\w)(?:" + alternatives + r")('s|\u2019s)?(?!\w)")
        # each mention becomes NUL (runs of them one), its possessive kept: "Traoré's face" -> "\x00's face"
        marked = [
            re.sub(r"\x00(?:\s*\x00)*", "\x00", pattern.sub(lambda m: "\x00" + (m.group(1) or ""), c))
            for c in cleaned
        ]
        titles: list[str] = []
        for text in marked:
            split = text.split(" ")
            for i, word in enumerate(split):
                if word.startswith("\x00") and (start := _title_start(split, i)) < i:
                    titles.append(" ".join(split[start:i]))
        for title in dict.fromkeys(titles):
            role = title[:1].lower() + title[1:] if title.split()[0].lower() in TITLE_WORDS else title
            for original, text in zip(cleaned, marked, strict=True):
                if text == original:
                    continue
                built: list[str] = []
                for word in text.split(" "):
                    if word.startswith("\x00"):
                        del built[_title_start(built, len(built)) :]
                        if built and built[-1].lower() in ("the", "a", "an"):
                            built.pop()
                        built.append(("the " if built else "The ") + role + word[1:])
                    else:
                        built.append(word)
                out.append(" ".join(built))
    return list(dict.fromkeys(out))


def _drop_titles(swapped: str) -> str:
    """A swap decoy's placeholders (NUL) without the titles just before them: the run of title words and
    capitalised words (their country, company or club) that ends at the placeholder, where it holds at least
    one title word ("Canadian prime minister \x00" -> "\x00", not "FBI arrests \x00")."""
    words = swapped.split(" ")
    out: list[str] = []
    for word in words:
        if word.startswith("\x00"):
            run = len(out)
            while run > 0 and (
                out[run - 1].lower() in TITLE_WORDS
                or (out[run - 1][:1].isupper() and out[run - 1].lower() not in _NOT_NAMES)
            ):
                run -= 1
            if any(w.lower() in TITLE_WORDS for w in out[run:]):
                del out[run:]
        out.append(word)
    return " ".join(out)


#: Two spellings of one name whose difflib ratio reaches this are the same name ("brandenburg" /
#: "brandebourg", "christ" / "cristo", "netanyahu" / "netanjahu"), for words of 6 letters or more.
SIMILAR_SPELLING = 0.8


def _same_word(a: str, b: str) -> bool:
    """Two folded words that name the same thing: equal, one a close variant of the other ("zelenski" /
    "zelensky", "eiffelturm" / "eiffel": a common start of 5+ letters covering 3/4 of the shorter word), or
    the same word spelled another language's way (same first letter, 6+ letters, difflib ratio >= 0.8)."""
    if a == b:
        return True
    shorter = min(len(a), len(b))
    if shorter < 5:
        return False
    common = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        common += 1
    if common >= 5 and common >= 0.75 * shorter:
        return True
    # 2 * shorter / (both lengths) bounds the ratio (difflib's real_quick_ratio): most pairs of a bucket fail
    # it without building a SequenceMatcher, which with ratio() costs ~10 us a pair
    if shorter < 6 or a[0] != b[0] or 2 * shorter < SIMILAR_SPELLING * (len(a) + len(b)):
        return False
    matcher = SequenceMatcher(None, a, b)
    return matcher.quick_ratio() >= SIMILAR_SPELLING and matcher.ratio() >= SIMILAR_SPELLING


def distinctive_words(name: str) -> list[str]:
    """The folded words of a subject's name that identify it: "Mount Kilimanjaro" -> ["kilimanjaro"],
    "Neuschwanstein Castle" -> ["neuschwanstein"]; a name made only of generic words keeps them all."""
    words = [w for w in _TOKEN.findall(fold(name)) if w not in _NAME_JOINERS and w not in _NOT_NAMES]
    specific = [w for w in words if w not in GENERIC_NAME_WORDS]
    return specific or words


class SubjectIndex:
    """Which narratives' subjects a caption names, by the distinctive words of their names (accents and case
    folded, close spellings accepted). A caption word met before costs one dictionary look-up; a new one is
    compared with the subject words that share its first letter (spelling variants can differ anywhere
    after it), and remembered: captions in a stream reuse a small vocabulary."""

    #: Caption words remembered at most; the memory starts again when full.
    MEMO_SIZE = 100_000

    def __init__(self, subjects_by_narrative: Sequence[Sequence[str]]) -> None:
        self.count = len(subjects_by_narrative)
        self._by_start: dict[str, list[tuple[str, int]]] = {}
        for k, names_ in enumerate(subjects_by_narrative):
            for name in names_:
                for word in distinctive_words(name):
                    self._by_start.setdefault(word[:1], []).append((word, k))
        self._memo: dict[str, frozenset[int]] = {}

    @property
    def empty(self) -> bool:
        return not self._by_start

    def _narratives_of(self, word: str) -> frozenset[int]:
        known = self._memo.get(word)
        if known is None:
            bucket = self._by_start.get(word[:1], ())
            known = frozenset(k for subject_word, k in bucket if _same_word(word, subject_word))
            if len(self._memo) >= self.MEMO_SIZE:
                self._memo.clear()
            self._memo[word] = known
        return known

    def named(self, caption: str) -> set[int]:
        """The narratives (by index) whose subjects the caption names."""
        found: set[int] = set()
        for word in set(_TOKEN.findall(fold(caption))):
            found |= self._narratives_of(word)
        return found
