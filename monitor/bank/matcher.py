"""Bank matching: which banked cluster of known fakes, if any, an image is a copy of.

Two stages, chosen by measurement (benchmarks/matching.py):

1. Global hashes, for every image. The PDQ hashes of the whole image and of the picture found inside
   added borders, bands and app chrome, each in its eight dihedral variants (mirrors, quarter turns), are
   looked up within Meta's match distance (31 of 256 bits) in an exact multi-index (`hash_index.py`).
   Hashes of quality under 50 (flat, low-detail pictures) are not looked up at all: they would match
   everything. The 64-bit pHash within `match_distance` is tried first, as before PDQ, so that plain
   re-encodes keep reporting the distance users and alerts already show.
2. Local features, only when the global hashes found nothing: ORB keypoints verified by an affine fit
   (`local_features.py`) against the banked pictures whose copies the bank keeps. This is what finds
   crops, tilts, stickers and pictures shrunk into screenshots.
3. Pictures PDQ refuses (quality under 50), on evidence rather than refusal (`evidence.py`): a
   low-contrast copy (sepia, grey, washed out) whose quality passes once its contrast is stretched is
   looked up by its whole PDQ hash, as any; a banked smooth picture (soft gradients, generated art) is
   matched on its high-passed layout, tightly; a plain picture is never matched, and `explain` says so.
   These run with the local stage (`match_local`), as they need the picture. A match to a smooth banked
   picture, by local features or layout, must also hold pixel by pixel (`evidence.check_local`,
   `check_layout`), in every colour channel when the file's bytes are at hand; a pHash hit on one is not
   taken (soft look-alikes share its outline), a PDQ hit on one from distance 21 must hold pixel by pixel
   too, and the agreement that counts is over the banked picture's structure (its subject, edges, hill
   lines), not its flat background; a generic banked picture (one blob on a plain or graded background)
   must keep its hues as well (`evidence.Fit`, `is_generic`). Crops and covered copies of a smooth
   picture, which neither its layout nor local features catch, are found by a region search
   (`LayoutIndex.region_match`, `contained_match`): the copy placed inside the banked picture, or the
   banked picture inside the copy, and compared there in grey and in colour (`region=False` leaves it
   out); a crop is placed as it is too when its layout scored best mirrored or turned. A monochrome copy of
   a generic picture, too washed out for the stretched PDQ stage, is taken on a near PDQ hash only where
   it has no hue at all and its grey agrees nearly exactly (`_monochrome_holds`); a generic picture whose
   hash is too faint to index is looked up for that check alone (`_faint_pdq`). A soft query's canvas is
   also looked for in colour (`_colour_canvas`), stickers and a watermark are painted out of a view whose
   checks leave them out (`inset.covered`; also for a query whose texture is all under what it paints out,
   a watermark's handle), the texture beside a query's text is the text's, not a photo's (`inset._cells`),
   and the local stage also looks at a picture across a phone
   screenshot's width without the text under it (`inset.screen_band`). A colour check that fails is
   tried once more for a copy brightened past white, toned and re-encoded hard (`evidence._degraded_fit`),
   and the region search also places a query in the mirror image of its best orientation.
"""

from __future__ import annotations

import logging

import numpy as np
from cachetools import LRUCache
from PIL import Image

from monitor.bank.store import Bank, BankImage
from monitor.imaging import evidence
from monitor.imaging.borders import TIGHT_RUN, TIGHT_TOLERANCE, uniform_trim
from monitor.imaging.evidence import (
    MIN_COLOUR_FIT,
    MIN_INSIDE,
    MIN_MONOCHROME_FIT,
    MIN_MONOCHROME_SUBJECT,
    MIN_PDQ_FIT,
    MIN_TONE_FIT,
    SMOOTH_PDQ_CHECKED,
    SOFT_KEYPOINTS,
    Box,
    Evidence,
    LayoutIndex,
    SeenOnce,
    assess,
    check_local,
    colour_thumbnail,
    contrast_quality,
    crop_fraction,
    thumbnail,
)
from monitor.imaging.fingerprint import fingerprint
from monitor.imaging.hash_index import Found, PdqIndex
from monitor.imaging.hashes import regions_of, usable_pdqs
from monitor.imaging.inset import (
    canvas_box,
    covered,
    inner_boxes,
    on_canvas,
    painted,
    scaled,
    screen_band,
    small_colour,
    small_grey,
)
from monitor.imaging.local_features import (
    MIN_INLIERS,
    Features,
    LocalIndex,
    LocalMatch,
    features,
    with_mirror,
)
from monitor.imaging.pdq import MATCH_THRESHOLD, MIN_QUALITY, dihedral_bits, is_usable
from monitor.imaging.phash_index import HashIndex
from monitor.ingest.decode import DRAFT_TARGET, DecodeError, DecodeLimits, decode_image, header_size
from monitor.models import BankMatch, ImageHashes

