"""Where a smooth picture sits inside a copy that added text over it or a canvas around it.

The layout and region stages (`evidence.LayoutIndex`) compare a query's views with banked smooth pictures.
Three kinds of copy defeat the views the border trims give (`borders.py`):

- Text over the picture or around it: Impact-style captions burnt into the top and bottom, a meme's
  caption bands inside a post's chrome. Text is sharp, dense detail that a smooth picture never has; it
  dominates a 16x16 layout and spoils the pixel checks. `clear_boxes` finds the largest rectangle of the
  query free of such detail (cells of dense Laplacian response): the picture between the captions, the
  picture inside the chrome. It is a crop of the banked picture, which the region search places.
- A picture shrunk onto a larger plain or graded canvas: a line through the picture is mostly canvas, so
  the border trims (which need a line to be mostly content) never start. `canvas_box` models the canvas
  from the image's outer lines (a colour per row, linear from top to bottom) and returns the box of what
  differs from it; in grey, and for a soft query whose outer lines are a canvas also in colour (a pastel
  picture on a canvas of another hue can share its grey, so only its subject differed in grey).

- A picture in a post's or app's screenshot: on a plain card, with lines of text and buttons above and
  below it, which `canvas_box` takes in with the picture. `post_box` takes the tallest band of rows that
  differ from the card across most of their width: the picture, not the text. A meme in a post has its
  caption bands in that picture: the trims and the clear rectangle are looked for again inside it
  (`_inside_post`).

- Things pasted over the picture: stickers, a watermark's logo box and its handle. In grey a yellow
  sticker on a pastel ground is little but its outline and face, yet that sharp detail, and a dark logo
  box in a corner, dominate the layout of a picture whose only structure is one soft subject (final21: a
  ball's copies with stickers or a watermark correlated 0.54-0.72 with it). `covered` marks what a
  mostly smooth query holds that is sharp, grown a little, with what such detail encloses (a sticker's
  face); `painted` fills it in from around it (`cv2.inpaint`): a view whose layout is the picture's, and
  whose checks leave the covered pixels out, as they leave text out.

All are cheap (a 256 px grey copy) and return None when they find nothing worth a view, so a photo or
a smooth picture shown whole costs a few numpy passes and no search.
"""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

from monitor.imaging.borders import TIGHT_RUN, TIGHT_TOLERANCE, row_trim, uniform_trim

Box = tuple[int, int, int, int]
"""left, top, right, bottom (exclusive), in pixels."""

