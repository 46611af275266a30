"""Debunk cues: a caption that repeats a banked claim in the claim's own words to deny it ("There is no ...",
"Le zoo dément ...") is not flagged for it, the claim itself still is (monitor.narratives.stance.debunk_cues,
matcher.DEBUNK_CUES), with a deterministic fake encoder that cannot tell the two apart."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pytest

from monitor.bank.store import NarrativeExample
from monitor.narratives.matcher import DEBUNK_CUES, NarrativeMatcher
from monitor.narratives.stance import FAKERY_CUES, debunk_cues, silent_cues

SUBMARINE = "Russian submarine surfaces in the Thames next to Tower Bridge"
SYRINGE = "Photo shows the health minister's booster shot was faked: the syringe is empty"
BACKGROUND = ("bg one", "bg two", "bg three", "bg four")


@pytest.mark.parametrize(
    ("caption", "cue"),
    [
        ("There is no Russian submarine in the Thames. The Tower Bridge image is fake.", "there is no"),
        ("Le zoo de Cologne dément : aucun lion ne s'est échappé pendant la tempête", "denied"),
        ("Bulo: la foto del ministro con la jeringa vacía es un recorte", "hoax"),
        ("Intox : pas de panneaux solaires autour de Stonehenge, l'image est retouchée", "hoax"),
        ("Dombauhütte: Der Dom hat den Sturm überstanden. Das Foto ist eine Fälschung.", "forgery"),
        ("Checagem: vídeo completo mostra que o ministro recebeu a dose", "fact check"),
        ("Las autoridades de Maricopa desmienten la foto de votos en un vertedero", "denied"),
        ("No, Sam Altman doesn't have robot bodyguards. The viral image is AI-generated", "made with AI"),
        ("La foto è stata creata con l'intelligenza artificiale, è una bufala", "hoax"),
        ("FACT CHECK: the stadium has no roof to lose", "fact check"),
        # the fact-checkers' headline: a "no" that answers the claim
        ("No, the tennis star did not hit a ball kid: broadcast footage shows him on clay", "no, ..."),
        ("Non, Adele n'est pas devenue religieuse. La photo virale est un montage IA.", "no, ..."),
        ("Non, Adele n'est pas devenue religieuse. La photo virale est un montage IA.", "forgery"),
        ("That photo of the yellow jersey 'towed by his team car' is generated.", "made with AI"),
        ("L'immagine del sottomarino è generata, nessuna fonte la conferma", "made with AI"),
        # an honest question: its writer does not know
        ("Honest question, how do they actually check bikes for motors at the Tour?", "honest question"),
        ("Is it true France doesn't fluoridate its tap water? Saw a post about Lyon", "honest question"),
        (
            "Is any eurozone country planning to ban cash? Asking because of the shredder photo",
            "honest question",
        ),
        ("¿Es cierto que hay un submarino ruso en el Támesis?", "honest question"),
        ("Est-ce vrai qu'un sous-marin russe est dans la Tamise ?", "honest question"),
        ("Stimmt es, dass ein russisches U-Boot in der Themse liegt?", "honest question"),
        ("È vero che c'è un sottomarino russo nel Tamigi?", "honest question"),
        ("Pergunta séria: o submarino no Tâmisa existe mesmo?", "honest question"),
    ],
)
def test_the_words_of_a_debunk_are_read_in_each_language(caption: str, cue: str) -> None:
    assert cue in debunk_cues(caption)


@pytest.mark.parametrize(
    "caption",
    [
        SUBMARINE,
        "is this real?? a Russian sub right by Tower Bridge",  # spreaders ask too
        "Mbappé al Barça?! no way, he's holding the blaugrana shirt",  # a bare "no" is no denial
        "this is NOT AI, it's real, my cousin was there",
        "Der bekannteste Tech-Milliardär in Handschellen abgeführt, seine KI-Firma ist pleite",
        "Ma quindi il sottomarino nel Tamigi, qualcuno ha una fonte?",
        "Denmark's king opens the new bridge",  # a word that starts like "deny" is not "deny"
        "The fake news media won't show you this: a Russian sub in the Thames",  # spreaders' words
        "a false flag, wake up: the sub in the Thames was planted",
        "there's no way this is real, a submarine by Tower Bridge 😳",
        "Aucun média n'en parle : un sous-marin russe dans la Tamise",
        # spreaders' idioms beside the new cues: a "no" that is no answer, "is it true??" with nothing after,
        # "truqué" of an event (rigged), a picture that is "not a montage", "asking for a friend"
        "No, you're not dreaming: a Russian sub right by Tower Bridge",
        "No, this is not AI: the sub surfaced by Tower Bridge this morning",
        "No joke, a Russian submarine in the Thames 😳",
        "NO! a Russian submarine in the Thames, right by Tower Bridge 😭",
        "Non, vous ne rêvez pas : un sous-marin russe dans la Tamise",
        "is it true?? 😱 a Russian sub in the Thames",
        "Un moteur caché dans le vélo du maillot jaune. Le Tour est truqué 🤡",
        "Ce n'est pas un montage : le sous-marin est bien dans la Tamise",
        "Why is a Russian sub in the Thames and no one talks about it? Asking for a friend",
        "world no.1 'just eats clean' huh?? the sub is right by Tower Bridge",
    ],
)
def test_a_caption_that_spreads_or_only_asks_carries_no_cue(caption: str) -> None:
    assert debunk_cues(caption) == frozenset()


def test_an_honest_question_about_the_claim_is_refused_and_a_spreader_asking_is_not() -> None:
    m = matcher()
    assert m.match("Honest question: is there really a Russian submarine in the Thames?") is None
    asked = m.match("is this real?? a Russian submarine in the Thames right by Tower Bridge")
    assert asked is not None and asked.narrative_id == "thames-submarine"
    # the same question without its cue is flagged: the cue is what refuses it
    honest = matcher(debunk_cues=False).match(
        "Honest question: is there really a Russian submarine in the Thames?"
    )
    assert honest is not None and honest.narrative_id == "thames-submarine"


def test_a_narrative_that_claims_fakery_silences_the_words_of_fakery_only() -> None:
    assert silent_cues([SYRINGE, "The nurse pressed a capped, empty syringe to his arm"]) >= FAKERY_CUES
    assert silent_cues(["Proof the moon landing was staged in a studio"]) >= FAKERY_CUES
    # its debunkers still say "fact check", "denied", "there is no"
    assert not {"fact check", "denied", "there is no"} & silent_cues([SYRINGE])
    assert silent_cues([SUBMARINE]) == frozenset()
    # a cue that the examples themselves carry says nothing against them
    assert "there is no" in silent_cues(["There is no water left in the Venice canals"])


class SameVector:
    """A model read asymmetrically (like EmbeddingGemma's retrieval prompts) that puts every caption about the
    submarine or the syringe on its claim: the embedding cannot tell a debunk from the claim."""

    def __init__(self, table: Mapping[str, Sequence[float]]) -> None:
        self.table = {t: np.asarray(v, dtype=np.float32) / np.linalg.norm(v) for t, v in table.items()}
        self.documents = self

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        rows = []
        for text in texts:
            if "syring" in text.lower() or "jab" in text.lower():
                rows.append(self.table[SYRINGE])
            elif "submarine" in text.lower() or "thames" in text.lower():
                rows.append(self.table[SUBMARINE])
            else:
                rows.append(self.table.get(text, self.table["bg one"]))
        return np.stack(rows).reshape(len(texts), 4)


VECTORS = {
    "bg one": (0, 0, 1, 0),
    "bg two": (0, 0, 0, 1),
    "bg three": (0, 0, 1, 1),
    "bg four": (0, 0, 1, -1),
    SUBMARINE: (1, 0, 0, 0),
    SYRINGE: (0, 1, 0, 0),
}
BANK = [NarrativeExample("thames-submarine", SUBMARINE), NarrativeExample("empty-syringe", SYRINGE)]
#: Below the score of a caption on its claim in this space (0.24).
THRESHOLD = 0.1


def matcher(debunk_cues: bool = DEBUNK_CUES) -> NarrativeMatcher:
    return NarrativeMatcher(
        SameVector(VECTORS),
        BANK,
        THRESHOLD,
        background=BACKGROUND,
        retrieval_story_weight=0.0,
        debunk_cues=debunk_cues,
    )


def test_a_debunk_in_the_claims_own_words_is_refused_and_the_claim_is_still_matched() -> None:
    assert DEBUNK_CUES
    m = matcher()
    claim = m.match("A RUSSIAN SUB IN THE THAMES?! a submarine right by Tower Bridge, where is the Navy")
    assert claim is not None and claim.narrative_id == "thames-submarine"
    for debunk in (
        "There is no Russian submarine in the Thames. The Port of London Authority says the image is fake.",
        "Submarino ruso en el Thames? es falso, la imagen fue generada por IA",
        "Faktencheck: kein russisches U-Boot in der Thames",
    ):
        assert m.match(debunk) is None, debunk
    # without the cues the same debunk is flagged: they are what refuses it
    flagged = matcher(debunk_cues=False).match("There is no Russian submarine in the Thames")
    assert flagged is not None and flagged.narrative_id == "thames-submarine"


def test_a_spreader_of_a_fakery_claim_who_says_fake_is_still_matched_and_its_fact_check_is_not() -> None:
    m = matcher()
    spread = m.match("Le ministre de la Santé et son fake jab, the needle cap is still ON, seringue vide")
    assert spread is not None and spread.narrative_id == "empty-syringe"
    assert m.match("Fact check: the health minister's syringe was full, the full video shows the jab") is None
    # a cue refuses a caption for the narratives it speaks against only: the other keeps its score
    caption = "Fake: the syringe photo is a montage"  # silent for the fakery claim, not for the submarine
    cued, plain = m.caption_scores([caption])[0], matcher(debunk_cues=False).caption_scores([caption])[0]
    syringe, submarine = m.narratives.index("empty-syringe"), m.narratives.index("thames-submarine")
    assert cued[syringe] == plain[syringe]
    assert cued[submarine] < plain[submarine]


class Symmetric(SameVector):
    """The same space read with one prompt on both sides (like the default caption models)."""

    def __init__(self, table: Mapping[str, Sequence[float]]) -> None:
        super().__init__(table)
        del self.documents


def test_the_cues_are_read_only_by_a_model_read_asymmetrically_with_stance_decoys() -> None:
    debunk = ["There is no Russian submarine in the Thames"]
    assert matcher().debunked(debunk).any()
    assert not matcher(debunk_cues=False).debunked(debunk).any()
    without_stance = NarrativeMatcher(
        SameVector(VECTORS), BANK, THRESHOLD, background=BACKGROUND, stance_lead=None
    )
    assert not without_stance.debunked(debunk).any()
    assert without_stance.match(debunk[0]) is not None
    symmetric = NarrativeMatcher(Symmetric(VECTORS), BANK, THRESHOLD, background=BACKGROUND)
    assert not symmetric.debunked(debunk).any()