log = logging.getLogger(__name__)

PDQ_MATCH_DISTANCE = MATCH_THRESHOLD


def query_pdqs(hashes: ImageHashes, min_quality: int = MIN_QUALITY) -> list[int]:
    """The PDQ hashes an image is looked up by: its usable ones (`usable_pdqs`), each in all 8 dihedral
    variants."""
    return [variant for value in usable_pdqs(hashes, min_quality) for variant in dihedral_bits(value)]


LOCAL_SIDE = 512


def local_image(
    data: bytes,
    hashed: Image.Image,
    limits: DecodeLimits | None = None,
    size: tuple[int, int] | None = None,
) -> Image.Image:
    """The picture the local stage should look at: the one decoded for hashing, or, when that decode was
    reduced (JPEG draft at 1/8) below the local stage's 512 px, the same bytes decoded larger. `size`, the
    file's own size when its hashing decode gave it (`Fingerprinted.size`), spares reading its header."""
    if max(hashed.size) >= LOCAL_SIDE:
        return hashed
    size = header_size(data) if size is None else size
    if size is None or max(size) <= max(hashed.size):
        return hashed
    return decode_image(data, limits, grey=True, draft=DRAFT_TARGET)


def local_views(image: Image.Image) -> list[Image.Image]:
    """What the local stage looks at: the whole image, then the picture inside its borders if any, and a
    picture across a screenshot's width without the text under it (`inset.screen_band`)."""
    return _local_views(image)[0]


def _local_views(image: Image.Image, band: bool = True) -> tuple[list[Image.Image], list[Box]]:
    """`local_views` with each view's box in the image, as fractions (for its colour copy); without the
    screen band with `band` False (`_with_band` adds it)."""
    grey = image if image.mode == "L" else image.convert("L")
    views, boxes = [grey], [(0.0, 0.0, 1.0, 1.0)]
    found = regions_of(grey)
    if found:
        views.append(grey.crop(found[0]))  # the uniform trim: bars, bands, app chrome
        boxes.append(_fraction(found[0], grey.size))
    return _with_band(views, boxes) if band else (views, boxes)


def _with_band(views: list[Image.Image], boxes: list[Box]) -> tuple[list[Image.Image], list[Box]]:
    """`views` (the whole image first) and their `boxes`, and a picture across a phone's screen without
    the text the border trim takes in with it (`inset.screen_band`) where there is one. For the local
    stage only: the layout and region stages have views of their own for posts, and a smooth picture's
    plain sky and foot of one colour would make its own rows such a band."""
    grey = views[0]
    small = small_grey(grey)
    across = screen_band(small)
    if across is None:
        return views, boxes
    box = _fraction(scaled(across, small, grey.size), grey.size)
    if box in boxes:
        return views, boxes
    return [*views, grey.crop(scaled(across, small, grey.size))], [*boxes, box]


def _fraction(box: tuple[int, int, int, int], size: tuple[int, int]) -> Box:
    return (box[0] / size[0], box[1] / size[1], box[2] / size[0], box[3] / size[1])


def layout_views(image: Image.Image, views: list[Image.Image]) -> list[Image.Image]:
    """What the layout stage looks at: the local stage's views, and the picture inside bands of one colour
    found with a tight tolerance (a smooth picture's soft colours can sit close to a band's)."""
    tight = _tight_box(views[0])
    return views if tight is None else [*views, views[0].crop(tight)]


def _tight_box(grey: Image.Image, small: np.ndarray | None = None) -> tuple[int, int, int, int] | None:
    """The picture inside bands of one colour found with TIGHT_TOLERANCE, on `small` (`inset.small_grey`
    of `grey`, made when not given); None when nothing is trimmed."""
    small = small_grey(grey) if small is None else small
    box = uniform_trim(small, TIGHT_TOLERANCE, TIGHT_RUN)
    if (box[2] - box[0], box[3] - box[1]) == (small.shape[1], small.shape[0]):
        return None
    return scaled(box, small, grey.size)