SIDE = 256
"""Both searches read a grey copy this large on its longest side."""
SHARP = 50.0
"""Least |Laplacian| (grey levels, 3x3 cross at SIDE) of a sharp pixel. Text strokes and outlines reach
100-250; the blurred edges of the smooth renders on the development set stay under it (a few hill
boundaries reach 50-60 in single pixels)."""
CELL = 8
"""Side (pixels at SIDE) of the cells whose density of sharp pixels tells text from picture."""
BUSY = 0.1
"""Least share of sharp pixels that makes a cell text: caption cells have 20-100 %, a smooth render's
cells under 8 % (one blurred edge through a cell)."""
TEXTURED = 3.0
MAX_TEXTURED = 0.15
"""Most cells with a mean |Laplacian| of TEXTURED or more (and not text) a query may have for inner views
to be looked for (`inner_boxes`): smooth renders under captions, in posts or on canvases have 2-14 %, the
photos of the development set and 25 of mate-backgrounds' 16-98 % but for a clock face, a cell scan and
a photo of wings on a blurred ground (6-9 %)."""
TEXT_FRINGE = 1
"""Cells around a busy one (text) whose texture `_cells` does not count: small text decoded at a draft
scale is busy only along its lines, and its anti-aliased ends and the caption's edges leave the cells
beside them textured. final25's memes in posts of smooth renders had 15-21 % textured cells, 7-11 % away
from text, and were refused their inner views. Only for a query with at most MAX_TEXT_TEXTURED textured
cells: a photo's sharp detail is busy too, and without its fringe the scikit-image photos' texture fell
from 28-72 % to 3-21 % (immunohistochemistry 38 -> 3 %, coins 52 -> 8 %)."""
MAX_TEXT_TEXTURED = 0.25
"""See TEXT_FRINGE: the scikit-image photos have 28 % textured cells or more (rocket 28 %, camera 35 %)
but for a clock face and a cell scan (7 %, smooth already)."""
MIN_CLEAR = 0.25
"""Least share of the image the clear rectangle must cover, and MIN_CLEAR_SIDE of each side: less is a
piece of sky between a photo's details, no evidence of a copy (a landscape picture in a post's
screenshot, under a meme's caption bands, keeps 30 %)."""
MIN_CLEAR_SIDE = 0.4
MAX_CLEAR = 0.9
"""A clear rectangle covering more than this share of the image is the image itself: no new view."""
MIN_TEXT_CELLS = 8
"""Least busy cells in one touching group for them to be text (`text_cells`): a line of caption text
makes dozens, a blurred figure's sharper outline groups of 1-4."""
LARGER_CLEAR = 1.3
"""How much larger the rectangle free of text groups must be than the one free of every busy cell to be
a view of its own."""
MIN_BUSY = 0.03
"""Least share of busy cells for the image to be worth a clear view: a smooth picture has none."""
CANVAS_LEVELS = 10.0
"""Grey levels within which a pixel is the canvas (JPEG noise on a plain colour, banding of a gradient)."""
CANVAS_BORDER = 0.85
"""Least share of the outer lines' pixels the canvas model must explain: the picture may touch a side."""
CANVAS_OUTSIDE = 0.97
"""Least share of the pixels outside the box that must be canvas."""
CANVAS_LINE = 0.02
"""A row or column is part of the picture when more than this share of it differs from the canvas."""
CANVAS_INSET = 2
"""Pixels (at SIDE) the box is drawn in by on each side."""
MAX_CANVAS = 0.8
"""A box covering more than this share of the image is left to the border trims."""
MIN_CANVAS_SIDE = 0.2
"""Least share of each side the box must keep: a smaller thing on a canvas is a logo or a word."""


def small_grey(grey: Image.Image) -> np.ndarray:
    """A grey copy at SIDE on its longest side (area-averaged; never enlarged), as floats: what both
    searches, and the matcher's tight border trim, read."""
    array = np.asarray(grey if grey.mode == "L" else grey.convert("L"))
    scale = min(1.0, SIDE / max(array.shape))
    if scale < 1.0:
        size = (max(1, round(array.shape[1] * scale)), max(1, round(array.shape[0] * scale)))
        array = cv2.resize(array, size, interpolation=cv2.INTER_AREA)
    return array.astype(np.float32)


def small_colour(colour: Image.Image, small: np.ndarray) -> np.ndarray:
    """A colour copy resized to the shape of `small` (a `small_grey` of the same image), as floats
    (height x width x 3): `canvas_box` in colour, with boxes in `small`'s pixels."""
    array = np.asarray(colour if colour.mode == "RGB" else colour.convert("RGB"))
    size = (small.shape[1], small.shape[0])
    if (array.shape[1], array.shape[0]) != size:
        array = cv2.resize(array, size, interpolation=cv2.INTER_AREA)
    return array.astype(np.float32)


def on_canvas(small: np.ndarray) -> bool:
    """Whether the outer lines of a grey copy (`small_grey`) are one canvas (plain or vertically graded):
    the only queries whose canvas is worth modelling again in colour (`canvas_box`)."""
    return _off_canvas(small) is not None


def scaled(box: Box, small: np.ndarray, size: tuple[int, int]) -> Box:
    """A box in `small`'s pixels in those of the image of `size` it was made from."""
    fx, fy = size[0] / small.shape[1], size[1] / small.shape[0]
    left, top, right, bottom = box
    return (
        round(left * fx),
        round(top * fy),
        min(size[0], round(right * fx)),
        min(size[1], round(bottom * fy)),
    )


def busy_cells(grey: np.ndarray) -> np.ndarray:
    """Which CELL x CELL cells of a grey array (at SIDE) hold text-like detail: over BUSY of their pixels
    with |Laplacian| over SHARP."""
    return _cells(grey)[0]


