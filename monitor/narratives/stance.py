"""Stance decoys: a narrative's own examples told by someone who denies them.

A caption that debunks a faked picture ("Fact check: the viral image of the finance minister at a Monaco
casino is AI-generated") retells the claim to say it is false, so it names the same subject, place and
event as the examples and an embedding puts it about as close to them as a caption that asserts the
claim. What sets it apart is the frame around the claim: "fact check", "no, this is not real", "the image
was generated with AI", in whatever language. So each example of a narrative is wrapped in denial frames,
one or more per language the monitor reads (English, French, Spanish, German, Italian, Portuguese), and
embedded like the other decoys, once with the bank. A caption that asserts the claim sits nearer the
bare example than its wrapped copies; a caption that denies it sits nearer a wrapped copy, since it shares
the frame too. The matcher compares the two (monitor.narratives.matcher.STANCE_LEAD).

The frames are generic: no subject, place or event of any narrative is in them, and the claim inside
each is the example itself, so a narrative added tomorrow in any wording gets its own stance decoys.
"""

from __future__ import annotations

from collections.abc import Sequence

#: Denial frames around a claim ("{}": an example caption), in the six languages of the monitor. Each
#: says the picture is false and made with AI or edited, the commonest debunk of a faked picture.
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