def _colour_canvas(
    grey: Image.Image, small: np.ndarray, colour: _ColourCopy
) -> tuple[int, int, int, int] | None:
    """The picture on a canvas found in colour (`inset.canvas_box` of the query's small colour copy, the
    one the contained search reads too), in the pixels of `grey` (which `small` was made from); None when
    the grey copy's outer lines are not a canvas (no colour is decoded then: most queries) or none is
    found. A pastel render on a canvas of another hue can share the canvas's grey over all but its
    subject, so in grey only the subject is found, too small a box (final21: a ball's picture on a
    green-to-orange canvas)."""
    if not on_canvas(small):
        return None
    picture = colour.small()
    if picture is None:
        return None
    box = canvas_box(small_colour(picture, small))
    return None if box is None else scaled(box, small, grey.size)


def inset_boxes(grey: Image.Image, small: np.ndarray) -> list[tuple[int, int, int, int]]:
    """The pictures the layout and region stages also look at inside a query (`inset.py`): the largest
    part free of caption text, and a picture set on a plain canvas; in `grey`'s pixels."""
    return [scaled(box, small, grey.size) for box in inner_boxes(small)]


class BankMatcher:
    """Matches images against the image clusters of a bank snapshot."""

    def __init__(
        self,
        bank: Bank,
        max_distance: int,
        *,
        pdq_distance: int = PDQ_MATCH_DISTANCE,
        min_quality: int = MIN_QUALITY,
        local: bool = True,
        min_inliers: int = MIN_INLIERS,
        weak: bool = True,
        region: bool = True,
    ) -> None:
        """`weak=False` refuses every picture of PDQ quality under `min_quality`, as before the weak
        stages existed (the benchmark's before/after comparison). `region=False` leaves out the region
        searches for smooth banked pictures (crops, covered copies, pictures on blurred pads). They are on
        by default since their checks weigh the banked picture's structure: on the tuning sets they found
        65 more copies of 768 and matched none of 4,280 negatives (before that, on a fresh set, they made
        76 false matches of 10,981 on a generic render; see README)."""
        self._region = region
        self.max_distance = max_distance
        self.pdq_distance = pdq_distance
        self.min_quality = min_quality
        self.min_inliers = min_inliers
        self._phash_clusters: list[str] = []
        self._phash = HashIndex()
        self._pdq_clusters: list[str] = []
        pdq_values: list[int] = []
        for image in bank.images:
            if image.hashes is not None:
                self._phash.add(image.hashes.phash)
                self._phash_clusters.append(image.cluster)
            pdq = image.pdq
            quality = image.pdq_quality
            if pdq is not None and is_usable(quality, min_quality):
                pdq_values.append(pdq)
                self._pdq_clusters.append(image.cluster)
            if image.hashes is not None:
                for value in image.hashes.pdq_regions:
                    pdq_values.append(value)
                    self._pdq_clusters.append(image.cluster)
        self._cluster_rows: dict[str, list[int]] | None = None
        """Each cluster's rows in the PDQ index, for the distance a local match reports."""
        self._local = LocalIndex()
        self._bank = bank
        self._banked: dict[str, list[tuple[list[Features], np.ndarray, BankImage]]] = {}
        """Each cluster's banked pictures (features with their mirror's, thumbnail): local matches are
        checked against them (`_confirmed`)."""
        self._colours: dict[str, np.ndarray | None] = {}
        """Colour thumbnails of banked smooth pictures a local match was checked against, by digest."""
        self._layouts = LayoutIndex()
        self.weak: list[tuple[BankImage, Evidence]] = []
        """Banked pictures PDQ alone would refuse, and how each is matched instead (see `evidence.py`)."""
        weak_pdqs: list[tuple[int, str]] = []
        for image in bank.images:
            # One pass, each picture decoded once and only where a cache misses or the weak stages need
            # it: the local features, the check thumbnail and the evidence used to decode it three times.
            picture = _Decoded(bank, image)
            found = _banked_features(image, picture) if local else []
            if found:  # tagged with the picture's place in `_banked[cluster]`, for `_confirmed`
                self._local.add_all(image.cluster, found, len(self._banked.get(image.cluster, ())))
                self._banked.setdefault(image.cluster, []).append(
                    (found, _banked_thumbnail(image, picture), image)
                )
            if weak and image.hashes is not None:
                self._weigh(image, picture, found, weak_pdqs)
        if local:
            self._local.prepare()  # the LSH tables now, at start-up, not in the first local query
        for value, cluster in weak_pdqs:  # after the others, in bank order, as the index always had them
            pdq_values.append(value)
            self._pdq_clusters.append(cluster)
        self._pdq = PdqIndex(pdq_values)
        self._faint: list[tuple[int, str]] = [
            (image.pdq, image.cluster)
            for image, found in self.weak
            if found.generic and image.pdq is not None and not found.pdq_usable
        ]
        """Generic banked pictures whose PDQ hash is too faint to index, even stretched (quality under the
        minimum): only a monochrome copy's check looks them up (`_monochrome_hit`)."""
        self._last_pdq: tuple[tuple[ImageHashes, int], list[Found | None]] | None = None
        self._weak = weak
        self._smooth = frozenset(image.cluster for image, evidence in self.weak if evidence.has_layout)
        self._generic = frozenset(image.cluster for image, evidence in self.weak if evidence.generic)
        """Clusters with a generic smooth picture (`evidence.is_generic`): their checks compare hues too."""
        """Clusters with a smooth banked picture: a pHash within distance is no evidence of a copy of one
        (soft look-alikes share its few low frequencies); its copies are matched by the later stages."""

    def _weigh(
        self, image: BankImage, picture: _Decoded, found: list[Features], weak_pdqs: list[tuple[int, str]]
    ) -> None:
        """Assess a banked picture (`evidence.assess`) and file it with the weak stages if PDQ alone would
        refuse it: its PDQ hash when contrast normalisation makes it usable (into `weak_pdqs`), its layouts
        and colour thumbnail when it is smooth. `found`, its local features when the local stage has
        them, gives `assess` its keypoint count (the same ORB on the same decode) instead of a second
        detection."""
        grey = picture()
        if grey is None:
            return
        evidence = assess(grey, image.pdq_quality, keypoints=len(found[0]) if found else None)
        if evidence.strength == "detailed":
            return
        self.weak.append((image, evidence))
        usable = is_usable(image.pdq_quality, self.min_quality)
        if not usable and evidence.pdq_usable and image.pdq is not None:
            weak_pdqs.append((image.pdq, image.cluster))
        if evidence.has_layout:
            colour = _banked_colour(self._bank, image)
            self._layouts.add(image.cluster, grey, colour)
            # The same thumbnail `_colour_thumbnail` would make on the first local match checked against
            # it: made now from the decode the layouts needed, rather than decoded again then.
            self._colours.setdefault(
                _colour_key(image), colour_thumbnail(colour) if colour is not None else None
            )

    @property
    def has_local(self) -> bool:
        """Whether the stages that need the picture have anything to compare with: local features or
        smooth pictures' layouts. A bank of imported hashes alone has neither; the stream then skips
        `match_local` (and its larger decode), so a low-contrast copy is only looked up when the bank
        keeps pictures or through `match_bytes`."""
        return len(self._local) > 0 or len(self._layouts) > 0

    def _best_pdq(self, hashes: ImageHashes, radius: int, smooth: bool = False) -> BankMatch | None:
        """The nearest PDQ hit within `radius` to a cluster without a smooth banked picture, or (`smooth`)
        to one with: those are checked pixel by pixel first (`match_local`)."""
        best: BankMatch | None = None
        for found in self._pdq_nearest(hashes, radius):
            if found is None or (self._pdq_clusters[found.index] in self._smooth) != smooth:
                continue
            if best is None or found.distance < best.distance:
                best = BankMatch(self._pdq_clusters[found.index], "pdq", found.distance)
        return best

    def _pdq_nearest(self, hashes: ImageHashes, radius: int) -> list[Found | None]:
        """The nearest banked PDQ hash within `radius` of each of the query's (`query_pdqs`). `match`
        and then `match_local` (for its hits on smooth pictures) search alike for one query: the last
        query's answer is kept, so the second is not searched again."""
        last = self._last_pdq
        if last is not None and last[0] == (hashes, radius):
            return last[1]
        found = self._pdq.nearest_many(query_pdqs(hashes, self.min_quality), radius)
        self._last_pdq = ((hashes, radius), found)
        return found

    def nearest(self, hashes: ImageHashes) -> BankMatch | None:
        """The closest banked image by the global hashes, whatever its distance (None for an empty bank).

        For `monitor match`, which prints the distance even when there is no match: PDQ distance when the
        bank has PDQ hashes and the image is detailed enough, pHash distance otherwise.
        """
        if len(self._pdq):
            best: BankMatch | None = None
            for value in query_pdqs(hashes, self.min_quality):
                found = self._pdq.nearest_any(value)
                if found is not None and (best is None or found.distance < best.distance):
                    best = BankMatch(self._pdq_clusters[found.index], "pdq", found.distance)
            if best is not None:
                return best
        hit = self._phash.nearest(hashes.phash, 64)
        if hit is None:
            return None
        return BankMatch(self._phash_clusters[hit.index], "phash", hit.distance)

    def match(self, hashes: ImageHashes) -> BankMatch | None:
        """The global-hash match: pHash within `max_distance`, else PDQ within its distance, or None.

        pHash comes first so that plain re-encodes report the same 64-bit distance as before PDQ; a
        flat, low-detail picture (PDQ quality under the minimum, no detailed region) is refused by both.
        """
        flat = not is_usable(hashes.pdq_quality, self.min_quality)
        if not (flat and not hashes.pdq_regions):
            hit = self._phash.nearest(hashes.phash, self.max_distance)
            if hit is not None and self._phash_clusters[hit.index] not in self._smooth:
                return BankMatch(self._phash_clusters[hit.index], "phash", hit.distance)
        return self._best_pdq(hashes, self.pdq_distance)

    def match_local(
        self, image: Image.Image, hashes: ImageHashes, data: bytes | None = None
    ) -> BankMatch | None:
        """The match for an image the global hashes did not match, by the stages that need its picture:
        a low-contrast query's PDQ after contrast normalisation, a PDQ hit on a smooth banked picture
        checked pixel by pixel, local features, smooth pictures' layouts and regions. None when none
        matches.

        `data`, the file's bytes, lets the checks of smooth matches compare colours (decoded again, small,
        only when a smooth banked picture is a candidate); without it the PDQ check is grey only and no
        region match is made.

        The distance reported is the PDQ distance to the nearest banked image of the matched cluster: it
        says how far the global hash was, and the `local` kind says what decided.
        """
        weak_query = not is_usable(hashes.pdq_quality, self.min_quality)
        views, boxes = _local_views(image, band=False)
        colour = _ColourCopy(data)
        if (
            self._weak
            and hashes.pdq is not None
            and weak_query
            and len(self._pdq)
            and contrast_quality(image) >= self.min_quality
        ):
            stretched = self._best_whole_pdq(hashes.pdq)
            if stretched is not None and self._pdq_holds(stretched, views, boxes, colour):
                return stretched
            # A near indexed hit stood above; a generic picture too faint to index is only looked up here.
            faint = self._faint_pdq(hashes.pdq)
            if faint is not None and self._monochrome_holds(faint, views, colour):
                return faint
        elif self._weak and hashes.pdq is not None and weak_query and self._generic:
            near = self._monochrome_hit(hashes.pdq)
            if near is not None and self._monochrome_holds(near, views, colour):
                return near
        if not self.has_local:
            return None
        if self._smooth:
            smooth_hit = self._best_pdq(hashes, self.pdq_distance, smooth=True)
            if smooth_hit is not None and self._pdq_holds(smooth_hit, views, boxes, colour):
                return smooth_hit
        corners: int | None = None
        """ORB keypoints of the whole query, when the local stage found them."""
        if len(self._local):
            seen_locally = _with_band(views, boxes)
            for view, box in zip(*seen_locally, strict=True):
                found_features = features(view)
                corners = len(found_features.points) if corners is None else corners
                found = self._local.match(found_features, self.min_inliers)
                if found is not None and self._confirmed(found, found_features, view, box, colour):
                    return BankMatch(found.key, "local", self._distance_to(found.key, hashes))
        if len(self._layouts):
            # Every query, not only smooth ones: captions, chrome and stickers add detail to a smooth copy.
            small = small_grey(views[0])
            tight = _tight_box(views[0], small)
            inner_found = ([] if tight is None else [tight]) + inset_boxes(views[0], small)
            soft = corners is None or corners < SOFT_KEYPOINTS
            in_colour = _colour_canvas(views[0], small, colour) if soft else None
            if in_colour is not None and in_colour not in inner_found:
                inner_found.append(in_colour)
            for inner in inner_found:
                views, boxes = [*views, views[0].crop(inner)], [*boxes, _fraction(inner, views[0].size)]
            # Stickers and a watermark pasted over a smooth picture: a view with them painted out, whose
            # checks leave them out (`inset.covered`).
            mask = covered(small)
            masks: list[np.ndarray | None] = [None] * len(views)
            if mask is not None:
                views, boxes = [*views, painted(small, mask)], [*boxes, (0.0, 0.0, 1.0, 1.0)]
                masks.append(mask)
            hit = self._layouts.match(views, boxes=boxes, colour_of=colour, covered=masks)
            if hit is not None:
                return BankMatch(hit[0], "layout", self._distance_to(hit[0], hashes))
            region = self._layouts.region_match(views, boxes, colour, masks) if self._region else None
            if self._region and region is None and soft:
                # Only soft queries (a smooth picture on a blurred pad): a detailed one is not a smooth
                # picture shown whole, and the search would cost every never-seen photo a colour decode.
                region = self._layouts.contained_match(colour.small, colour)
            if region is not None:
                return BankMatch(region[0], "region", self._distance_to(region[0], hashes))
        return None

    def _pdq_holds(
        self, hit: BankMatch, views: list[Image.Image], boxes: list[Box], colour: _ColourCopy
    ) -> bool:
        """Whether a PDQ hit stands: on a detailed banked picture, or near (under SMOOTH_PDQ_CHECKED) a
        smooth one, as found; farther from a smooth one, only where the pictures agree pixel by pixel over
        the whole picture and over its structure (`LayoutIndex.whole_fit`). A soft look-alike of a generic
        render (a logo, a figure on a gradient) came within 24-28 bits, also after contrast stretching."""
        if hit.bank_cluster not in self._smooth or hit.distance < SMOOTH_PDQ_CHECKED:
            return True
        return self._layouts.whole_fit(hit.bank_cluster, views, boxes, colour, MIN_PDQ_FIT).holds(MIN_PDQ_FIT)

    def _monochrome_holds(self, hit: BankMatch, views: list[Image.Image], colour: _ColourCopy) -> bool:
        """Whether a PDQ hit on a generic smooth banked picture, for a monochrome query too washed out for
        its quality to pass once stretched, stands: near (under SMOOTH_PDQ_CHECKED), as a stretched hit
        would, and its grey agreeing nearly exactly over the whole picture and its shape
        (`LayoutIndex.monochrome_fit`), since its hues, which every other check of a generic picture
        compares, are gone. A look-alike would need the hash's bits and the shape in the same place."""
        if hit.bank_cluster not in self._generic or hit.distance >= SMOOTH_PDQ_CHECKED:
            return False
        fit = self._layouts.monochrome_fit(hit.bank_cluster, views[:1], colour)
        return fit.share >= MIN_MONOCHROME_FIT and fit.subject >= MIN_MONOCHROME_SUBJECT

    def _confirmed(
        self, found: LocalMatch, query: Features, view: Image.Image, box: Box, colour_of: _ColourCopy
    ) -> bool:
        """Whether a local match holds when looked at again. A match to a detailed picture stands as the
        local stage made it. A smooth banked picture's outline (a soft figure) is shared by countless
        look-alikes that the local stage pairs as well as its copies, so a match to one must also hold
        pixel by pixel (`evidence.check_local`): the query, mapped by the pairs' affine fit, must lie
        inside the banked picture or hold it (a crop, a screenshot) and, its tones fitted, agree with it
        over most of their overlap (a look-alike's background does not), in grey and, when the query's
        colour copy is at hand and not monochrome, in every colour channel (MIN_COLOUR_FIT).

        Any of the cluster's pictures holding is enough; the one the local stage matched is checked first,
        as it holds most often (a fifth less checking on the realistic stream's local matches)."""
        cluster = found.key
        if cluster not in self._smooth:
            return True
        seen = thumbnail(view)
        colour = colour_of()
        seen_colour = colour_thumbnail(crop_fraction(colour, box)) if colour is not None else None
        pictures = self._banked.get(cluster, [])
        derived = SeenOnce(seen, seen_colour)
        first = pictures[found.tag : found.tag + 1]
        for banked, small, image in [*first, *pictures[: found.tag], *pictures[found.tag + 1 :]]:
            bank_colour = self._colour_thumbnail(image) if seen_colour is not None else None
            generic = cluster in self._generic
            check = check_local(query, seen, banked, small, seen_colour, bank_colour, generic, derived)
            if (
                check is not None
                and check.inside >= MIN_INSIDE
                and check.fits[1] >= MIN_TONE_FIT
                and check.colour >= MIN_COLOUR_FIT
                and check.subject >= evidence.MIN_SUBJECT_FIT
            ):
                return True
        return False

    def _colour_thumbnail(self, image: BankImage) -> np.ndarray | None:
        key = _colour_key(image)
        if key not in self._colours:
            picture = _banked_colour(self._bank, image)
            self._colours[key] = colour_thumbnail(picture) if picture is not None else None
        return self._colours[key]

    def _monochrome_hit(self, value: int) -> BankMatch | None:
        """The nearest PDQ hit a monochrome copy's check weighs (`_monochrome_holds`): in the index, or among
        the generic banked pictures too faint to index (`_faint_pdq`)."""
        hits = [hit for hit in (self._best_whole_pdq(value), self._faint_pdq(value)) if hit is not None]
        return min(hits, key=lambda hit: hit.distance, default=None)

    def _faint_pdq(self, value: int) -> BankMatch | None:
        """The nearest generic banked picture whose PDQ hash is too faint to index (quality under the
        minimum even stretched: a pastel render whose hues differ more than its brightness), within
        SMOOTH_PDQ_CHECKED bits in any turn; None when none is. Its grey copies have the same faint hash
        (0-16 bits off on final24's) but no hues for the layout and region stages' colour checks, so only
        the monochrome check, which needs the whole grey to agree, looks such a hit up."""
        best: BankMatch | None = None
        turns = dihedral_bits(value)
        for stored, cluster in self._faint:
            distance = min((stored ^ turned).bit_count() for turned in turns)
            if distance < SMOOTH_PDQ_CHECKED and (best is None or distance < best.distance):
                best = BankMatch(cluster, "pdq", distance)
        return best

    def _best_whole_pdq(self, value: int) -> BankMatch | None:
        best: BankMatch | None = None
        for found in self._pdq.nearest_many(dihedral_bits(value), self.pdq_distance):
            if found is not None and (best is None or found.distance < best.distance):
                best = BankMatch(self._pdq_clusters[found.index], "pdq", found.distance)
        return best

    def explain_bytes(
        self, data: bytes, hashes: ImageHashes, limits: DecodeLimits | None = None
    ) -> str | None:
        """Why a file was not compared by every stage, for `monitor match`'s `not_compared`; None when it
        was. Decodes only files whose PDQ quality is under the minimum."""
        if is_usable(hashes.pdq_quality, self.min_quality):
            return None
        printed = fingerprint(data, limits)
        return self.explain(local_image(data, printed.image, limits, printed.size), hashes)

    def explain(self, image: Image.Image, hashes: ImageHashes) -> str | None:
        """Why an image was not compared by every stage; None when it was."""
        if is_usable(hashes.pdq_quality, self.min_quality):
            return None
        evidence = assess(image, hashes.pdq_quality)
        if evidence.strength == "low-contrast":
            return None
        if evidence.strength == "smooth":
            if len(self._layouts):
                return (
                    f"smooth, low-detail picture (PDQ quality {evidence.quality}): its hashes were not "
                    "looked up, only its layout was compared with the bank's smooth pictures"
                )
            return (
                f"smooth, low-detail picture (PDQ quality {evidence.quality}): its hashes were not looked "
                "up and the bank holds no smooth pictures to compare its layout with"
            )
        return (
            f"plain picture (PDQ quality {evidence.quality}, almost no structure): not compared, it would "
            "look like any other plain picture"
        )

    def match_bytes(
        self, data: bytes, limits: DecodeLimits | None = None
    ) -> tuple[ImageHashes, BankMatch | None]:
        """A file's hashes and its match by both stages, decoded as the pipeline decodes (JPEG draft at
        1/8 for the hashes, larger for the local stage only when it runs). Raises DecodeError."""
        printed = fingerprint(data, limits)
        found = self.match(printed.hashes)
        if found is None:
            found = self.match_local(
                local_image(data, printed.image, limits, printed.size), printed.hashes, data
            )
        return printed.hashes, found

    def match_image(self, image: Image.Image, hashes: ImageHashes) -> BankMatch | None:
        """Both stages: the global hashes, then local features if they found nothing."""
        return self.match(hashes) or self.match_local(image, hashes)

    def _distance_to(self, cluster: str, hashes: ImageHashes) -> int:
        if self._cluster_rows is None:  # built on the first local match, not for banks that have none
            self._cluster_rows = {}
            for index, owner in enumerate(self._pdq_clusters):
                self._cluster_rows.setdefault(owner, []).append(index)
        best = 256
        queries = query_pdqs(hashes, 0)
        for index in self._cluster_rows.get(cluster, ()):
            stored = self._pdq.value(index)
            best = min([best, *((stored ^ q).bit_count() for q in queries)])
        return best