def _laplacian(grey: np.ndarray) -> np.ndarray:
    """|Laplacian| (3x3 cross) of a `small_grey` copy, which `_cells` and `covered` read."""
    return np.abs(cv2.Laplacian(grey, cv2.CV_32F, ksize=1))


def _cells(grey: np.ndarray, laplacian: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """`busy_cells`, and the share of cells that are neither busy nor smooth (mean |Laplacian| of
    TEXTURED or more): a photo's texture, which a smooth picture with text on it lacks. Where that share
    is over MAX_TEXTURED but not over MAX_TEXT_TEXTURED, cells within TEXT_FRINGE cells of a busy one are
    not counted. `laplacian`: `_laplacian(grey)`, when at hand."""
    busy, textured = _cell_texture(_laplacian(grey) if laplacian is None else laplacian)
    if not textured.size:
        return busy, 1.0
    share = float(textured.mean())
    if TEXT_FRINGE and MAX_TEXTURED < share <= MAX_TEXT_TEXTURED and busy.any():
        side = 2 * TEXT_FRINGE + 1
        share = float(
            (textured & (cv2.dilate(busy.astype(np.uint8), np.ones((side, side), np.uint8)) == 0)).mean()
        )
    return busy, share


def _cell_texture(laplacian: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per CELL: busy (text), and textured (mean |Laplacian| of TEXTURED or more, not busy)."""
    rows, columns = laplacian.shape[0] // CELL, laplacian.shape[1] // CELL
    cut = laplacian[: rows * CELL, : columns * CELL].reshape(rows, CELL, columns, CELL)
    busy: np.ndarray = (cut > SHARP).mean(axis=(1, 3)) > BUSY
    textured: np.ndarray = (cut.mean(axis=(1, 3)) >= TEXTURED) & ~busy
    return busy, textured


def inner_boxes(small: np.ndarray) -> list[Box]:
    """The views worth adding for a query (its `small_grey` copy): `clear_boxes` and `canvas_box`, in
    `small`'s pixels. No clear box for a query with texture (over MAX_TEXTURED of its cells): a photo,
    whose flat parts are sky or blur, not a smooth picture under text. (A canvas needs no such test: its
    outer lines rule a photo out at once; a picture shrunk onto one has its gradients steepened, and
    pastel hills at 35-70 % reached 18 % textured cells.) Then each of those less the rows of one colour
    above and below the picture in it (`_rows_trimmed`), and the picture inside a post's picture
    (`_inside_post`); where none was found, the whole image less such rows: a phone's dark screen above a
    picture can be larger than the picture, which no text-free rectangle then is."""
    busy, textured = _cells(small)
    canvas = canvas_box(small)
    clear = clear_boxes(small, busy) if busy.size and textured <= MAX_TEXTURED else []
    post = post_box(small)
    found = [*clear, *([] if canvas is None else [canvas])]
    found = [*found, *([] if post is None or post in found else [post])]
    # The whole image less such rows only where nothing else was found: a phone's dark screen larger than
    # the picture it shows leaves no text-free rectangle (elsewhere the views found hold the picture).
    whole = [] if found else [(0, 0, small.shape[1], small.shape[0])]
    inside = [_rows_trimmed(small, outer) for outer in [*whole, *found]]
    inside += [] if post is None else _inside_post(small, post)
    for box in inside:
        if box is not None and box not in found:
            found.append(box)
    return found


def _rows_trimmed(small: np.ndarray, outer: Box) -> Box | None:
    """`outer` less the rows of one colour above and below the picture in it (`borders.row_trim`, with
    TIGHT_TOLERANCE), or None when none are or too little is left: a phone's screen above a picture and
    between it and the text under it, which the text-free rectangle takes in. Rows only: a smooth
    picture graded from side to side has columns of one colour, which a trim of every side eats into
    (a ball on a horizontal pastel gradient was cut down to the ball)."""
    left, top, right, bottom = outer
    inner = small[top:bottom, left:right]
    cut_top, cut_bottom = row_trim(inner, TIGHT_TOLERANCE, TIGHT_RUN)
    height = inner.shape[0]
    if (cut_top, cut_bottom) == (0, height) or cut_bottom - cut_top < MIN_CANVAS_SIDE * height:
        return None
    return (left, top + cut_top, right, top + cut_bottom)


def _inside_post(small: np.ndarray, post: Box) -> list[Box | None]:
    """The picture inside a post's picture (`post_box`), free of what a meme put around or over it: the
    band a tight border trim leaves (a caption band of one colour, text and all; see
    `borders.TIGHT_TOLERANCE`) and the largest part free of text (`clear_boxes`, for a caption with no band
    of its own), each looked for in the post's picture alone. On the whole image the card's margins and
    text lines take part in both: the trims stop at the card, and a clear rectangle takes in the card's
    margins beside the picture and the foot of its caption band (final19: five of 24 smooth renders'
    memes in posts missed so)."""
    left, top, right, bottom = post
    inner = small[top:bottom, left:right]
    found: list[Box] = []
    trimmed = uniform_trim(inner, TIGHT_TOLERANCE, TIGHT_RUN)
    if trimmed != (0, 0, inner.shape[1], inner.shape[0]):
        found.append(trimmed)
    busy, textured = _cells(inner)
    if busy.size and textured <= MAX_TEXTURED:
        found.extend(box for box in clear_boxes(inner, busy) if box not in found)
    return [(left + b[0], top + b[1], left + b[2], top + b[3]) for b in found]


def text_cells(busy: np.ndarray) -> np.ndarray:
    """The busy cells that belong to a group of at least MIN_TEXT_CELLS touching ones: lines of text,
    chrome and the edge of a picture pasted on it, not the few cells a sharp-edged subject's outline
    makes here and there."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(busy.astype(np.uint8), connectivity=8)
    large = np.flatnonzero(stats[:, cv2.CC_STAT_AREA] >= MIN_TEXT_CELLS)
    kept: np.ndarray = np.isin(labels, large[large > 0]) if count > 1 else np.zeros(busy.shape, dtype=bool)
    return kept


def largest_clear(busy: np.ndarray) -> tuple[int, int, int, int]:
    """The largest rectangle of cells that are not busy (left, top, right, bottom in cells, exclusive).
    For each bottom row and height, the columns clear that high form runs; the longest run times the
    height is the largest rectangle there: all at once in numpy (rows x rows x columns booleans)."""
    rows = busy.shape[0]
    clear = ~busy
    counted = np.cumsum(clear, axis=0)
    heights = counted - np.maximum.accumulate(np.where(busy, counted, 0), axis=0)
    tall = np.arange(1, rows + 1)
    enough = heights[:, None, :] >= tall[None, :, None]
    counted = np.cumsum(enough, axis=-1)
    runs = counted - np.maximum.accumulate(np.where(enough, 0, counted), axis=-1)
    areas = runs * tall[None, :, None]
    row, height, column = np.unravel_index(int(np.argmax(areas)), areas.shape)
    if areas[row, height, column] == 0:
        return (0, 0, 0, 0)
    run = int(runs[row, height, column])
    return (int(column) + 1 - run, int(row) - int(height), int(column) + 1, int(row) + 1)


def clear_boxes(small: np.ndarray, busy: np.ndarray | None = None) -> list[Box]:
    """The largest rectangles of a grey copy (`small_grey`) free of text-like detail (see the module doc),
    in its pixels: free of every busy cell, and free of the groups of them (`text_cells`) where that is
    much larger (a blurred figure's sharper outline splits the first). None when the copy has (almost) no
    such detail or a rectangle is too small or nearly the whole image. `busy`: its `busy_cells`, when
    known."""
    busy = busy_cells(small) if busy is None else busy
    if busy.size == 0 or busy.mean() < MIN_BUSY:
        return []
    if 1.0 - float(busy.mean()) < MIN_CLEAR:
        return []  # not enough clear cells anywhere (a photo's detail): no rectangle to look for
    # No margin is kept around the text: the checks leave text and its ringing out (`evidence.text_mask`).
    found: list[Box] = []
    rows, columns = busy.shape
    grouped = text_cells(busy)
    # Free of the groups is the same rectangle when every busy cell is in one: it is looked for once.
    for cells in (busy,) if np.array_equal(grouped, busy) else (busy, grouped):
        left, top, right, bottom = largest_clear(cells)
        area = (right - left) * (bottom - top)
        share = area / (rows * columns)
        if share < MIN_CLEAR or share > MAX_CLEAR:
            continue
        if (right - left) < MIN_CLEAR_SIDE * columns or (bottom - top) < MIN_CLEAR_SIDE * rows:
            continue
        if (
            found
            and area < LARGER_CLEAR * (found[0][2] - found[0][0]) * (found[0][3] - found[0][1]) / CELL**2
        ):
            continue
        found.append((left * CELL, top * CELL, right * CELL, bottom * CELL))
    return found


def _off_canvas(array: np.ndarray) -> np.ndarray | None:
    """Where a grey copy (`small_grey`) differs from the canvas its outer lines make (a colour per row,
    linear from top to bottom), by more than CANVAS_LEVELS; None when its outer lines are not one canvas.
    A colour copy (`small_colour`) differs where any channel does, and is a canvas where every channel
    is: a pastel picture on a canvas of another hue can share the canvas's grey over most of it."""
    if array.ndim == 3:
        channels = [_off_canvas(np.ascontiguousarray(array[..., c])) for c in range(array.shape[2])]
        if any(part is None for part in channels):
            return None
        differs: np.ndarray = np.logical_or.reduce([part for part in channels if part is not None])
        return differs
    height, width = array.shape
    if height < 16 or width < 16:
        return None
    top_row, bottom_row = array[0], array[-1]
    if (
        max(
            float(np.mean(np.abs(top_row - np.median(top_row)) <= CANVAS_LEVELS)),
            float(np.mean(np.abs(bottom_row - np.median(bottom_row)) <= CANVAS_LEVELS)),
        )
        < CANVAS_BORDER
    ):
        return None  # neither the top nor the bottom line is one colour: no canvas (most photos)
    ys = np.arange(height, dtype=np.float64)
    # The outer lines: both columns (a sample per row), and the top and bottom rows.
    samples_y = np.concatenate([ys, ys, np.zeros(width), np.full(width, height - 1.0)])
    samples = np.concatenate([array[:, 0], array[:, -1], top_row, bottom_row]).astype(np.float64)
    kept = np.ones(samples.shape, dtype=bool)
    slope, intercept = 0.0, 0.0
    for _ in range(3):  # refit on the samples the last fit explains: the picture may touch a side
        if kept.sum() < 8:
            return None
        x, y = samples_y[kept], samples[kept]
        spread = float(np.var(x))
        slope = float(np.mean((x - x.mean()) * (y - y.mean())) / spread) if spread > 0 else 0.0
        intercept = float(y.mean()) - slope * float(x.mean())
        kept = np.abs(intercept + slope * samples_y - samples) <= CANVAS_LEVELS
    if kept.mean() < CANVAS_BORDER:
        return None
    canvas = (intercept + slope * ys)[:, None]
    return np.abs(array - canvas) > CANVAS_LEVELS


def canvas_box(array: np.ndarray) -> Box | None:
    """The box of a picture set on a plain or vertically graded canvas (see the module doc), in the
    pixels of a grey copy (`small_grey`) or a colour one (`small_colour`: where the picture shares the
    canvas's grey); None when its outer lines are not one canvas or what differs from it is most of the
    image."""
    differs = _off_canvas(array)
    if differs is None:
        return None
    height, width = array.shape[:2]
    rows = np.flatnonzero(differs.mean(axis=1) > CANVAS_LINE)
    columns = np.flatnonzero(differs.mean(axis=0) > CANVAS_LINE)
    if rows.size == 0 or columns.size == 0:
        return None
    left, top, right, bottom = int(columns[0]), int(rows[0]), int(columns[-1]) + 1, int(rows[-1]) + 1
    inside = np.zeros(differs.shape, dtype=bool)
    inside[top:bottom, left:right] = True
    outside = ~inside
    if outside.sum() == 0 or float(differs[outside].mean()) > 1 - CANVAS_OUTSIDE:
        return None
    if (right - left) * (bottom - top) > MAX_CANVAS * width * height:
        return None
    if right - left < MIN_CANVAS_SIDE * width or bottom - top < MIN_CANVAS_SIDE * height:
        return None
    # Inward by CANVAS_INSET: the picture's outer pixels are blended with the canvas (resampling, JPEG),
    # and a line of canvas in a view is an edge its layout would be dominated by.
    return (left + CANVAS_INSET, top + CANVAS_INSET, right - CANVAS_INSET, bottom - CANVAS_INSET)


PAINT_SHARP = 25.0
"""Least |Laplacian| (grey levels at SIDE) of a pixel `covered` takes as pasted on: a semi-transparent
handle's strokes reach 25-60, a sticker's outline and face 100 and more; the banked renders' blurred
subjects and JPEG noise stay under it over most of them (what they do reach is left out of a check,
not counted against it)."""
PAINT_GROW = 5
"""Side (pixels at SIDE) of the square the sharp pixels are grown by: a stroke's JPEG ringing and the
blend at a sticker's edge."""
MAX_COVERED = 0.25
"""Most of the image `covered` may mark: more is not a picture under a few stickers (a text screenshot,
a detailed picture), and a check over the rest would weigh too little of it."""
MIN_COVERED = 0.01
"""Least share worth a painted view: under it nothing was pasted on that a layout would notice."""
MAX_COVERED_TEXTURED = 0.3
"""Most textured cells (`_cells`) a query may have for `covered` to look at it at all; of those not touched
by the mask it finds, at most MAX_TEXTURED. A handle repeated across a smooth picture is itself texture (its
semi-transparent strokes blur to a mean |Laplacian| over TEXTURED around them): final25's watermarked copy
of a soft figure had 16 % textured cells, 0.2 % of them outside its mask; the development set's photos have
16-98 % textured cells all over them, which a mask of at most MAX_COVERED does not take away. The cap only
spares the photos the mask's cost."""


def covered(small: np.ndarray) -> np.ndarray | None:
    """Where a mostly smooth query (`small_grey`; textured cells at most MAX_TEXTURED, as for the inner
    views, or so many outside what the mask takes in: MAX_COVERED_TEXTURED) holds what a copy pasted over
    its picture: pixels sharper than PAINT_SHARP, grown by PAINT_GROW, and the parts of the rest they
    enclose (every part but the largest: a sticker's fill and face, a logo box's inside). None when the
    query is textured (a photo), or the mask is under MIN_COVERED or over MAX_COVERED of the image."""
    laplacian = _laplacian(small)
    _, textured = _cells(small, laplacian)
    if textured > MAX_COVERED_TEXTURED:
        return None
    sharp = (laplacian > PAINT_SHARP).astype(np.uint8)
    if not sharp.any():
        return None
    grown = cv2.dilate(sharp, np.ones((PAINT_GROW, PAINT_GROW), np.uint8))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(1 - grown, connectivity=4)
    mask: np.ndarray = grown > 0
    if count > 2:
        largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        mask |= (labels > 0) & (labels != largest)
    share = float(mask.mean())
    if not MIN_COVERED <= share <= MAX_COVERED:
        return None
    return mask if textured <= MAX_TEXTURED or _textured_outside(laplacian, mask) <= MAX_TEXTURED else None


def _textured_outside(laplacian: np.ndarray, mask: np.ndarray) -> float:
    """The share of cells that are textured (`_cell_texture`) and not touched by `mask`: a photo's texture,
    where a smooth picture's comes from what was pasted on it."""
    _, textured = _cell_texture(laplacian)
    rows, columns = textured.shape
    touched = mask[: rows * CELL, : columns * CELL].reshape(rows, CELL, columns, CELL).any(axis=(1, 3))
    return float((textured & ~touched).mean())


def painted(small: np.ndarray, mask: np.ndarray) -> Image.Image:
    """`small` (a `small_grey`) with the pixels of `mask` (`covered`) filled in from around them
    (`cv2.inpaint`, Telea's method): the picture under stickers and a watermark, for its layout."""
    grey = np.clip(small, 0, 255).astype(np.uint8)
    return Image.fromarray(cv2.inpaint(grey, mask.astype(np.uint8), 3, cv2.INPAINT_TELEA))


POST_ROW = 0.5
"""Least share of a row (and, within the rows found, of a column) that must differ from the canvas for it
to be part of the picture `post_box` looks for: a line of a post's text or its buttons differs in a tenth
to a third of its pixels, a row of the picture in all of its width (76-94 % of a post's)."""
POST_MARGIN = 0.02
"""Least share of the width of card a post's picture leaves on each side (posts keep 3-12 %): a band that
reaches both sides is a smooth picture's own rows (its hills between a plain sky and a plain foot)."""
POST_GAP = 2
"""Rows (at SIDE) of a picture that may read as canvas (a pale band of it, close to a white card) without
ending it."""


def post_box(array: np.ndarray) -> Box | None:
    """The box of a picture shown in a post's or app's screenshot (`small_grey`'s pixels): on a plain
    card (its outer lines one canvas), with text lines and buttons above and below it, which `canvas_box`
    takes in. The picture is the tallest band of rows that differ from the canvas across most of their
    width (POST_ROW), text rows do not; its columns are those that differ in most of the band. None when
    there is no canvas or no such band of at least MIN_CANVAS_SIDE of each side, or the band is the whole
    image."""
    differs = _off_canvas(array)
    if differs is None:
        return None
    band = _tallest_band(differs)
    if band is None:
        return None
    left, _, right, _ = band
    width = array.shape[1]
    if left < POST_MARGIN * width or right > (1 - POST_MARGIN) * width:
        return None  # the band reaches both sides: a picture's own rows, not one framed by a card
    return _inset_band(band, array.shape)


def screen_band(array: np.ndarray) -> Box | None:
    """The box of a picture a phone's or app's screenshot shows across the screen's whole width, between
    lines of text on a plain screen (`small_grey`'s pixels): the screen is the colour of the image's top
    and bottom lines (each one colour, the same), and the picture the tallest band of rows that differ from
    it across most of their width (`post_box`'s band, without its card's margins). For the local stage:
    the border trims take the text under such a picture in with it, and a photo's few hundred pixels of
    width leave too few keypoint pairs once the text's own keypoints crowd them (final21:
    `TwoWings/phone-screenshot`, 10 pairs with the text, 123 without). None when the image has no such
    screen or band, or the band is the whole image."""
    height, width = array.shape
    if height < 16 or width < 16:
        return None
    ground = float(np.median(array[0]))
    for line in (array[0], array[-1]):
        if float(np.mean(np.abs(line - ground) <= CANVAS_LEVELS)) < CANVAS_BORDER:
            return None
    band = _tallest_band(np.abs(array - ground) > CANVAS_LEVELS)
    return None if band is None else _inset_band(band, array.shape)


def _tallest_band(differs: np.ndarray) -> Box | None:
    """The tallest band of rows of which over POST_ROW differ (gaps of POST_GAP rows closed), with the
    columns that differ in over POST_ROW of it; None when there is none."""
    full = differs.mean(axis=1) > POST_ROW
    full = (
        cv2.morphologyEx(
            full.astype(np.uint8)[:, None], cv2.MORPH_CLOSE, np.ones((2 * POST_GAP + 1, 1), np.uint8)
        )[:, 0]
        > 0
    )
    best: tuple[int, int] | None = None
    start: int | None = None
    for row, inside in enumerate([*full.tolist(), False]):
        if inside and start is None:
            start = row
        elif not inside and start is not None:
            if best is None or row - start > best[1] - best[0]:
                best = (start, row)
            start = None
    if best is None:
        return None
    top, bottom = best
    columns = np.flatnonzero(differs[top:bottom].mean(axis=0) > POST_ROW)
    if columns.size == 0:
        return None
    return (int(columns[0]), top, int(columns[-1]) + 1, bottom)


def _inset_band(band: Box, shape: tuple[int, ...]) -> Box | None:
    """A band (`_tallest_band`) drawn in by CANVAS_INSET, or None when it keeps under MIN_CANVAS_SIDE of
    a side or covers over MAX_CLEAR of the image."""
    left, top, right, bottom = band
    height, width = shape[:2]
    if right - left < MIN_CANVAS_SIDE * width or bottom - top < MIN_CANVAS_SIDE * height:
        return None
    if (right - left) * (bottom - top) > MAX_CLEAR * width * height:
        return None
    return (left + CANVAS_INSET, top + CANVAS_INSET, right - CANVAS_INSET, bottom - CANVAS_INSET)
