"""Find the picture inside what was added around it: letterbox bars, frames, caption bands, app chrome.

A viral copy often shows the original inside something: black bars, a coloured frame, white meme bands
with a caption, the header and buttons of a post, a phone's status bar. A global hash of the whole copy
then describes mostly the additions. Each side of the image whose outer line is (nearly) one colour is
walked inward over lines that are mostly that colour (text on a band covers well under half of a line);
the picture starts where lines stop being mostly background for a stretch. Sides whose outer line is
busy are left alone, so a plain photo comes back whole.

A second, gradient-based trim catches backgrounds that are not one colour but flat: the blurred, enlarged
copy of itself that vertical-video apps put around a picture.
"""

from __future__ import annotations

import numpy as np

Box = tuple[int, int, int, int]
"""left, top, right, bottom (exclusive), in pixels."""

_TOLERANCE = 28
"""Grey-level difference within which a pixel counts as the band's colour (JPEG ringing, noise)."""
_UNIFORM_EDGE = 0.9
"""Share of an outer line that must be one colour for its side to count as a bar or band."""
_CONTENT_LINE = 0.5
"""A line is picture rather than band when more than this share of it differs from the band colour."""
_MIN_RUN = 0.04
"""The picture starts with a run of content lines this long (share of the side), not a line of text."""
_MIN_KEEP = 0.2
"""A trim that leaves less than this share of a side is not a picture found but noise: it is refused."""


def _side_trim(lines: np.ndarray, tolerance: int = _TOLERANCE, min_run: float = _MIN_RUN) -> int:
    """How many leading lines of `lines` (lines x pixels) are band: 0 if the outer line is busy."""
    if lines.shape[0] < 8 or lines.shape[1] < 8:
        return 0
    outer = lines[0]
    colour = float(np.median(outer))
    if np.mean(np.abs(outer - colour) <= tolerance) < _UNIFORM_EDGE:
        return 0
    differs = np.mean(np.abs(lines - colour) > tolerance, axis=1) > _CONTENT_LINE
    run = max(2, round(lines.shape[0] * min_run))
    # The first index where `run` consecutive lines are content.
    windows = np.convolve(differs.astype(np.int32), np.ones(run, dtype=np.int32), mode="valid")
    starts = np.flatnonzero(windows == run)
    return int(starts[0]) if starts.size else 0


def _trim_pass(grey: np.ndarray, box: Box, vertical: bool, tolerance: int, min_run: float) -> Box:
    left, top, right, bottom = box
    region = grey[top:bottom, left:right]
    if vertical:
        cut_top = _side_trim(region, tolerance, min_run)
        cut_bottom = _side_trim(region[::-1], tolerance, min_run)
        top, bottom = top + cut_top, bottom - cut_bottom
    else:
        cut_left = _side_trim(region.T, tolerance, min_run)
        cut_right = _side_trim(region.T[::-1], tolerance, min_run)
        left, right = left + cut_left, right - cut_right
    return left, top, right, bottom


TIGHT_TOLERANCE = 6
"""A tolerance for smooth pictures, whose soft colours can sit within _TOLERANCE of a band's: bands are
one colour to a few levels (JPEG noise), so the picture starts where most of a line leaves that. Text
in a band then counts as content too, so the picture must also be a longer run of lines (TIGHT_RUN)."""
TIGHT_RUN = 0.12


def uniform_trim(grey: np.ndarray, tolerance: int = _TOLERANCE, min_run: float = _MIN_RUN) -> Box:
    """The box left after trimming bars, frames and text bands of one colour from every side."""
    height, width = grey.shape
    box: Box = (0, 0, width, height)
    unchanged = 0
    for vertical in (True, False, True, False):
        trimmed = _trim_pass(grey, box, vertical, tolerance, min_run)
        if not _sane(trimmed, width, height):
            return walked_in(box, width, height)
        unchanged = unchanged + 1 if trimmed == box else 0
        box = trimmed
        if unchanged == 2:
            break  # both directions left this box alone: the passes that remain would repeat them
    return box


def walked_in(box: Box, width: int, height: int) -> Box:
    """What `uniform_trim` gives when a pass leaves no picture: the box before it (the whole image when
    that was the first pass). A later pass that leaves none walked into the picture the earlier ones
    found: a pastel picture's sky and hills can all lie within the tolerance of its top or bottom line in
    grey (final22: a phone screenshot of pastel hills, found across the screen by the first pass, trimmed
    to nothing by the third, so no picture was found inside the screen at all)."""
    del width, height
    return box


def row_trim(grey: np.ndarray, tolerance: int = _TOLERANCE, min_run: float = _MIN_RUN) -> tuple[int, int]:
    """The first and last (exclusive) rows left after trimming bands of one colour from the top and the
    bottom alone (see `uniform_trim`)."""
    _, top, _, bottom = _trim_pass(grey, (0, 0, grey.shape[1], grey.shape[0]), True, tolerance, min_run)
    return top, bottom


def flat_trim(grey: np.ndarray, threshold: float = 6.0, share: float = 0.08) -> Box:
    """The box left after trimming flat (blurred or plain) bands: lines where few pixels have an edge."""
    height, width = grey.shape
    if height < 16 or width < 16:
        return (0, 0, width, height)
    gy = np.abs(np.diff(grey, axis=0))[:, :-1]
    gx = np.abs(np.diff(grey, axis=1))[:-1, :]
    edges = np.maximum(gx, gy) > threshold
    rows = np.mean(edges, axis=1) > share
    cols = np.mean(edges, axis=0) > share
    top, bottom = _span(rows)
    left, right = _span(cols)
    box: Box = (left, top, right + 1, bottom + 1)
    return box if _sane(box, width, height) else (0, 0, width, height)


def _span(active: np.ndarray) -> tuple[int, int]:
    """First and last index of the longest run of active lines (ignoring gaps of a few lines)."""
    n = active.shape[0]
    gap = max(1, n // 50)
    best, best_len = (0, n - 1), 0
    start = None
    last_active = -(10**9)
    for i, on in enumerate(active.tolist()):
        if on:
            if start is None or i - last_active > gap:
                start = i
            last_active = i
            if i - start + 1 > best_len:
                best, best_len = (start, i), i - start + 1
    return best


def _sane(box: Box, width: int, height: int) -> bool:
    left, top, right, bottom = box
    return right - left >= max(8, width * _MIN_KEEP) and bottom - top >= max(8, height * _MIN_KEEP)


def candidate_boxes(grey: np.ndarray) -> list[Box]:
    """Distinct regions worth hashing: the whole image, then the picture found inside it, if any.

    Boxes that differ from one already listed by less than 2 % of a side are dropped: they would hash
    alike and only cost time.
    """
    height, width = grey.shape
    boxes: list[Box] = [(0, 0, width, height)]
    for box in (uniform_trim(grey), flat_trim(grey)):
        if all(not _close(box, other, width, height) for other in boxes):
            boxes.append(box)
    return boxes


def _close(a: Box, b: Box, width: int, height: int) -> bool:
    limit = (width * 0.02, height * 0.02, width * 0.02, height * 0.02)
    return all(abs(x - y) <= lim for x, y, lim in zip(a, b, limit, strict=True))