class _ColourCopy:
    """A query's colour copy, decoded from its bytes the first time a check asks (most queries never
    meet a smooth candidate); None without bytes or when they do not decode."""

    def __init__(self, data: bytes | None) -> None:
        self._data = data
        self._image: Image.Image | None = None
        self._tried = False
        self._small: Image.Image | None = None
        self._small_tried = False

    def small(self) -> Image.Image | None:
        """A smaller colour copy (JPEG draft at SMALL_COLOUR_DRAFT), for a search every query pays for."""
        if self._tried:
            return self._image
        if not self._small_tried:
            self._small_tried = True
            if self._data is not None:
                try:
                    self._small = decode_image(self._data, grey=False, draft=SMALL_COLOUR_DRAFT)
                except DecodeError:
                    self._small = None
        return self._small

    def __call__(self) -> Image.Image | None:
        if not self._tried:
            self._tried = True
            if self._data is not None:
                try:
                    self._image = decode_image(self._data, grey=False, draft=COLOUR_DRAFT)
                except DecodeError:
                    self._image = None
        return self._image


COLOUR_DRAFT = 256
"""JPEG draft target of the colour copy: the checks compare 128 px thumbnails."""
SMALL_COLOUR_DRAFT = 64
"""JPEG draft target of the small colour copy `LayoutIndex.contained_match` searches (at 64 px)."""


