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
"""

from __future__ import annotations

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
