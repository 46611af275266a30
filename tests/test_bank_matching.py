"""Tests for monitor.bank.store (the bank directory of known fakes and narratives), monitor.bank.matcher
(nearest-hash lookups) and monitor.tracking.clusters (visual clusters of stream images), on real photos."""

from __future__ import annotations

import io
import json
import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageEnhance
from skimage import data as skdata

import monitor.imaging.phash_multi_index as multi_index
from monitor.bank.matcher import BankMatcher
from monitor.bank.store import (
    IMAGES_FILE,
    NARRATIVES_FILE,
    BankError,
    BankWatcher,
    add_images,
    add_narrative,
    load_bank,
)
from monitor.imaging.fingerprint import fingerprint
from monitor.imaging.hashes import usable_pdqs
from monitor.imaging.pdq import dihedral_bits
from monitor.imaging.phash_index import HashIndex
from monitor.models import ImageHashes
from monitor.settings import Settings
from monitor.tracking.clusters import ClusterIndex
from tests.support.synthetic import hamming

MATCH_DISTANCE = Settings().match_distance
CLUSTER_DISTANCE = Settings().cluster_distance


def photo(name: str) -> Image.Image:
    return Image.fromarray(getattr(skdata, name)()).convert("RGB")


def jpeg(image: Image.Image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def hashes_of(data: bytes) -> ImageHashes:
    """Hashes as the stream computes them: the bank must record exactly these."""
    return fingerprint(data).hashes


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real photos and edits of them as files."""
    folder = tmp_path_factory.mktemp("photos")
    astronaut = photo("astronaut")
    w, h = astronaut.size
    files = {
        "astronaut": jpeg(astronaut),
        "astronaut-q60": jpeg(astronaut, 60),
        "astronaut-half": jpeg(astronaut.resize((w // 2, h // 2))),
        "astronaut-bright": jpeg(ImageEnhance.Brightness(astronaut).enhance(1.3)),
        "coffee": jpeg(photo("coffee")),
        "coffee-q60": jpeg(photo("coffee"), 60),
        "chelsea": jpeg(photo("chelsea")),
        "rocket": jpeg(photo("rocket")),
    }
    return {name: write(folder / f"{name}.jpg", data) for name, data in files.items()}


def _lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# --- bank -----------------------------------------------------------------------------------------------


def test_missing_bank_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(BankError, match="not found"):
        load_bank(tmp_path / "no-such-bank")


def test_an_existing_empty_directory_is_an_empty_bank(tmp_path: Path) -> None:
    bank = load_bank(tmp_path)
    assert bank.size == 0
    assert bank.narratives == ()


def test_add_images_hashes_copies_and_records(tmp_path: Path, photos: dict[str, Path]) -> None:
    bank_dir = tmp_path / "bank"
    added = add_images(bank_dir, "space-hoax", [photos["astronaut"]], label="Astronaut hoax")
    assert len(added) == 1
    entry = added[0]
    assert entry.cluster == "space-hoax"
    assert entry.label == "Astronaut hoax"
    assert entry.hashes == hashes_of(photos["astronaut"].read_bytes())
    assert (bank_dir / entry.file).read_bytes() == photos["astronaut"].read_bytes()
    assert Path(entry.file).parts[:2] == ("images", "space-hoax")

    bank = load_bank(bank_dir)
    assert bank.images == (entry,)
    assert bank.labels == {"space-hoax": "Astronaut hoax"}
    lines = _lines(bank_dir / IMAGES_FILE)
    assert len(lines) == 1
    assert lines[0]["phash"] == f"{entry.hashes.phash:016x}"


def test_re_adding_the_same_file_is_a_no_op(tmp_path: Path, photos: dict[str, Path]) -> None:
    add_images(tmp_path, "space-hoax", [photos["astronaut"]])
    assert add_images(tmp_path, "space-hoax", [photos["astronaut"], photos["astronaut"]]) == []
    assert len(_lines(tmp_path / IMAGES_FILE)) == 1
    # The same file in another cluster is a separate entry.
    assert len(add_images(tmp_path, "other-hoax", [photos["astronaut"]])) == 1
    assert {i.cluster for i in load_bank(tmp_path).images} == {"space-hoax", "other-hoax"}


def test_images_accumulate_across_adds(tmp_path: Path, photos: dict[str, Path]) -> None:
    add_images(tmp_path, "space-hoax", [photos["astronaut"]], label="first")
    add_images(tmp_path, "space-hoax", [photos["astronaut-q60"]])
    add_images(tmp_path, "coffee-hoax", [photos["coffee"]], label="coffee")
    bank = load_bank(tmp_path)
    assert [i.cluster for i in bank.images] == ["space-hoax", "space-hoax", "coffee-hoax"]
    assert bank.labels == {"space-hoax": "first", "coffee-hoax": "coffee"}


@pytest.mark.parametrize(
    "cluster",
    ["", "../outside", "a/b", "a\\b", ".hidden", "-dash", "has space", "x" * 129, "évian", "evil\n"],
)
def test_bad_cluster_ids_are_refused(tmp_path: Path, photos: dict[str, Path], cluster: str) -> None:
    bank_dir = tmp_path / "bank"
    with pytest.raises(BankError, match="bad cluster"):
        add_images(bank_dir, cluster, [photos["astronaut"]])
    assert not bank_dir.exists() or not any(bank_dir.rglob("*"))


@pytest.mark.parametrize("narrative_id", ["", "../x", "a b", "evil\n"])
def test_bad_narrative_ids_are_refused(tmp_path: Path, narrative_id: str) -> None:
    with pytest.raises(BankError, match="bad narrative id"):
        add_narrative(tmp_path, narrative_id, ["some caption"])
    assert not (tmp_path / NARRATIVES_FILE).exists()


def test_good_ids_are_accepted(tmp_path: Path, photos: dict[str, Path]) -> None:
    for cluster in ("pope-puffer-coat", "A1", "v2.0_final", "x" * 128):
        assert len(add_images(tmp_path, cluster, [photos["rocket"]])) == 1


def test_a_file_that_is_not_an_image_is_refused_and_nothing_recorded(
    tmp_path: Path, photos: dict[str, Path]
) -> None:
    junk = write(tmp_path / "notes.jpg", b"just some text, not a JPEG")
    bank_dir = tmp_path / "bank"
    with pytest.raises(BankError, match=r"notes\.jpg"):
        add_images(bank_dir, "space-hoax", [photos["astronaut"], junk])
    assert load_bank(bank_dir).size == 0


def test_add_narrative_records_stripped_unique_examples(tmp_path: Path) -> None:
    added = add_narrative(tmp_path, "pope-fashion", ["  Pope wears a puffer coat  ", "Pope in Balenciaga"])
    assert [n.text for n in added] == ["Pope wears a puffer coat", "Pope in Balenciaga"]
    assert add_narrative(tmp_path, "pope-fashion", ["Pope wears a puffer coat"]) == []
    add_narrative(tmp_path, "trump-arrest", ["Trump arrested in Manhattan"])
    bank = load_bank(tmp_path)
    assert [(n.narrative_id, n.text) for n in bank.narratives] == [
        ("pope-fashion", "Pope wears a puffer coat"),
        ("pope-fashion", "Pope in Balenciaga"),
        ("trump-arrest", "Trump arrested in Manhattan"),
    ]


def test_an_empty_narrative_text_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BankError, match="empty"):
        add_narrative(tmp_path, "pope-fashion", ["fine", "   "])
    assert load_bank(tmp_path).narratives == ()


def test_a_torn_last_line_is_skipped(tmp_path: Path, photos: dict[str, Path]) -> None:
    add_images(tmp_path, "space-hoax", [photos["astronaut"]])
    with (tmp_path / IMAGES_FILE).open("a", encoding="utf-8") as handle:
        handle.write('{"cluster": "coffee-hoax", "phash": "00ff')
    with (tmp_path / NARRATIVES_FILE).open("a", encoding="utf-8") as handle:
        handle.write('{"narrative_id": "x", "text": "ok"}\n{"narrative_id": "y", "te')
    bank = load_bank(tmp_path)
    assert [i.cluster for i in bank.images] == ["space-hoax"]
    assert [n.narrative_id for n in bank.narratives] == ["x"]


@pytest.mark.parametrize(
    "line",
    ['["not", "an", "object"]', '{"cluster": "c"}', '{"cluster": "c", "phash": "zz", "dhash": "00"}'],
)
def test_a_bad_bank_entry_is_an_error_naming_the_file(tmp_path: Path, line: str) -> None:
    (tmp_path / IMAGES_FILE).write_text(line + "\n", encoding="utf-8")
    with pytest.raises(BankError, match=IMAGES_FILE):
        load_bank(tmp_path)


def test_bank_watcher_reloads_when_the_files_change(tmp_path: Path, photos: dict[str, Path]) -> None:
    add_images(tmp_path, "space-hoax", [photos["astronaut"]])
    watcher = BankWatcher(tmp_path, interval=0.0)
    assert watcher.bank.size == 1
    assert watcher.poll() is None  # nothing changed

    add_images(tmp_path, "coffee-hoax", [photos["coffee"]])
    reloaded = watcher.poll()
    assert reloaded is not None
    assert [i.cluster for i in reloaded.images] == ["space-hoax", "coffee-hoax"]
    assert watcher.bank is reloaded
    assert watcher.poll() is None

    add_narrative(tmp_path, "pope-fashion", ["Pope in a puffer coat"])
    reloaded = watcher.poll()
    assert reloaded is not None
    assert [n.narrative_id for n in reloaded.narratives] == ["pope-fashion"]
    assert reloaded.size == 2


def test_bank_watcher_waits_for_its_interval(tmp_path: Path, photos: dict[str, Path]) -> None:
    watcher = BankWatcher(tmp_path, interval=3600.0)
    assert watcher.bank.size == 0
    add_images(tmp_path, "space-hoax", [photos["astronaut"]])
    assert watcher.poll() is None
    assert watcher.bank.size == 0


def test_bank_watcher_needs_an_existing_directory(tmp_path: Path) -> None:
    with pytest.raises(BankError, match="not found"):
        BankWatcher(tmp_path / "missing")


# --- HashIndex / BankMatcher ----------------------------------------------------------------------------


def test_hash_index_nearest_within_distance() -> None:
    index = HashIndex()
    assert index.nearest(0, 64) is None
    a = index.add(0)
    b = index.add(0xFF)  # 8 bits away from 0
    c = index.add(2**64 - 1)  # high bit set
    assert (a, b, c, len(index)) == (0, 1, 2, 3)
    hit = index.nearest(0b1, 5)
    assert hit is not None and (hit.index, hit.distance) == (0, 1)
    hit = index.nearest(0x7F, 5)
    assert hit is not None and (hit.index, hit.distance) == (1, 1)
    hit = index.nearest(2**64 - 2, 5)
    assert hit is not None and (hit.index, hit.distance) == (2, 1)
    assert index.nearest(0x0F0F_0000_0000_0000, 3) is None  # 8 bits from 0, farther from the rest


def test_hash_index_distance_limit_is_inclusive() -> None:
    index = HashIndex()
    index.add(0)
    assert index.nearest(0b111, 3) is not None
    assert index.nearest(0b1111, 3) is None


def test_hash_index_ties_go_to_the_lowest_index() -> None:
    index = HashIndex()
    index.add(0b1100)
    index.add(0b0011)
    hit = index.nearest(0b0000, 4)
    assert hit is not None and (hit.index, hit.distance) == (0, 2)


def test_hash_index_grows_past_its_initial_capacity() -> None:
    index = HashIndex()
    values = [(i * 0x9E37_79B9_7F4A_7C15) % 2**64 for i in range(1, 200)]
    for value in values:
        index.add(value)
    assert len(index) == len(values)
    for i, value in enumerate(values):
        hit = index.nearest(value, 0)
        assert hit is not None and hit.index == i and hit.distance == 0


def test_bank_matcher_finds_edits_of_a_banked_fake(tmp_path: Path, photos: dict[str, Path]) -> None:
    add_images(tmp_path, "space-hoax", [photos["astronaut"]])
    add_images(tmp_path, "coffee-hoax", [photos["coffee"]])
    matcher = BankMatcher(load_bank(tmp_path), MATCH_DISTANCE)
    for name in ("astronaut", "astronaut-q60", "astronaut-half", "astronaut-bright"):
        match = matcher.match(hashes_of(photos[name].read_bytes()))
        assert match is not None, name
        assert match.bank_cluster == "space-hoax"
        assert match.hash_kind == "phash"
        assert 0 <= match.distance <= MATCH_DISTANCE
    exact = matcher.match(hashes_of(photos["astronaut"].read_bytes()))
    assert exact is not None and exact.distance == 0
    coffee = matcher.match(hashes_of(photos["coffee-q60"].read_bytes()))
    assert coffee is not None and coffee.bank_cluster == "coffee-hoax"


def test_bank_matcher_ignores_unrelated_photos(tmp_path: Path, photos: dict[str, Path]) -> None:
    add_images(tmp_path, "space-hoax", [photos["astronaut"]])
    add_images(tmp_path, "coffee-hoax", [photos["coffee"]])
    matcher = BankMatcher(load_bank(tmp_path), MATCH_DISTANCE)
    assert matcher.match(hashes_of(photos["chelsea"].read_bytes())) is None
    assert matcher.match(hashes_of(photos["rocket"].read_bytes())) is None


def test_bank_matcher_distance_setting_is_honoured(tmp_path: Path, photos: dict[str, Path]) -> None:
    add_images(tmp_path, "space-hoax", [photos["astronaut"]])
    bank = load_bank(tmp_path)
    banked = bank.images[0].hashes
    assert banked is not None
    probe = hashes_of(photos["astronaut-bright"].read_bytes())
    distance = hamming(probe.phash, banked.phash)
    assert distance > 0, "the edit must change the hash for this test to mean anything"
    # pHash alone (PDQ switched off by a zero distance that no edit meets):
    no_pdq = {"pdq_distance": -1, "local": False}
    assert BankMatcher(bank, distance, **no_pdq).match(probe) is not None
    assert BankMatcher(bank, distance - 1, **no_pdq).match(probe) is None
    # PDQ alone (pHash switched off):
    assert probe.pdq is not None and banked.pdq is not None
    pdq_distance = hamming(probe.pdq, banked.pdq)
    assert pdq_distance > 0
    assert BankMatcher(bank, -1, pdq_distance=pdq_distance, local=False).match(probe) is not None
    assert BankMatcher(bank, -1, pdq_distance=pdq_distance - 1, local=False).match(probe) is None


def test_an_empty_bank_matches_nothing(tmp_path: Path, photos: dict[str, Path]) -> None:
    matcher = BankMatcher(load_bank(tmp_path), 64)
    assert matcher.match(hashes_of(photos["astronaut"].read_bytes())) is None


# --- ClusterIndex ---------------------------------------------------------------------------------------


def test_near_duplicates_join_one_cluster(photos: dict[str, Path]) -> None:
    index = ClusterIndex({}, CLUSTER_DISTANCE)
    astronaut = [
        index.assign(hashes_of(photos[n].read_bytes()))
        for n in ("astronaut", "astronaut-q60", "astronaut-half", "astronaut-bright")
    ]
    coffee = [index.assign(hashes_of(photos[n].read_bytes())) for n in ("coffee", "coffee-q60")]
    chelsea = index.assign(hashes_of(photos["chelsea"].read_bytes()))
    assert len(set(astronaut)) == 1
    assert len(set(coffee)) == 1
    assert len({astronaut[0], coffee[0], chelsea}) == 3
    assert len(index) == 3


def test_cluster_ids_are_deterministic_and_named_after_the_founder(photos: dict[str, Path]) -> None:
    order = ["coffee", "astronaut-q60", "astronaut", "chelsea", "coffee-q60"]
    first = ClusterIndex({}, CLUSTER_DISTANCE)
    second = ClusterIndex({}, CLUSTER_DISTANCE)
    ids_first = [first.assign(hashes_of(photos[n].read_bytes())) for n in order]
    ids_second = [second.assign(hashes_of(photos[n].read_bytes())) for n in order]
    assert ids_first == ids_second
    founder = hashes_of(photos["astronaut-q60"].read_bytes())
    assert ids_first[1] == f"c-{founder.phash:016x}"
    assert ids_first[2] == ids_first[1]


def test_cluster_index_is_rebuilt_from_its_store(photos: dict[str, Path]) -> None:
    store: dict[str, object] = {}
    before = ClusterIndex(store, CLUSTER_DISTANCE)
    astronaut = before.assign(hashes_of(photos["astronaut"].read_bytes()))
    coffee = before.assign(hashes_of(photos["coffee"].read_bytes()))
    keys_before = set(store)

    after = ClusterIndex(store, CLUSTER_DISTANCE)  # a restarted worker over the same table
    assert len(after) == 2
    assert after.assign(hashes_of(photos["astronaut-half"].read_bytes())) == astronaut
    assert after.assign(hashes_of(photos["coffee-q60"].read_bytes())) == coffee
    assert set(store) == keys_before  # no new cluster was founded
    rocket = after.assign(hashes_of(photos["rocket"].read_bytes()))
    assert rocket not in (astronaut, coffee)
    assert len(ClusterIndex(store, CLUSTER_DISTANCE)) == 3


def test_rebuilt_index_keeps_founding_order_for_ties() -> None:
    # Two clusters at the same distance from a probe: the one founded first wins, also after a restart
    # whose store hands back its keys in another order (a changelog restore does not keep dict order).
    store: dict[str, object] = {}
    index = ClusterIndex(store, 2)
    later_founded_hash = ImageHashes(phash=0b0000)
    first = index.assign(ImageHashes(phash=0b1111))
    second = index.assign(later_founded_hash)
    assert first != second
    probe = ImageHashes(phash=0b0011)
    assert index.assign(probe) == first

    reordered = dict(reversed(list(store.items())))
    assert ClusterIndex(reordered, 2).assign(probe) == first


# --- PDQ in banks and clusters --------------------------------------------------------------------------


def test_a_bank_written_before_pdq_gets_it_recomputed_from_its_copies(
    tmp_path: Path, photos: dict[str, Path]
) -> None:
    add_images(tmp_path, "space-hoax", [photos["astronaut"]])
    lines = _lines(tmp_path / IMAGES_FILE)
    assert isinstance(lines[0]["pdq"], str) and len(lines[0]["pdq"]) == 64
    old = [{k: v for k, v in line.items() if not k.startswith("pdq")} for line in lines]
    (tmp_path / IMAGES_FILE).write_text("".join(json.dumps(o) + "\n" for o in old), encoding="utf-8")
    entry = load_bank(tmp_path).images[0]
    assert entry.hashes is not None and entry.pdq == int(str(lines[0]["pdq"]), 16)
    # Without the copy the entry keeps what it has: a pHash, no PDQ.
    (tmp_path / str(lines[0]["file"])).unlink()
    import monitor.bank.store as bank_module

    bank_module._RECOMPUTED.clear()
    stripped = load_bank(tmp_path).images[0]
    assert stripped.pdq is None and stripped.hashes is not None
    assert stripped.hashes.phash == int(str(lines[0]["phash"]), 16)


def test_mirrored_and_letterboxed_reuploads_join_their_cluster(photos: dict[str, Path]) -> None:
    from PIL import ImageOps

    index = ClusterIndex({}, CLUSTER_DISTANCE)
    astronaut = Image.open(photos["astronaut"]).convert("RGB")
    first = index.assign(hashes_of(jpeg(astronaut)))
    mirrored = hashes_of(jpeg(ImageOps.mirror(astronaut)))
    assert hamming(mirrored.phash, hashes_of(jpeg(astronaut)).phash) > CLUSTER_DISTANCE
    assert index.assign(mirrored) == first
    boxed = Image.new("RGB", (900, 512))
    boxed.paste(astronaut, (194, 0))
    assert index.assign(hashes_of(jpeg(boxed))) == first
    assert index.assign(hashes_of(photos["chelsea"].read_bytes())) != first
    assert len(index) == 2


# --- ClusterIndex at scale ------------------------------------------------------------------------------


def _words(value: int) -> list[int]:
    return [(value >> (64 * k)) & (2**64 - 1) for k in range(4)]


def _scan_assign(phashes: np.ndarray, variants: np.ndarray, hashes: ImageHashes) -> int | None:
    """The rule, by brute force over every founder: the earliest nearest by pHash within the cluster
    distance, else the earliest nearest by PDQ over its eight dihedral variants (`variants`: founder x 8
    x 4 words), else None (a new cluster)."""
    by_phash = np.bitwise_count(phashes ^ np.uint64(hashes.phash))
    if by_phash.min() <= CLUSTER_DISTANCE:
        return int(np.argmin(by_phash))
    best = None
    for query in usable_pdqs(hashes):
        bits = np.bitwise_count(variants ^ np.array(_words(query), dtype=np.uint64))
        by_pdq = bits.sum(axis=2, dtype=np.int64).min(axis=1)
        found = (int(by_pdq.min()), int(np.argmin(by_pdq)))
        best = found if best is None else min(best, found)
    return best[1] if best is not None and best[0] <= 31 else None


def _flip(value: int, bits: int, rng: random.Random, width: int) -> int:
    for bit in rng.sample(range(width), bits):
        value ^= 1 << bit
    return value


def test_a_large_cluster_index_assigns_as_a_scan_does(monkeypatch: pytest.MonkeyPatch) -> None:
    # Thousands of clusters, answered from the multi-index tables (built from 512 hashes on here, not from
    # the tens of thousands where they start to beat a scan); queries: re-uploads a few pHash bits off,
    # mirrored or rotated copies (a dihedral PDQ variant, pHash far off), and new pictures.
    monkeypatch.setattr(multi_index, "SCAN_BELOW", {64: 512, 256: 512})
    rng = random.Random(3)
    founders = [
        ImageHashes(phash=rng.getrandbits(64), pdq=rng.getrandbits(256), pdq_quality=100) for _ in range(3000)
    ]
    store: dict[str, object] = {}
    index = ClusterIndex(store, CLUSTER_DISTANCE)
    ids = [index.assign(founder) for founder in founders]
    assert len(set(ids)) == len(founders)
    queries = []
    for _ in range(150):
        founder = founders[rng.randrange(len(founders))]
        assert founder.pdq is not None
        kind = rng.randrange(3)
        if kind == 0:
            phash = _flip(founder.phash, rng.randrange(CLUSTER_DISTANCE - 3, CLUSTER_DISTANCE + 3), rng, 64)
            queries.append(ImageHashes(phash=phash))
        elif kind == 1:
            variant = dihedral_bits(founder.pdq)[rng.randrange(1, 8)]
            pdq = _flip(variant, rng.randrange(25, 37), rng, 256)
            queries.append(ImageHashes(phash=rng.getrandbits(64), pdq=pdq, pdq_quality=100))
        else:
            queries.append(ImageHashes(phash=rng.getrandbits(64), pdq=rng.getrandbits(256), pdq_quality=100))
    phashes = np.array([f.phash for f in founders], dtype=np.uint64)
    variants = np.array([[_words(v) for v in dihedral_bits(f.pdq or 0)] for f in founders], dtype=np.uint64)
    expected = [_scan_assign(phashes, variants, q) for q in queries]
    assert {e is None for e in expected} == {True, False}, "the queries must both hit and miss"
    restarted = ClusterIndex(store, CLUSTER_DISTANCE)  # the same answers from an index rebuilt from the store
    assert len(restarted) == len(founders)
    assert all(part._segments for part in (index._phash, index._pdq, restarted._phash, restarted._pdq))
    for query, position in zip(queries, expected, strict=True):
        if position is not None:
            assert index.assign(query) == ids[position]
            assert restarted.assign(query) == ids[position]


def test_forgotten_clusters_leave_the_rest_in_founding_order() -> None:
    store: dict[str, object] = {}
    index = ClusterIndex(store, 2)
    first = index.assign(ImageHashes(phash=0b1111))
    gone = index.assign(ImageHashes(phash=0b1111_0000_0000))
    second = index.assign(ImageHashes(phash=0b0000))
    index.forget({gone})
    assert f"rep:{gone}" not in store and len(index) == 2
    assert index.assign(ImageHashes(phash=0b0011)) == first  # the tie still goes to the earlier cluster
    assert index.assign(ImageHashes(phash=0b1111_0000_0000)) == gone  # founded again, after `second`
    assert index.assign(ImageHashes(phash=0b0001)) == second
    # Two bits from both `second` and the refounded cluster: `second` was founded first, also after a restart.
    restarted = ClusterIndex(store, 2)
    assert restarted.assign(ImageHashes(phash=0b1100_0000_0000)) == second
    assert restarted.assign(ImageHashes(phash=0b1110_0000_0000)) == gone


def test_representatives_written_by_the_previous_version_are_read() -> None:
    # Earlier versions stored each representative as the hashes' JSON object plus its founding number.
    pdq = random.Random(1).getrandbits(256)
    old = ImageHashes(phash=0xF0F0, pdq=pdq, pdq_quality=90)
    store: dict[str, object] = {"rep:c-000000000000f0f0": {**old.to_json(), "seq": 0}}
    index = ClusterIndex(store, CLUSTER_DISTANCE)
    mirrored = ImageHashes(phash=0x0F0F_0000_0000_0000, pdq=dihedral_bits(pdq)[1], pdq_quality=90)
    assert index.assign(mirrored) == "c-000000000000f0f0"
    assert len(index) == 1