def _banked_colour(bank: Bank, image: BankImage) -> Image.Image | None:
    """The colour copy of a banked picture (smooth ones: their checks compare colours)."""
    if bank.directory is None or not image.file:
        return None
    try:
        return decode_image((bank.directory / image.file).read_bytes(), grey=False, draft=COLOUR_DRAFT)
    except (OSError, DecodeError):
        return None


_FEATURE_CACHE: LRUCache[str, list[Features]] = LRUCache(maxsize=10_000)
_THUMBNAIL_CACHE: LRUCache[str, np.ndarray] = LRUCache(maxsize=10_000)


def _colour_key(image: BankImage) -> str:
    return image.sha256 or image.file


class _Decoded:
    """A banked picture (`Bank.picture`), decoded the first time it is asked for and kept for the rest of
    the start-up step that holds it; None when the bank has no readable copy."""

    def __init__(self, bank: Bank, image: BankImage) -> None:
        self._bank = bank
        self._image = image
        self._picture: Image.Image | None = None
        self._done = False

    def __call__(self) -> Image.Image | None:
        if not self._done:
            self._done = True
            self._picture = self._bank.picture(self._image)
        return self._picture


def _banked_thumbnail(image: BankImage, decoded: _Decoded) -> np.ndarray:
    """The small grey copy local matches are checked on (`evidence.check_local`), cached like features."""
    cached = _THUMBNAIL_CACHE.get(image.sha256) if image.sha256 else None
    if cached is None:
        picture = decoded()
        cached = thumbnail(picture) if picture is not None else np.zeros((8, 8), np.float32)
        if image.sha256:
            _THUMBNAIL_CACHE[image.sha256] = cached
    return cached


def _banked_features(image: BankImage, decoded: _Decoded) -> list[Features]:
    """Features of a banked picture and its mirror, kept across bank reloads (keyed by file digest), so
    a reload decodes only the pictures added since."""
    cached = _FEATURE_CACHE.get(image.sha256) if image.sha256 else None
    if cached is None:
        picture = decoded()
        if picture is None:
            return []
        cached = list(with_mirror(picture))
        if image.sha256:
            _FEATURE_CACHE[image.sha256] = cached
    return cached
