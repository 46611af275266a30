"""Stance decoys: a narrative's own examples told by someone who denies them, and by someone who spreads them.

A caption that debunks a faked picture ("Fact check: the viral image of the finance minister at a Monaco
casino is AI-generated") retells the claim to say it is false, so it names the same subject, place and
event as the examples and an embedding puts it about as close to them as a caption that asserts the
claim. What sets it apart is the frame around the claim: "fact check", "no, this is not real", "the image
was generated with AI", in whatever language. So each example of a narrative is wrapped in denial frames
(`DEBUNK_TEMPLATES`), one per language the monitor reads (English, French, Spanish, German, Italian,
Portuguese; two in English), and embedded like the other decoys, once with the bank. A caption that
denies the claim sits nearer a wrapped copy than the bare example, since it shares the frame too.

A frame also pulls captions that share its words without its stance: a spreader asking "is this real??"
sits near "No, this is not real", and a frame in Italian pulls every Italian caption ("Lukashenko scappa
in elicottero da Minsk, le foto della fuga fanno il giro del web" is nearer the Italian denial than the
English example). So each example is also wrapped in the frames of someone spreading it
(`ASSERTION_TEMPLATES`, the same languages: "Incredibile: {}. La foto sta facendo il giro del web", and
"Is this real?? {}", the way many spreaders ask), and a caption counts as a denial only when its nearest
denial is nearer, by monitor.narratives.matcher.STANCE_LEAD, than both the nearest example and the
nearest assertion. Measured by leave one set out on the tuning sets (benchmarks/narratives_tune.py): with
the assertion frames no positive caption of the tuning sets is refused at the lead chosen, without them 6
(four of them "is this real??" or "this can't be real", one Italian).

The frames are generic: no subject, place or event of any narrative is in them, and the claim inside
each is the example itself, so a narrative added tomorrow in any wording gets its own stance decoys.

Frames around the example miss the debunk that negates the claim in the claim's own words ("There is no
Russian submarine in the Thames"): it is no nearer a denial than the claim itself is. Its fact-checking
words are what give it away, whatever its topic: `debunk_cues` below (matcher.DEBUNK_CUES). So are the
words of an honest question about the claim ("Honest question: is any eurozone country planning to ban
cash?"), which shares the claim's topic and none of its stance.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

#: Denial frames around a claim ("{}": an example caption), in the six languages of the monitor. Each
#: says the picture is false and made with AI, the commonest debunk of a faked picture.
DEBUNK_TEMPLATES: tuple[str, ...] = (
    "Fact check: {} — false, the image is AI-generated",
    "No, this is not real: {}. The photo was made with AI",
    "Faux : {}. Cette image a été générée par IA",
    "Falso: {}. La imagen fue creada con inteligencia artificial",
    "Faktencheck: {} \u2013 falsch, das Bild ist KI-generiert",
    "Falso: {}. La foto è stata creata con l'intelligenza artificiale",
    "É falso: {}. A imagem foi gerada por inteligência artificial",
)


def stance_decoys(examples: Sequence[str], templates: Sequence[str] = DEBUNK_TEMPLATES) -> list[str]:
    """Each (cleaned) example in each denial frame: the narrative as its debunkers tell it."""
    return [template.format(example) for example in examples for template in templates]


#: Frames of someone spreading a claim ("{}": an example caption), in the same languages as the denials.
ASSERTION_TEMPLATES: tuple[str, ...] = (
    "Breaking: {}. The photo is going viral",
    "Is this real?? {}",
    "Incroyable : {}. La photo fait le tour des réseaux",
    "Increíble: {}. La foto se ha hecho viral",
    "Unglaublich: {}. Das Foto geht viral",
    "Incredibile: {}. La foto sta facendo il giro del web",
    "Inacreditável: {}. A foto viralizou nas redes",
)


def assertion_decoys(examples: Sequence[str], templates: Sequence[str] = ASSERTION_TEMPLATES) -> list[str]:
    """Each (cleaned) example in each spreading frame: what a denial must be nearer than (see above)."""
    return [template.format(example) for example in examples for template in templates]


# --- debunk cues --------------------------------------------------------------------------------------------
#
# A debunk that names the claim in its own words ("There is no Russian submarine in the Thames. The Port of
# London Authority says the image is fake") shares the claim's words with the examples, and little of the
# denial frames' wording, so an embedding puts it nearer the examples than any denial (held-out v12: 18 of its
# 29 flags). What gives it away is a handful of words that fact-checkers use in every language: "fact check",
# "hoax", "bulo", "intox", "dément", "Fälschung", "AI-generated", "there is no"... A caption carrying one of
# them is refused for a narrative, unless the narrative's own examples carry it too: a narrative that is
# itself a claim of fakery ("the moon landing was staged", "the minister's jab was faked") is told by its
# spreaders with "fake", "montage" and "hoax", so for it those words say nothing (FAKERY_CUES).
#
# The words are generic, from the vocabulary of fact-checking in the six languages the monitor reads, no
# subject, place or event of any narrative among them. A question is no cue by its question mark: spreaders
# ask "is this real??" as often as doubters do (held-out v8-v10); but a question that says its writer does
# not know ("honest question", "is it true that", "est-ce vrai que", "stimmt es, dass") is one, since none of
# the 1,440 positives of the tuning sets says so (`python -m benchmarks.narratives_tune --cue-counts`). Nor
# is a bare negation ("no way", "not AI, it's real"), only the fact-checkers' headline "No, the minister did
# not..." (a "no" with a comma that answers the claim; not "no joke", "no, you're not dreaming"): a cue
# names a verdict, a denial, an absence or an honest doubt.

#: Cue families: name -> alternatives, each matched as whole words on the folded text (lower case, no
#: accents, typographic apostrophes made plain).
DEBUNK_CUE_PATTERNS: dict[str, tuple[str, ...]] = {
    "fact check": (r"fact.?check\w*", r"faktencheck\w*", "checagem", "verificacion", r"debunk\w*"),
    "hoax": (r"hoax\w*", "bulos?", "bufal[ae]", "intox", "infox", r"canular\w*", r"boato\w*"),
    "fake": ("fakes?(?! news| media)",),  # "the fake news media won't show you this" is a spreader's
    "false": ("false(?! flag)", "faux", "fausse", "falso", "falsa", r"falsch\w*"),
    "forgery": (
        r"falschung\w*",
        r"gefalscht\w*",
        r"fotomontag\w*",
        "montaje",
        "montagem",
        "photomontage",
        "truquees?",  # "la photo est truquée"; not "le Tour est truqué" (rigged: a spreader's word)
        "retouchee?s?",
        "(?<!pas )(?<!pas un )(?<!not a )montage",  # "la photo est un montage", not "ce n'est pas un montage"
    ),
    "made with AI": (
        # "generated" alone, in any of the six languages: "AI-generated", "générée par IA", "generata con
        # l'IA", and the picture that "is generated" without naming AI
        "generated",
        "generee?s?",
        "generad[oa]s?",
        "generat[oa]",
        "gerad[oa]s?",
        r"generiert\w*",
        "(?:made|created) (?:by|with|using) ai",
        "it'?s (?:just )?ai",
        "creada con inteligencia artificial",
    ),
    "edited": (
        r"photoshop\w*",
        "doctored",
        "digitally altered",
        "manipulated",
        "manipulee?s?",
        "manipulad[oa]s?",
        r"manipuliert\w*",
        "manipolat[oa]",
        "fabricated",
        "edited (?:photo|image|picture)",
    ),
    "denied": (
        "den(?:y|ies|ied)",
        r"dement\w*",
        r"desmient\w*",
        r"desment\w*",
        r"dementiert\w*",
        r"smentis\w*",
        r"smentit\w*",
    ),
    "not true": (
        "not true",
        "isn'?t true",
        "pas vrai",
        "no es (?:cierto|verdad|real)",
        "non e (?:vero|vera|reale)",
        "nao e (?:verdade|real)",
        "stimmt nicht",
        "nicht echt",
        "not real",
        "isn'?t real",
        "never happened",
        "did not happen",
        "didn'?t happen",
    ),
    "there is no": (
        "there (?:is|are|was|were)(?: no(?! way)|n'?t any| not)",  # "there's no way" is disbelief
        "there'?s no(?! way)",
        "il n'?y a (?:pas|jamais|aucun)",
        "no hay",
        "non c'e",
        "nao ha",
        r"es gibt kein\w*",
    ),
    "or not?": (r"or not\?", r"o no\?", r"ou nao\?", r"oder nicht\?", r"ou pas\?"),
    # "No, the ECB president did not...": the fact-checkers' headline, a "no" that answers the claim; not the
    # spreaders' "no way", "no joke", "no, you're not dreaming", "no, this is not AI", nor a shocked "NO!"
    "no, ...": (
        r"(?:no|non|nein|nao)[,.:](?= )(?! (?:way|joke|kidding|filter|lie|cap)(?!\w))"
        r"(?! (?:you'?re not (?:dreaming|imagining)|vous ne revez|no estas sonando|non stai sognando"
        r"|du traumst nicht|voce nao esta sonhando))"
        r"(?! (?:this|it|that)(?: is|'s)(?: not|n'?t) (?:ai|fake|photoshopped|edited))",
    ),
    # an honest question says that its writer does not know: spreaders ask "is this real??" (no cue), not
    # "honest question" or "is it true that" (none of the 1,440 positives of the tuning sets does)
    "honest question": (
        "(?:honest|genuine|serious|sincere) question",
        "genuinely (?:curious|asking|wondering)",
        "just curious",
        "asking (?:for my|because|since)",  # not "asking for a friend", a spreader's insinuation too
        r"is it true(?= \w)",
        "vraie question",
        "question (?:serieuse|sincere|honnete)",
        "est.ce (?:que c'est )?vrai(?= qu)",
        "pregunta (?:seria|honesta|sincera)",
        "(?:es|sera) (?:cierto|verdad) que",
        "ehrliche frage",
        "ernst ?gemeinte frage",
        "stimmt es,? dass",
        "domanda (?:seria|sincera|onesta)",
        "e vero che",
        "pergunta (?:seria|sincera|honesta)",
        "e verdade que",
    ),
}
_CUES = {
    name: re.compile(r"(?<!\w)(?:" + "|".join(w) + r")(?!\w)") for name, w in DEBUNK_CUE_PATTERNS.items()
}
#: The cues that say "fake" rather than "checked and denied": silent for a narrative claiming fakery.
FAKERY_CUES = frozenset({"fake", "false", "hoax", "forgery", "edited"})
#: Words by which a narrative's examples claim that something was faked or staged.
_CLAIMS_FAKERY = re.compile(
    r"(?<!\w)(?:fake\w*|stag(?:ed|ing)|hoax\w*|fraud\w*|scripted|theat(?:re|er)|montag\w*|fabricat\w*"
    r"|phone?y|farce|truque\w*|inszeniert\w*)(?!\w)"
)


def _folded(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.lower().replace("\u2019", "'"))
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def debunk_cues(text: str) -> frozenset[str]:
    """The families of debunk cues (DEBUNK_CUE_PATTERNS) a caption carries: "Intox : pas de panneaux solaires
    autour de Stonehenge, l'image est retouchée" -> {"hoax", "forgery"}."""
    folded = _folded(text)
    return frozenset(name for name, pattern in _CUES.items() if pattern.search(folded))


def silent_cues(examples: Sequence[str]) -> frozenset[str]:
    """The cues that say nothing against a narrative: those its own examples carry, and FAKERY_CUES where the
    examples claim fakery ("proof the moon landing was staged")."""
    joined = " ".join(examples)
    silent = debunk_cues(joined)
    if _CLAIMS_FAKERY.search(_folded(joined)):
        silent |= FAKERY_CUES
    return silent
