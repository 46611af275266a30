"""How much a picture can be matched on, and how we match the pictures PDQ alone would refuse.

PDQ's quality (summed gradients of its 64x64 luminance) is under 50 for two different kinds of picture:

- Low-contrast copies of ordinary photos (sepia, grey, washed out). PDQ's bits compare DCT coefficients
  with their median, so a linear contrast change leaves the hash as it was: only the quality gate refused
  them. `contrast_quality` is the quality of the luminance stretched to full range (gain at most
  MAX_GAIN, so the JPEG noise of a plain colour stays plain); at 50 or more the PDQ hash is used as any.
- Smooth pictures (soft gradients, pastel hills, generated art with a soft subject), told by their few
  corners (under SOFT_KEYPOINTS ORB keypoints, where photos have 400-500), whatever their PDQ quality:
  a blurred sky can score 90 on summed gradients yet its PDQ bits are noise around the median, the local
  stage finds nothing to pair, and unrelated gradients look alike. They are matched on their layout
  too: a 16x16 luminance thumbnail with its smooth background taken away (a Gaussian high-pass), so two
  gradients do not look alike, but a subject, hill lines or clouds in the same places do. Banked smooth
  pictures keep the layouts of windows of themselves (80-100 % of each side) for light crops; a query
  matches when its layout (whole, inside borders, eight turns and mirrors) correlates at LAYOUT_MATCH or
  more and the pictures agree pixel by pixel there (`check_layout`).
- What is left, pictures with almost no structure at all (a plain colour, a bare gradient), cannot be
  told from the many like them: they are reported as plain and never matched.

A smooth banked picture is weak evidence in both directions: a soft figure's outline is shared by
countless look-alikes (the same head-and-shoulders shape elsewhere, on another background), which pHash
and the local stage pair as readily as its copies. So a match to one is looked at again on the pictures
themselves (`check_local`, `check_layout`): the query is mapped onto the banked picture (by the local
pairs' affine fit, or into the layout window that matched), its tones are fitted to the banked picture's
(a quadratic: contrast, brightness, gamma), and most of their overlap must then agree within a few grey
levels (`tone_fit`); a look-alike agrees on its figure but not on its background. The matcher does not
take a pHash hit on a smooth banked picture at all: its copies are left to these checked stages.

Colour. Hashes and local features see grey only, but smooth renders differ mostly in colour layout:
pastel hills of four colours can share one grey, and a look-alike soft figure has the banked one's
outline and tones in grey, seldom its colours. So when the query's file is at hand its colour copy
(decoded small, and only once a smooth banked picture is a candidate) is compared too: every channel,
fitted on its own (`colour_fit`), must agree within 12 levels over most of the overlap; a monochrome
copy (grey, sepia) is compared in grey only. This lets two searches through that grey alone could not
trust: a crop or covered copy placed inside the banked picture (`LayoutIndex.region_match`: shortlisted
by the layouts of 60-100 % windows, placed by template matching at a few sizes), and the banked picture
found whole inside a query (`contained_match`: a blurred vertical pad, a post).

Structure, not background. A share of agreeing pixels counts a flat background as much as a subject:
a generic banked render (a ball on a soft gradient) agreed with logos and soft figures over its
background. So every check also weighs agreement by the banked picture's structure (`structure_weights`:
high-passed detail, capped so faint shading counts as much as an outline; a pixel of slack for a copy
placed a pixel off) and needs most of it to agree (`Fit.subject`, MIN_SUBJECT_FIT). A generic picture
(`is_generic`: its structure is one blob on a plain or graded background) is matched only where its hues
hold too: its colour check uses one map for the three channels (`_shared_fitted`), because a flat logo
of any colour fits a ball's outline and, channel by channel, its colour; and that map may not wash the
copy's colour out further than turning it up would undo (`chroma_gain`, MIN_CHROMA_GAIN): a near-grey
ball is fitted from a brighter one of a nearby hue, or from a logo on white, that way.

Plain parts. The region and contained searches place a query on part of a banked picture, and a part
can be plain (a soft sky's cloudless half): a quadratic surface in x and y explains it, any gradient's
tones fit it, and the structure weights see nothing there but the part's border. So a placement counts
only where the banked part has relief, structure a low-order surface leaves (`relief`, MIN_RELIEF), and
covers a quarter of the banked picture or more (MIN_REGION_AREA): a plain gradient matches every
gradient, a corner of one every look-alike. A piece under SMALL_REGION of it holds little of its structure
(a cloud's fringe), which a foreign thing's edge can follow closely: a copy's piece is that picture, so it
must fit closely (MIN_SMALL_PLACEMENT), agree nearly everywhere (MIN_SMALL_FIT, MIN_SMALL_SUBJECT) and lie on
relief well above a plain part's (MIN_SMALL_RELIEF). A small piece placed on the picture's subject alone
(a ball, with little of its ground: DENSE_PIECE) is only a blob of that outline and those colours, as in
any look-alike render: it must agree over the subject all but exactly (MIN_DENSE_SUBJECT).

Monochrome copies of a generic picture. A grey or sepia copy has no hues to check, so a generic banked
picture's copies too washed out for PDQ's quality to pass once stretched are matched only on a near PDQ hash
(under SMOOTH_PDQ_CHECKED) with near-exact grey agreement over the whole picture and its shape
(`LayoutIndex.monochrome_fit`), and only when the query has no hue of its own at all (`hueless`).

Unchanged colours. The colour maps are fitted by least squares, which opaque stickers can pull off the
picture a copy left as it was; the map that changes nothing belongs to every family fitted, so each colour
check also tries it and keeps the better agreement.

Brightened past white, then toned and re-encoded. A filter that brightens clips a pastel picture's
channels at white, and contrast, saturation or gamma after it move those pixels off white together: the
clipped-pixel bound (CLIPPED_HIGH) no longer sees them, and no smooth tone curve follows a channel
flattened at an unknown level. A hard re-encode after a desaturating recolour leaves blocks of chroma
error that the colour map, scaling the chroma back up, pushes past 12 levels. So a colour check that
fails is tried once more (`_degraded_fit`): each channel's plateau at its top taken as clipped
(`_plateaus`), and the misfit averaged over a few pixels before it is counted (`_averaged_agreement`):
noise averages out, a look-alike's other colours, patches of them, do not. The grey, the structure and
every other threshold stay as they were.

Recolours, not look-alikes. The per-channel colour map can turn one flat colour into any other, so a
figure of two or three flat colours fits another figure of the same outline in other colours, and where a
copy's check leaves the figure out (taken for a sticker or for text) the backgrounds that are left fit
too (final27: a look-alike render's recoloured and canvas copies taken for a banked render of the same
silhouette). What a recolour edit can do is narrower, and a colour check that holds must hold as one:
the banked picture's colours must explain the copy's (`colour_explained`: each original colour becomes
one colour, so two colours of the copy over one of the original are a look-alike's, MIN_EXPLAINED), and
its hues must be kept where the banked picture is coloured and not so bright that a brightening clipped
it (`hues_kept`: a filter's brightness, contrast, saturation and gamma, or a colour profile, turn hues by
well under HUE_TURN; red into blue is another picture, MIN_HUE_KEPT). Monochrome copies keep no hue and
are not asked to.

Text and tilts. A copy that adds text (Impact captions burnt in, a meme's bands and a post's chrome)
disagrees with the banked picture wherever the text is: every check leaves the query's text out
(`text_mask`: cells dense in sharp detail, which a smooth picture never has), and the layout and region
stages also get views of the part free of text and of a picture set on a canvas (`inset.py`). A copy
placed inside a banked picture that does not agree as placed, though it correlates there, is turned
back by a few degrees and placed again (`TILTS`): a tilted copy agrees in grey but parts in colour along
every edge. Turned back, it is placed at the size it was placed at unturned, which a tilt skews; one that
fails there is placed again at a few sizes around it (`TILT_SIZES`), and must then fit closer
(MIN_TILT_SIZED_PLACEMENT): more placements tried, more chances for a look-alike.

Thresholds were chosen on the development set (benchmarks/matching.py --set dev) and, for the checks, on
a tuning set drawn from seeds the benchmark's reported figures do not use (`--tag`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
from PIL import Image

from monitor.imaging.inset import text_cells
from monitor.imaging.local_features import SIDE, Features, features, ratio_pairs
from monitor.imaging.pdq import MIN_QUALITY, luma64, quality_of

log = logging.getLogger(__name__)

MAX_GAIN = 4.0
"""Most a contrast stretch may multiply the luminance range by: a sepia or washed-out copy keeps a third
to a half of its range; a plain colour's JPEG noise (a few levels) stays under the quality gate."""
STRETCH_RANGE = 200.0
"""The 1st-99th percentile luminance range a stretch aims at."""
SOFT_KEYPOINTS = 200
"""Fewer ORB keypoints (of 500) than this is a smooth picture: photos on the development set have 440-500
(one clock face 71), smooth renders 0-145."""
LAYOUT_SIDE = 16
LAYOUT_BLUR = 2.0
"""Sigma (in thumbnail pixels) of the background taken away from a layout."""
MIN_STRUCTURE = 30.0
"""Least high-passed energy (L2 over the 16x16 thumbnail, grey levels) a smooth picture needs to be
matched on its layout; under it the picture is plain. Soft pictures with a subject score 80-350 on the
development set, plain colours and bare gradients under 10."""
LAYOUT_MATCH = 0.90
"""Least layout correlation that makes a match, with MIN_LAYOUT_FIT. On the development set, 360
look-alike flat pictures (soft renders, logos, memes on plain backgrounds) reached 0.944 against the banked
smooth renders, re-encoded, resized, turned or recoloured copies 0.95-1.0: 0.95 alone was the cut until
the pixel check (`check_layout`) let it come down to 0.90 (tuning set: look-alike soft figures at 0.90-0.94
fit 0.72-0.79; copies 0.90 and more, 13 more found)."""
WINDOW_SCALES = (1.0, 0.9, 0.8)
WINDOW_STEP = 0.1
CROP_SCALES = (1.0, 0.9, 0.8, 0.7, 0.6)
"""Windows (of each side) the region search starts from: crops keep 60-85 % of each side."""
REGION_SHORTLIST = 0.65
"""Least layout correlation (over the crop windows) that makes a banked smooth picture worth a region
search: well under LAYOUT_MATCH, as the windows sit a twentieth of a side off a crop at worst."""
REGION_CANDIDATES = 2
"""Banked pictures searched per query, best layouts first."""
REGION_SCALES = (0.84, 0.92, 1.0, 1.08, 1.16)
"""Sizes tried around the window's for the query placed inside the banked picture; then half a step
either side of the best: a smooth picture placed 4 % too small still agrees in grey, but its colours
part at a subject's edges (a caption-free band of a render: grey 0.98, colour 0.76)."""

TILTS = (-6.0, -4.0, -2.0, 2.0, 4.0, 6.0)
"""Degrees a query placed inside a banked picture (`region_check`) is turned back by when it does not
agree as placed, though placed at MIN_PLACEMENT or more: tilted copies (2-6 degrees, cropped to a
rectangle) correlate at 0.82-0.99 and agree in grey but part in colour along every edge."""

TILT_SIZES = (0.88, 0.92, 0.96, 1.04, 1.08, 1.12)
"""Sizes (of the size it was placed at unturned) at which a turned-back query is placed again when it does
not agree at that size: a tilted copy correlates best at a size that is not its own, and turned back it is
placed at that wrong size (final26's and final28's tilted pastel hills and sky, turned back at 0.94-0.95
over 37-47 %, under MIN_SMALL_PLACEMENT; at their own size, 4-10 % larger, 0.98 and more)."""
MIN_TILT_SIZED_PLACEMENT = 0.98
"""Least correlation for a turned-back query placed at one of TILT_SIZES: the search tries six times as
many placements, which a look-alike can fit at 0.95-0.97 (final26's whole flat sky over a third of a banked
soft sky at 0.968), where a copy turned back at its own size fits at 0.99 or more."""

TILT_PAINTED = True
"""Whether a painted view (`inset.covered` found something pasted on the query) that does not agree as
placed is turned back too, as it is (unpainted, every pixel compared). Something sharp in a tilted copy can
read as pasted on: final26's two tilted copies of a blurred-background figure (4.3 and 5.7 degrees) got
masks of 3 % and were placed only as painted (0.865 and 0.915, colour 0.750 and 0.796); turned back, at
0.991 and 0.994 (grey 0.995 and 1.0, colour 0.963 and 0.989)."""

VERIFY_SIDE = 128
"""Local and layout matches are checked on copies this small: the check compares pictures, not keypoints."""
PAIR_RATIO = 0.8
"""Lowe's ratio test for the pairs the check refits (the local stage's)."""
FIT_PIXELS = 6.0
"""RANSAC's reprojection limit, in pixels of the 512 px copies features are found on."""
VERIFY_BLUR = 3.0
"""Sigma (at VERIFY_SIDE) of the background taken away before comparing (as for layouts)."""
MIN_INSIDE = 0.85
"""Least share of the query inside the banked picture once mapped (or of it inside the query) for a
local match to stand: copies are crops of it or contain it; look-alikes overlap it partly."""
MIN_TONE_FIT = 0.85
"""Least share of the overlap within 12 grey levels (`tone_fit`) for a local match to a smooth banked
picture to stand. On the tuning set (development photos and renders, flat pictures and look-alike
renders drawn from seeds never reported) look-alikes the local stage paired reached 0.835, copies 0.85
and more but for three under caption overlays or inside a meme screenshot (0.70-0.79)."""
MIN_LAYOUT_FIT = 0.88
"""The same for a layout match (`check_layout`: in the view, turn and window that matched)."""
CONTAINED_SIDE = 64
"""Size of the copies a banked smooth picture is looked for inside a query at (`contained_match`)."""
CONTAINED_SCALES = (1.0, 0.9, 0.8)
"""Sizes tried, as fractions of the largest at which the banked picture fits inside the query: a blurred
vertical pad holds it at full width, a post or an app 80-95 %. Smaller ones (a canvas holds it at 35-70 %)
were tried down to 0.4 on the tuning set: at 64 px the placements were too loose to pass (canvas copies
stayed missed) and the search doubled the CPU time of a never-seen image."""
MIN_CONTAINED_PLACEMENT = 0.90
"""Least correlation where a banked picture is found inside a query before the pictures are compared."""
CONTAINED_REFINE = 2
REFINE_SCALES = (0.96, 0.98, 1.0, 1.02, 1.04)
"""Where the pictures do not agree as `contained_match` placed the banked one (at CONTAINED_SIDE, a pixel
there is two of the compared thumbnails', and its sizes are 10 % apart), it is placed again at the
thumbnails' resolution, within CONTAINED_REFINE pixels of the CONTAINED_SIDE copy each way and at these
fractions of the size found, and compared there (`_refined_box`). A picture pasted unchanged on a blurred
copy of itself (final19) placed at 0.957 agreed over 0.76 of its pixels in colour as first placed, 0.985
once placed again: the blur around it is the picture's own colours, a pixel or two off reads as a
misfit along every edge."""
COLOUR_REFIT = 24.0
"""Levels within which pixels are kept for `colour_fit`'s second fit."""
MIN_REGION_FIT = 0.80
"""Least share of a region match's overlap within 12 levels in grey (`tone_fit`)."""
MIN_COLOUR_FIT = 0.80
"""Least share within 12 levels in every colour channel (`colour_fit`) for a region match, or for a PDQ
hit on a smooth banked picture."""
MIN_PLACEMENT = 0.75
"""Least correlation of a region match where the query was placed (`RegionCheck.placement`)."""
SMALL_REGION = 0.6
MIN_SMALL_PLACEMENT = 0.955
"""Least placement correlation when the query covers under SMALL_REGION of the banked picture: a small
piece is less evidence, so it must fit closely. On the tuning set, crops and screenshots of banked
renders placed at 0.97-1.0 (covering 30-84 %), covered copies (stickers, watermarks) at 0.79-0.96 over
80-100 %; pieces of look-alike skies at 0.81-0.86 over 30-42 %, with colours agreeing 84-87 %. Raised
from 0.95 when a whole soft sky (a flat negative of the eval photos' tuning tag) placed at 0.951 over
35-39 % of a banked one, agreeing in colour too; a tilted copy's piece placed at 0.959 (dev, tuning
tag): the margin is thin both ways."""
PIECE_REGION = 0.75
MIN_PIECE_PLACEMENT = 0.85
"""Least placement correlation when the query covers under PIECE_REGION of the banked picture (and not
under SMALL_REGION, which asks more): it is then a piece of it (a crop, a turned copy cut to a rectangle;
a chain's light trim keeps 77 % or more), whose pixels are the banked picture's, so it correlates closely
where placed; only a copy covered by stickers, a watermark or a caption correlates as low as
MIN_PLACEMENT, and those cover 80-100 %. On final22-24 the region search's copies over 60-75 % placed at
0.882 or more (25); final24's one false match, a whole flat sky placed over 62 % of a banked soft sky,
at 0.783 (grey 0.93, colour 0.91, subject 0.76)."""
MIN_SMALL_SUBJECT = 0.90
"""Least agreement over the banked part's structure (`RegionCheck.subject`) when the query covers under
SMALL_REGION of the banked picture: a piece so small holds little of the picture's structure (a cloud's
fringe, a hill line), and a copy's piece is that picture, so it agrees there all but exactly. On final17-19
the region search's copies placed over under 60 % agreed at 0.957 or more (all but three at 0.99 or
more); a photo's corner, set on a gradient canvas, placed at 0.97 over 48 % of a banked soft sky on the
fringe of a cloud and agreed over 0.835 of its structure (final19's one false match): a rectangle's
corner is not a cloud's edge, though within MIN_SUBJECT_FIT of it."""
MIN_SMALL_FIT = 0.90
"""The same for the share of the pixels that agree in grey (`RegionCheck.grey`): those copies agreed over
0.96 or more (and the region copies of the dev tuning tag alike), tilted copies turned back and cut to a
rectangle (`TILTS`: tests/test_matching_inset.py) 0.948 or more; a soft figure on a gradient (a flat
negative of the dev tuning tag) placed at 0.958 over 35 % of a banked ball agreed over 0.85 of its pixels,
over 0.925 of the structure. In colour the turned-back copies part along every edge (0.90-0.91): the
colour share keeps MIN_COLOUR_FIT."""
MIN_SMALL_RELIEF = 8.0
"""Least `relief` of the banked part when the query covers under SMALL_REGION of the banked picture (see
MIN_RELIEF). The same canvas, turned back by a few degrees (`TILTS`) and cut to the rectangle the turn
leaves whole, lost the photo's corner: its bare gradient placed over 38 % of the soft sky, on a part of
it that left 3.15 levels (a plain part leaves 0.56-0.95), and agreed everywhere, as any gradient there
would. The copies placed over under 60 % on final17-19 left 8.5 or more, on final20-22 12.2 or more.
Raised from 6 when the right strip of a look-alike soft sky (final22: an inner view of a copy with
stickers, the stickers left of it) placed at 0.962 over 27 % of a banked soft sky, on a part with a
cloud's faint fringe that left 7.49 levels, and agreed over 0.98 of its grey and 0.90 of its colour: on
so faint a part any soft sky's ramp and haze agree."""
DENSE_PIECE = 1.75
"""A small piece (under SMALL_REGION) is dense when it holds this many times its share of the banked
picture's structure (`RegionCheck.held` over `RegionCheck.area`): it is placed on the picture's subject,
a ball or a figure, with little of its ground. Such a piece says only that the query has a blob of that
outline and those colours, which any look-alike render has; see MIN_DENSE_SUBJECT."""
MIN_DENSE_SUBJECT = 0.965
"""Least agreement over the banked part's structure (`RegionCheck.subject`) for a dense piece
(DENSE_PIECE). final20's two false matches were balls on a gradient (flat negatives) placed over 28 and
35 % of a banked ball render, holding 0.69 and 0.89 of its structure (2.4 and 2.5 times their share) and
agreeing over 0.947 and 0.925 of it (above MIN_SMALL_SUBJECT); the crops of the dev tuning tag and
final20 as dense (1.75-2.04 times) agreed at 0.979 or more: a copy's subject is that subject, pixel by
pixel, a look-alike's only roughly."""
MIN_PDQ_FIT = 0.85
"""Least share within 12 levels (grey, and every colour channel for a query in colour) for a PDQ hit on a
smooth banked picture at SMOOTH_PDQ_CHECKED or more, over the whole views (`LayoutIndex.whole_fit`)."""
SMOOTH_PDQ_CHECKED = 21
"""PDQ distance from which a hit on a smooth banked picture must hold pixel by pixel. A smooth picture's
PDQ bits are partly noise around the median, so look-alikes can come within Meta's 31 (one did at 28 on
the eval set); on the tuning set its copies' hits that fail the whole-picture check (screenshots,
letterboxes, grey copies: the check sees bars or no colour) were all at 18 or less."""
MIN_MONOCHROME_FIT = 0.97
MIN_MONOCHROME_SUBJECT = 0.95
"""Least grey agreement (share of the pixels, and of the structure) of a monochrome copy (grey, sepia,
washed out) of a generic banked picture whose PDQ hash came within SMOOTH_PDQ_CHECKED of it but whose
contrast is too low for its quality to pass once stretched (`LayoutIndex.monochrome_fit`). Its hues cannot
be compared, so its shape must agree nearly exactly, over the whole picture: on final18 such copies agreed
at 1.000 (share and structure), the copies the stretched PDQ stage finds are the same pictures a little
less washed out."""

MIN_EXPLAINED = 0.5
"""Least share of the compared pixels where the copy's colours follow from the banked picture's
(`colour_explained`) for a colour check that holds to stand. A recolour maps each colour of the original
to one colour; a look-alike's two backgrounds (a canvas and its own gradient) over one banked background
do not follow. Copies that hold (tuning tags final26 and final27) are explained over 0.71 or more of their
compared pixels (chains and stickers lowest), final27's look-alike canvas copy 0.15."""
HUE_TURN = 60.0
"""Largest turn of hue (degrees, CIE Lab) a recolour is taken to make where the banked picture is coloured
(`hues_kept`). A brightening that clipped a pastel blue and the toning after it turned its Lab hue by
30-60 degrees (final27's `soft-sky-1/colour`), which is why the bright pixels are left out
(HUE_HEADROOM); final27's look-alike turned the banked figure's dark red into navy, about 85."""
HUE_HEADROOM = 190.0
"""Banked pixels with a channel over this level (of 255) are not asked to keep their hue: a brightening
by up to a third clips them, and where a channel clips the hue turns (HUE_TURN)."""
HUE_CHROMA = 4.0
"""Least chroma (CIE Lab) in the copy and in the banked picture for a pixel's hue to be compared: the hue
of a grey is noise."""
MIN_HUE_PIXELS = 0.02
"""Least share of the compared pixels whose hues are compared (coloured in both, HUE_HEADROOM) for
`hues_kept` to judge: fewer say nothing either way."""
MIN_HUE_KEPT = 0.5
"""Least share of the compared chroma (each pixel weighed by its chroma in the copy and in the banked
picture) whose hue turned by at most HUE_TURN, for a colour check that holds to stand. Copies that hold
on the tuning tags keep 0.64 or more (opaque stickers of other colours lowest); final27's recoloured
look-alike kept none."""

MIN_CHROMA_GAIN = 0.3
"""Least `chroma_gain` of a colour check against a generic banked picture that holds. A generic picture's
ball can be near grey (final29's: a desaturated mauve), and the map shared by the channels fits a ball of
a nearby hue and brighter colour, or a logo of any colour on white, by turning its colour down to almost
nothing or round: final29's 15 false matches (logos, soft figures), gains -2.6 to 0.26. Copies of generic
renders on final20-29 and the dev tuning tag kept 0.47 or more at their best check (stickers and chains
lowest, a coloured frame 0.52); the strongest colour edit the benchmark makes (brightness 1.3, contrast
1.4, saturation 1.6) about 0.35."""
CHROMA_SPREAD = 2.0
"""Least root-mean-square chroma (levels, each channel less the pixel's mean) of a copy over the compared
pixels for `chroma_gain` to judge: a grey copy's chroma is compression noise."""

HUELESS_SHARE = 0.03
"""`hueless`'s cut, as a share of the grey's 1-99 percentile range: grey and sepia copies of a render
misfit by 0-2.3 % of it, washed-out colour copies (the render's, or a hue-swapped look-alike's) 5-7 %."""
MONOCHROME_LEVELS = 3.0
"""Mean misfit (levels) of colour channels predicted from the grey under which a picture is monochrome
(`monochrome`)."""
TONE_BLUR = 1.5
"""Sigma (at VERIFY_SIDE) of the smoothing before tones are compared: JPEG noise and a pixel of misfit."""
SUBJECT_FLOOR = 2.0
"""Grey levels of high-passed detail (`structure_weights`) that weigh nothing: JPEG noise, gradient
banding."""
SUBJECT_SHIFT = 1
"""Pixels (at VERIFY_SIDE) a copy may be off where its structure is compared (`_shifted_residual`): a
layout window or an affine fit places a copy a pixel or so off, which on an edge is tens of levels."""
SUBJECT_CAP = 6.0
"""Most a pixel weighs (levels over SUBJECT_FLOOR): a subject's faint shading counts as much as its
outline, so a flat logo with the outline of a shaded ball does not agree over most of the ball's
structure."""
MIN_SUBJECT_WEIGHT = 50.0
"""Least summed structure weight (levels x thumbnail pixels) in the compared part of a banked picture for
any agreement to count: a piece of bare background is no evidence of a copy."""
GENERIC_LEVEL = 3.0
GENERIC_GAP = 5
GENERIC_BOX = 0.36
"""`is_generic`'s cut: on renders drawn from 24 seeds, a ball or figure on a gradient had its structure in
14-32 % of the picture, pastel hills, skies and blurred backgrounds 39-100 % or in several pieces."""
MIN_RELIEF = 3.0
"""Least relief (`relief`: grey levels, root mean square, of the banked part left once a quadratic surface
in x and y is fitted to each colour channel) of the banked pixels a query is placed on (`region_check`,
`contained_match`) for the placement to be evidence. A part that a low-order surface explains (a plain
colour, a linear or gently curved gradient) agrees with every gradient: the tone and colour fits map any
smooth ramp onto any other, and the only structure its weights see is the crop's border, so agreement
there says nothing about the query. Such parts leave their JPEG noise and banding, 0.56-0.95 levels (a
banked soft sky's cloudless half, which 56 linear gradients and photo tiles matched on the eval photos'
final16 tag); the parts its 109 copies found by these searches were placed on left 12.7 or more (clouds,
hill lines, subjects), on the tuning tag 9.2 or more (175 copies, dev and eval). 3 sits between: 3x over
the plain parts, 3x under the least copy."""
MIN_REGION_AREA = 0.25
"""Least share of the banked picture a query placed inside it (`region_check`) must cover. The search is
for crops keeping 60 % or more of each side (CROP_SCALES), placed at 0.84 of the window at the smallest
(REGION_SCALES): 25 % of the picture. Only the tilt search (`TILTS`: the rectangle a turn leaves whole)
places less, and such a piece of a smooth picture, a corner of gradient with a cloud's fringe, is shared
by look-alikes: three soft skies' turned-back pieces placed over 16-22 % of a banked one (final16), while
copies placed by the region search covered 39 % or more (final16), 33 % or more (tuning tag)."""
MIN_SUBJECT_FIT = 0.70
"""Least share of the banked picture's structure where a query must agree with it (`Fit.subject`), in
every pixel check of a match to a smooth picture. The share-of-pixels checks count a flat background as
much as a subject: a generic banked render (a ball on a soft gradient) agreed with logos and soft figures
over its background, in grey and in colour alike."""

TEXT_SHARP = 80.0
"""Least |Laplacian| (grey levels, 3x3 cross, at VERIFY_SIDE) of a sharp pixel in `text_mask`."""
TEXT_CELL = 4
TEXT_BUSY = 0.15
"""Share of sharp pixels over which a TEXT_CELL x TEXT_CELL cell of a query's thumbnail is text (caption
letters, their outlines, chrome): 128 px thumbnails of 48 smooth renders had at most 1.7 % of their cells
so, copies under Impact-style captions 21-24 %."""
MAX_TEXT = 0.5
"""Most of a query's thumbnail `text_mask` may take away: more is a detailed picture, not text on a
smooth one, and nothing is masked. Captions burnt into the top and bottom of a landscape picture take
39-41 % (with their cell of margin)."""

Strength = Literal["detailed", "low-contrast", "smooth", "plain"]


@dataclass(frozen=True, slots=True)
class Evidence:
    """How a picture can be matched: `strength` and what it rests on, in words for an analyst."""

    strength: Strength
    quality: int
    """PDQ quality of the picture as it is."""
    contrast_quality: int
    structure: float
    keypoints: int
    generic: bool = False
    """A smooth picture whose structure is one blob on a flat or graded background (`is_generic`): a
    ball, a logo, a figure on a gradient, like countless others but for that blob."""

    @property
    def weak(self) -> bool:
        return self.strength != "detailed"

    def explain(self) -> str:
        if self.strength == "detailed":
            return f"detailed (PDQ quality {self.quality}): matched by its hashes and local features"
        if self.strength == "low-contrast":
            return (
                f"low contrast (PDQ quality {self.quality}, {self.contrast_quality} once contrast is "
                "stretched): matched by its PDQ hash after contrast normalisation and local features"
            )
        if self.strength == "smooth" and self.generic:
            return (
                f"weak evidence, generic: smooth picture (PDQ quality {self.quality}, {self.keypoints} "
                "corners) whose only structure is one shape on a plain or graded background, as in "
                "countless logos and renders: matched only where a copy agrees with that shape pixel by "
                "pixel and keeps its hues (its background counts for nothing); re-encodes, resizes, turns, "
                "borders, filters and crops that keep the shape are found, grey or sepia copies only when "
                "nearly exact, and a look-alike of the same shape and colours in the same place would match"
            )
        if self.strength == "smooth":
            return (
                f"weak evidence: smooth picture (PDQ quality {self.quality}, {self.keypoints} corners): "
                f"matched on its layout (correlation >= {LAYOUT_MATCH}) or by placing a copy inside it, and "
                "only where the pictures agree pixel by pixel over its structure (in colour too), caption "
                "text left out; small pieces of it and heavily covered copies are likely missed"
            )
        return (
            f"no evidence: plain picture (PDQ quality {self.quality}, almost no structure): it looks like "
            "countless other plain pictures and is never matched"
        )

    @property
    def pdq_usable(self) -> bool:
        """Whether its PDQ hash is worth looking up (directly or after contrast normalisation)."""
        return max(self.quality, self.contrast_quality) >= MIN_QUALITY

    @property
    def has_layout(self) -> bool:
        return self.strength == "smooth"


QUALITY_SIDE = 128
"""contrast_quality reads a copy this small: PDQ's quality is taken on 64x64 samples anyway."""


def contrast_quality(grey: Image.Image) -> int:
    """PDQ quality of the picture with its luminance range stretched (see MAX_GAIN)."""
    grey = _grey(grey)
    if max(grey.size) > QUALITY_SIDE:
        scale = QUALITY_SIDE / max(grey.size)
        size = (max(1, round(grey.width * scale)), max(1, round(grey.height * scale)))
        grey = grey.resize(size, Image.Resampling.BOX)
    block = luma64(grey)
    low, high = np.percentile(block, (1, 99))
    gain = min(MAX_GAIN, STRETCH_RANGE / max(float(high - low), 1e-6))
    return quality_of(block * max(1.0, gain))


def _layout(grey: Image.Image) -> tuple[np.ndarray, float]:
    """The high-passed 16x16 thumbnail (unit length, zero mean) and its energy before normalising."""
    small = np.asarray(grey.resize((LAYOUT_SIDE, LAYOUT_SIDE), Image.Resampling.BOX), dtype=np.float32)
    detail = small - cv2.GaussianBlur(small, (0, 0), LAYOUT_BLUR, borderType=cv2.BORDER_REFLECT)
    detail -= detail.mean()
    energy = float(np.linalg.norm(detail))
    return (detail / energy if energy > 0 else detail), energy


def structure(grey: Image.Image) -> float:
    """How much a picture holds besides its smooth background (see MIN_STRUCTURE)."""
    return _layout(_grey(grey))[1]


def _grey(image: Image.Image) -> Image.Image:
    return image if image.mode == "L" else image.convert("L")


def assess(grey: Image.Image, quality: int | None, keypoints: int | None = None) -> Evidence:
    """How a picture (the grey image it was hashed from, and its PDQ quality) can be matched.

    `keypoints`, the number of ORB keypoints `features(grey)` finds, when the caller has them already
    (the bank matcher keeps a banked picture's features): the same detection is not run twice."""
    grey = _grey(grey)
    quality = 100 if quality is None else quality
    stretched = quality if quality >= MIN_QUALITY else contrast_quality(grey)
    energy = structure(grey)
    keypoints = len(features(grey).points) if keypoints is None else keypoints
    if keypoints >= SOFT_KEYPOINTS:
        strength: Strength = "detailed" if quality >= MIN_QUALITY else "low-contrast"
        if stretched < MIN_QUALITY:
            strength = "smooth" if energy >= MIN_STRUCTURE else "plain"
    else:
        strength = "smooth" if energy >= MIN_STRUCTURE else "plain"
    return Evidence(
        strength, quality, stretched, energy, keypoints, strength == "smooth" and is_generic(grey)
    )


def is_generic(grey: Image.Image) -> bool:
    """Whether a picture's structure is one blob on a flat or graded background: its detailed pixels
    (`structure_weights` over GENERIC_LEVEL, joined across GENERIC_GAP pixels) form one large piece
    (others under a tenth of them), whose bounding box covers under GENERIC_BOX of the picture."""
    detail = structure_weights(thumbnail(grey)) > GENERIC_LEVEL
    joined = cv2.dilate(detail.astype(np.uint8), np.ones((GENERIC_GAP, GENERIC_GAP), np.uint8))
    count, _, stats, _ = cv2.connectedComponentsWithStats(joined)
    areas = stats[1:, cv2.CC_STAT_AREA]
    if count < 2:
        return False
    if int((areas >= 0.1 * areas.sum()).sum()) != 1:
        return False
    ys, xs = np.nonzero(joined)
    box = float((np.ptp(xs) + 1) * (np.ptp(ys) + 1)) / joined.size
    return box < GENERIC_BOX


def query_layouts(views: list[Image.Image]) -> np.ndarray:
    """Layouts a query is compared by: each view (whole, inside borders) in its eight turns and mirrors,
    as rows of a (8 x views) x 256 matrix."""
    rows = []
    for view in views:
        layout, _ = _layout(_grey(view))
        for turned in (layout, layout.T):
            rows += [turned, turned[:, ::-1], turned[::-1, :], turned[::-1, ::-1]]
    return np.stack([row.reshape(-1) for row in rows])


def window_layouts(grey: Image.Image, boxes: Sequence[Box] | None = None) -> np.ndarray:
    """Layouts of windows of a banked picture (80-100 % of each side, in steps of a tenth; `window_boxes`;
    or `boxes`), so that crops of it compare: rows of a matrix, the whole picture first."""
    grey = _grey(grey)
    width, height = grey.size
    rows = []
    for x0, y0, x1, y1 in _BOXES if boxes is None else boxes:
        left, top = round(x0 * width), round(y0 * height)
        box = (left, top, max(left + 1, round(x1 * width)), max(top + 1, round(y1 * height)))
        rows.append(_layout(grey.crop(box))[0].reshape(-1))
    return np.stack(rows)


Box = tuple[float, float, float, float]


def window_boxes(scales: Sequence[float] = WINDOW_SCALES) -> list[Box]:
    """The windows of `window_layouts`, in its order, as fractions of the picture (left, top, right,
    bottom)."""
    boxes = []
    for sx in scales:
        for sy in scales:
            nx, ny = round((1 - sx) / WINDOW_STEP) + 1, round((1 - sy) / WINDOW_STEP) + 1
            for ix in range(nx):
                for iy in range(ny):
                    x0, y0 = (1 - sx) * ix / max(1, nx - 1), (1 - sy) * iy / max(1, ny - 1)
                    boxes.append((x0, y0, x0 + sx, y0 + sy))
    return boxes


_BOXES = window_boxes()
_CROP_BOXES = window_boxes(CROP_SCALES)
_WINDOW_ROWS = np.array([_CROP_BOXES.index(box) for box in _BOXES])
"""Where each of `_BOXES` is among `_CROP_BOXES` (a larger set of windows made by the same rule)."""


def oriented(array: np.ndarray, turn: int) -> np.ndarray:
    """`array` in the `turn`-th of the eight orientations `query_layouts` lists."""
    turned = array.T if turn >= 4 else array
    flips = turn % 4
    if flips & 1:
        turned = turned[:, ::-1]
    if flips & 2:
        turned = turned[::-1, :]
    return np.ascontiguousarray(turned)


def check_layout(
    view: Image.Image,
    turn: int,
    bank: np.ndarray,
    box: tuple[float, float, float, float],
    covered: np.ndarray | None = None,
) -> Fit:
    """How well a layout match holds pixel by pixel: the query view, turned as it matched and fitted to the
    window of the banked picture's `thumbnail` it matched, compared by `fits` (share within 12 levels, of
    the pixels and of the banked picture's structure). `covered` (a mask over the view, as it is) marks
    what a copy pasted over it (`inset.covered`): left out, as its text is."""
    height, width = bank.shape
    left, top = round(box[0] * width), round(box[1] * height)
    right, bottom = max(left + 8, round(box[2] * width)), max(top + 8, round(box[3] * height))
    window = bank[top:bottom, left:right]
    seen = oriented(thumbnail(view), turn)
    compared = ~_resized_mask(_left_out(seen, covered, turn), (window.shape[1], window.shape[0]))
    seen = cv2.resize(seen, (window.shape[1], window.shape[0]), interpolation=cv2.INTER_AREA)
    return fits(seen, window, compared)


def check_layout_colour(
    seen: np.ndarray,
    turn: int,
    bank: np.ndarray,
    box: Box,
    shared: bool = False,
    covered: np.ndarray | None = None,
) -> Fit:
    """`check_layout` in colour (`colour_fits`): the query's colour thumbnail, turned, in the window."""
    height, width = bank.shape[:2]
    left, top = round(box[0] * width), round(box[1] * height)
    right, bottom = max(left + 8, round(box[2] * width)), max(top + 8, round(box[3] * height))
    window = bank[top:bottom, left:right]
    turned = oriented_colour(seen, turn)
    compared = ~_resized_mask(_left_out(turned, covered, turn), (window.shape[1], window.shape[0]))
    turned = cv2.resize(turned, (window.shape[1], window.shape[0]), interpolation=cv2.INTER_AREA)
    return colour_fits(turned, window, compared, shared)


def monochrome(colour: np.ndarray) -> bool:
    """Whether a colour thumbnail's colours follow from its brightness alone (grey, sepia, a duotone):
    each channel, fitted as a quadratic of the grey, within MONOCHROME_LEVELS on average. Colours are
    then not compared: they were made from the grey."""
    grey = cv2.cvtColor(colour, cv2.COLOR_RGB2GRAY).reshape(-1).astype(np.float64) / 255.0
    design = np.stack([np.ones_like(grey), grey, grey * grey], axis=1)
    for c in range(3):
        y = colour[..., c].reshape(-1).astype(np.float64)
        coefficients, *_ = np.linalg.lstsq(design, y, rcond=None)
        if float(np.abs(design @ coefficients - y).mean()) > MONOCHROME_LEVELS:
            return False
    return True


def hueless(colour: np.ndarray) -> bool:
    """Whether a colour thumbnail holds no hue of its own, however washed out: its channels, each fitted
    as a quadratic of the grey, within HUELESS_SHARE of the grey's range on average, and within
    MONOCHROME_LEVELS (`monochrome` counts levels alone, which a washed-out colour copy keeps few of: a
    hue-swapped look-alike at low contrast misfits by 1.1-1.6 levels, under MONOCHROME_LEVELS)."""
    grey = cv2.cvtColor(colour, cv2.COLOR_RGB2GRAY).reshape(-1).astype(np.float64)
    low, high = np.percentile(grey, (1, 99))
    design = np.stack([np.ones_like(grey), grey / 255.0, (grey / 255.0) ** 2], axis=1)
    misfit = 0.0
    for c in range(3):
        y = colour[..., c].reshape(-1).astype(np.float64)
        coefficients, *_ = np.linalg.lstsq(design, y, rcond=None)
        misfit = max(misfit, float(np.abs(design @ coefficients - y).mean()))
    return misfit <= min(MONOCHROME_LEVELS, HUELESS_SHARE * max(float(high - low), 1.0))


def _contained_copy(colour: Image.Image) -> np.ndarray:
    """A query's colour copy at CONTAINED_SIDE, for `LayoutIndex.contained_match`."""
    array = np.asarray(colour if colour.mode == "RGB" else colour.convert("RGB"), dtype=np.float32)
    return _contained_copy_array(array)


def _contained_copy_array(array: np.ndarray) -> np.ndarray:
    height, width = array.shape[:2]
    scale = CONTAINED_SIDE / max(height, width)
    size = (max(8, round(width * scale)), max(8, round(height * scale)))
    return cv2.resize(array.astype(np.float32), size, interpolation=cv2.INTER_AREA)


class LayoutIndex:
    """The window layouts of banked smooth pictures, searched by one matrix product."""

    def __init__(self) -> None:
        self._keys: list[str] = []
        self._blocks: list[np.ndarray] = []
        self._crop_blocks: list[np.ndarray] = []
        self._thumbnails: list[np.ndarray] = []
        self._colours: list[np.ndarray | None] = []
        self._matrix: np.ndarray | None = None
        self._crop_matrix: np.ndarray | None = None
        self._small: list[np.ndarray | None] = []
        self._generic: list[bool] = []

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, key: str, grey: Image.Image, colour: Image.Image | None = None) -> None:
        """A banked smooth picture: its grey copy, and its colour one when there is (the colour checks)."""
        self._keys.append(key)
        crops = window_layouts(grey, _CROP_BOXES)
        self._blocks.append(crops[_WINDOW_ROWS])  # the same windows, the same layouts: not made twice
        self._crop_blocks.append(crops)
        self._thumbnails.append(thumbnail(grey))
        self._colours.append(colour_thumbnail(colour) if colour is not None else None)
        self._generic.append(is_generic(grey))
        self._matrix = None
        self._crop_matrix = None

    def keys(self) -> list[str]:
        return list(self._keys)

    def region_match(
        self,
        views: list[Image.Image],
        boxes: list[Box],
        colour_of: Callable[[], Image.Image | None],
        covered: Sequence[np.ndarray | None] = (),
    ) -> tuple[str, RegionCheck] | None:
        """A crop or covered copy of a banked smooth picture, found by searching for the query inside it.

        The banked pictures whose crop windows' layouts correlate best with the query's (at
        REGION_SHORTLIST or more, REGION_CANDIDATES of them) are searched: the query view, turned as it
        matched, is placed in the banked picture at a few sizes around the window's
        (`cv2.matchTemplate`), and where it fits best the pictures must agree pixel by pixel, in grey and
        in every colour channel (`region_check`). `boxes` are the views' boxes in `colour`, as fractions.
        Without a colour copy of the query (or of the banked picture) no region match is made: grey
        alone lets soft look-alikes through. `covered` holds, for a view (by index) painted over what a copy
        pasted on it (`inset.painted`), the mask of those pixels: its checks leave them out."""
        if not self._keys:
            return None
        if self._crop_matrix is None:
            self._crop_matrix = np.ascontiguousarray(np.concatenate(self._crop_blocks).T)
        products = np.einsum("qd,dw->qw", query_layouts(views), self._crop_matrix)
        per_window = len(_CROP_BOXES)
        best = products.reshape(products.shape[0], len(self._keys), per_window)
        flat = best.transpose(1, 0, 2).reshape(len(self._keys), -1)
        order = np.argsort(-flat.max(axis=1))[:REGION_CANDIDATES]
        for picture in order.tolist():
            bank_colour = self._colours[picture]
            at = int(np.argmax(flat[picture]))
            if flat[picture, at] < REGION_SHORTLIST or bank_colour is None:
                continue
            colour = colour_of()
            if colour is None:
                return None
            for tried in self._region_tries(flat[picture], at):
                row, window = divmod(tried, per_window)
                view, turn = divmod(row, 8)
                seen_colour = oriented_colour(colour_thumbnail(crop_fraction(colour, boxes[view])), turn)
                mask = covered[view] if view < len(covered) else None
                check = region_check(
                    seen_colour,
                    self._thumbnails[picture],
                    bank_colour,
                    _CROP_BOXES[window],
                    self._generic[picture],
                    None if mask is None else oriented(mask, turn),
                )
                if check is not None and check.accepted:
                    return self._keys[picture], check
        return None

    @staticmethod
    def _region_tries(scores: np.ndarray, best: int) -> list[int]:
        """Where a banked picture is searched for the query (indices of `scores`: view, turn, crop window):
        its best layout correlation; then, each if shortlisted too, the best window of the same view in
        the mirror image of that turn, and, when the best is in a turned or mirrored orientation, the best
        one as the query is (turn 0 of any view). A near-symmetric subject (a ball, a figure, a soft sky)
        lets the layout, high-passed grey, score a copy and its mirror image alike, and placed the wrong
        way round its colours part: final18's crop agreed 0.95 mirrored and 0.99 as it is, final23's
        mirrored chain of a ball 0.45 as it is and 0.97 mirrored."""
        per_window = len(_CROP_BOXES)
        per_view = 8 * per_window
        tries = [best]
        view, rest = divmod(best, per_view)
        turn = rest // per_window
        mirrored = scores[
            view * per_view + (turn ^ 1) * per_window : view * per_view + ((turn ^ 1) + 1) * per_window
        ]
        if float(mirrored.max()) >= REGION_SHORTLIST:
            tries.append(view * per_view + (turn ^ 1) * per_window + int(np.argmax(mirrored)))
        if turn != 0:
            unturned = scores.reshape(-1, 8, per_window)[:, 0, :]
            at, window = np.unravel_index(int(np.argmax(unturned)), unturned.shape)
            tried = int(at) * per_view + int(window)
            if unturned[at, window] >= REGION_SHORTLIST and tried not in tries:
                tries.append(tried)
        return tries

    def contained_match(
        self, small_of: Callable[[], Image.Image | None], colour_of: Callable[[], Image.Image | None]
    ) -> tuple[str, RegionCheck] | None:
        """A banked smooth picture shown whole inside the query, at a smaller size (on a larger canvas,
        on a blurred copy of itself, in a post): each banked picture is placed in a CONTAINED_SIDE colour
        copy of the query (`small_of`) at CONTAINED_SCALES of the largest size that fits
        (`cv2.matchTemplate`, in colour: pastel colours can share one grey); where one fits best (at
        MIN_CONTAINED_PLACEMENT or more) the query's piece there, from its larger colour copy
        (`colour_of`), must agree with it in grey and in every colour channel (`RegionCheck.accepted`),
        as placed or once placed again at the compared thumbnails' resolution (`_refined_box`)."""
        if not self._keys:
            return None
        query = small_of()
        if query is None:
            return None
        small = _contained_copy(query)
        best: tuple[float, int, int, int, int, int] | None = None
        for picture, bank in enumerate(self._small_colours()):
            if bank is None:
                continue
            fit_scale = min(small.shape[1] / bank.shape[1], small.shape[0] / bank.shape[0])
            for scale in CONTAINED_SCALES:
                w, h = round(bank.shape[1] * fit_scale * scale), round(bank.shape[0] * fit_scale * scale)
                if w < 8 or h < 8:
                    continue
                score, x, y = best_placement(small, bank, w, h)
                if best is None or score > best[0]:
                    best = (score, picture, x, y, w, h)
        if best is None or best[0] < MIN_CONTAINED_PLACEMENT:
            return None
        score, picture, x, y, w, h = best
        colour, bank_colour = colour_of(), self._colours[picture]
        if colour is None or bank_colour is None:
            return None
        box = (x / small.shape[1], y / small.shape[0], (x + w) / small.shape[1], (y + h) / small.shape[0])
        check = self._contained_check(picture, colour, box, score)
        if not check.accepted:
            slack = (CONTAINED_REFINE / small.shape[1], CONTAINED_REFINE / small.shape[0])
            refined = _refined_box(colour, box, self._thumbnails[picture], slack)
            if refined is not None and refined[0] >= MIN_CONTAINED_PLACEMENT:
                check = self._contained_check(picture, colour, refined[1], refined[0])
        return (self._keys[picture], check) if check.accepted else None

    def _contained_check(self, picture: int, colour: Image.Image, box: Box, score: float) -> RegionCheck:
        bank, bank_colour = self._thumbnails[picture], self._colours[picture]
        assert bank_colour is not None
        seen = colour_thumbnail(crop_fraction(colour, box))
        compared = ~_resized_mask(text_mask(seen), (bank.shape[1], bank.shape[0]))
        seen = cv2.resize(seen, (bank.shape[1], bank.shape[0]), interpolation=cv2.INTER_AREA)
        grey_fit = fits(cv2.cvtColor(seen, cv2.COLOR_RGB2GRAY), bank, compared)
        tinted = colour_fits(seen, bank_colour, compared, self._generic[picture])
        return _region(score, 1.0, grey_fit, tinted, relief(bank_colour))

    def _small_colours(self) -> list[np.ndarray | None]:
        if len(self._small) != len(self._colours):
            self._small = [None if c is None else _contained_copy_array(c) for c in self._colours]
        return self._small

    def whole_fit(
        self,
        key: str,
        views: list[Image.Image],
        boxes: list[Box],
        colour_of: Callable[[], Image.Image | None],
        enough: float | None = None,
    ) -> Fit:
        """The best agreement of a query's views (in their eight turns, each stretched over the whole
        banked picture) with the banked picture of `key`: share within 12 levels, in grey, and in every
        colour channel when both colour copies are there (the less of the two), of the pixels and of the
        banked picture's structure (`Fit`; the best share among those whose structure agrees). For a PDQ
        hit on a smooth banked picture, whose bits soft look-alikes can share.

        With `enough`, the first fit that `holds(enough)` is returned: the best one holds then too (it
        agrees over the structure and over at least as many pixels), so `holds(enough)` is the same,
        for a fraction of the turns."""
        best = NO_FIT
        colour = colour_of()

        def compared(picture: int) -> bool:
            # A generic picture's hues must hold: without both colour copies it is not compared at all.
            return not self._generic[picture] or (colour is not None and self._colours[picture] is not None)

        tinted: dict[int, np.ndarray] = {}
        for picture, index, turn, seen in self._whole_views(key, views, compared):
            bank, bank_colour = self._thumbnails[picture], self._colours[picture]
            full = np.ones(bank.shape, dtype=bool)
            fit = fits(seen, bank, full)
            if _better(fit, best) and colour is not None and bank_colour is not None:
                if index not in tinted:
                    tinted[index] = colour_thumbnail(crop_fraction(colour, boxes[index]))
                turned = cv2.resize(
                    oriented_colour(tinted[index], turn),
                    (bank.shape[1], bank.shape[0]),
                    interpolation=cv2.INTER_AREA,
                )
                fit = fit.worst(colour_fits(turned, bank_colour, full, self._generic[picture]))
            best = fit if _better(fit, best) else best
            if enough is not None and best.holds(enough):
                log.debug("whole %s: holds at grey %.3f subject %.3f", key, best.share, best.subject)
                return best
        log.debug("whole %s: grey %.3f subject %.3f", key, best.share, best.subject)
        return best

    def _whole_views(
        self, key: str, views: list[Image.Image], compared: Callable[[int], bool]
    ) -> Iterator[tuple[int, int, int, np.ndarray]]:
        """Each view of a query in its eight turns, its grey thumbnail stretched over each banked picture
        of `key` that is `compared` (by its index): (picture, view index, turn, the stretched view), the
        pictures, views and turns in that order (`whole_fit`, `monochrome_fit`)."""
        for picture, owner in enumerate(self._keys):
            if owner != key or not compared(picture):
                continue
            height, width = self._thumbnails[picture].shape
            for index, view in enumerate(views):
                grey = thumbnail(view)
                for turn in range(8):
                    yield (
                        picture,
                        index,
                        turn,
                        cv2.resize(oriented(grey, turn), (width, height), interpolation=cv2.INTER_AREA),
                    )

    def monochrome_fit(
        self, key: str, views: list[Image.Image], colour_of: Callable[[], Image.Image | None]
    ) -> Fit:
        """The best grey agreement (`whole_fit`'s, grey alone) of a monochrome query's views with the
        generic banked picture of `key`: NO_FIT when the query is in colour (its hues must then hold, as
        in every other check) or `key` has no generic picture. See MIN_MONOCHROME_FIT."""
        colour = colour_of()
        if colour is not None and not hueless(colour_thumbnail(colour)):
            return NO_FIT
        best = NO_FIT
        for picture, _, _, seen in self._whole_views(key, views, lambda picture: self._generic[picture]):
            bank = self._thumbnails[picture]
            fit = fits(seen, bank, np.ones(bank.shape, dtype=bool))
            best = fit if _better(fit, best) else best
        log.debug("monochrome %s: grey %.3f subject %.3f", key, best.share, best.subject)
        return best

    def scores(self, views: list[Image.Image]) -> dict[str, float]:
        """Each banked key's best layout correlation with the query's views."""
        if not self._keys:
            return {}
        if self._matrix is None:
            self._matrix = np.ascontiguousarray(np.concatenate(self._blocks).T)
        # einsum, not BLAS: a product this small gains nothing from BLAS threads, which on a loaded
        # machine spin for their time slices (1.4 ms became 25 ms in the benchmark).
        products = np.einsum("qd,dw->qw", query_layouts(views), self._matrix)
        per_key = products.max(axis=0).reshape(len(self._keys), -1).max(axis=1)
        out: dict[str, float] = {}
        for key, score in zip(self._keys, per_key.tolist(), strict=True):
            out[key] = max(out.get(key, -1.0), score)
        return out

    def match(
        self,
        views: list[Image.Image],
        threshold: float = LAYOUT_MATCH,
        min_fit: float = MIN_LAYOUT_FIT,
        boxes: Sequence[Box] = (),
        colour_of: Callable[[], Image.Image | None] | None = None,
        covered: Sequence[np.ndarray | None] = (),
    ) -> tuple[str, float] | None:
        """The banked key whose layout correlates best with the query's, if at `threshold` or more and the
        pictures agree pixel by pixel there: `check_layout`, in the view, turn and window that matched, at
        `min_fit` or more; and, given the query's colour copy (`colour_of`, with the views' `boxes`) and
        unless it is monochrome, in every colour channel at MIN_COLOUR_FIT or more (soft look-alikes share
        a figure's outline and tones in grey, seldom its colours). `covered`: as in `region_match`."""
        if not self._keys:
            return None
        if self._matrix is None:
            self._matrix = np.ascontiguousarray(np.concatenate(self._blocks).T)
        products = np.einsum("qd,dw->qw", query_layouts(views), self._matrix)
        row, column = np.unravel_index(int(np.argmax(products)), products.shape)
        score = float(products[row, column])
        if score < threshold:
            return None
        picture, window = divmod(int(column), self._matrix.shape[1] // len(self._keys))
        view, turn = divmod(int(row), 8)
        mask = covered[view] if view < len(covered) else None
        fit = check_layout(views[view], turn, self._thumbnails[picture], _BOXES[window], mask)
        log.debug(
            "layout %s: score %.3f grey %.3f subject %.3f", self._keys[picture], score, fit.share, fit.subject
        )
        if not fit.holds(min_fit):
            return None
        bank_colour, generic = self._colours[picture], self._generic[picture]
        colour = colour_of() if colour_of is not None and bank_colour is not None else None
        if colour is not None and bank_colour is not None and view < len(boxes):
            seen = colour_thumbnail(crop_fraction(colour, boxes[view]))
            if generic or not monochrome(seen):
                tinted = check_layout_colour(seen, turn, bank_colour, _BOXES[window], generic, mask)
                log.debug("layout colour: %.3f subject %.3f", tinted.share, tinted.subject)
                if not tinted.holds(MIN_COLOUR_FIT):
                    return None
        elif generic:
            return None
        return self._keys[picture], score


@dataclass(frozen=True, slots=True)
class LocalCheck:
    """A local match looked at again, pair by pair against one banked picture: how many pairs agree on
    one affine map, how much of the banked picture they span, and how well the query, mapped onto the
    banked picture by that map, agrees with it where they overlap."""

    inliers: int
    spread: float
    """Area of the inliers' bounding box over the overlap's, in the banked picture (0-1)."""
    agreement: float
    """Correlation of the high-passed pictures over their overlap (-1 to 1)."""
    raw: float
    """The same without the high-pass."""
    fits: tuple[float, float, float]
    """Share of the overlap where the mapped query, its tones fitted to the banked picture's (a quadratic
    map: contrast, brightness, gamma), is within 8, 12 and 16 grey levels of it."""
    inside: float
    """How much of the query lies inside the banked picture once mapped (a crop: all of it), or of the
    banked picture inside the query (a screenshot, a letterbox: all of it), whichever is more (0-1)."""
    colour: float = 1.0
    """`colour_fit` over the overlap, when both colour thumbnails were given and the query's is not
    monochrome; 1 otherwise."""
    subject: float = 1.0
    """The share within 12 levels (grey, and colour when compared) weighed by the banked picture's
    structure (`Fit.subject`): the least of the two."""


def thumbnail(grey: Image.Image) -> np.ndarray:
    """A grey copy at VERIFY_SIDE on its longest side, as floats: what the checks compare."""
    array = np.asarray(_grey(grey))
    height, width = array.shape
    scale = VERIFY_SIDE / max(height, width)
    size = (max(8, round(width * scale)), max(8, round(height * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.resize(array, size, interpolation=interpolation).astype(np.float32)


class SeenOnce:
    """What `check_local` derives from a query's thumbnails alone, its `text_mask` and whether its colour
    thumbnail is `monochrome`, made when first asked and kept: a local match to a smooth cluster is
    checked against each of the cluster's pictures in turn, with the same thumbnails."""

    __slots__ = ("_colour", "_monochrome", "_seen", "_text")

    def __init__(self, seen: np.ndarray, seen_colour: np.ndarray | None) -> None:
        self._seen = seen
        self._colour = seen_colour
        self._text: np.ndarray | None = None
        self._monochrome: bool | None = None

    def text(self) -> np.ndarray:
        if self._text is None:
            self._text = text_mask(self._seen)
        return self._text

    def monochrome(self) -> bool:
        """`monochrome` of the colour thumbnail (asked only when there is one)."""
        if self._monochrome is None:
            if self._colour is None:
                raise ValueError("no colour thumbnail to judge")
            self._monochrome = monochrome(self._colour)
        return self._monochrome


def check_local(
    query: Features,
    seen: np.ndarray,
    banked: Sequence[Features],
    bank: np.ndarray,
    seen_colour: np.ndarray | None = None,
    bank_colour: np.ndarray | None = None,
    generic: bool = False,
    derived: SeenOnce | None = None,
) -> LocalCheck | None:
    """The best affine fit of a query's features to a banked picture's (as is, or mirrored: `banked` is
    `with_mirror`'s pair), checked on the pictures themselves (their `thumbnail`s: `seen` and `bank`; see
    LocalCheck). None when no plausible fit. `derived`: what was derived from `seen` and `seen_colour`
    alone for an earlier banked picture (`SeenOnce`), kept for the next."""
    derived = SeenOnce(seen, seen_colour) if derived is None else derived
    best: tuple[int, np.ndarray, np.ndarray, int] | None = None
    for variant, found in enumerate(banked):
        if len(found) < 2 or len(query) < 2:
            continue
        queries, trains = ratio_pairs(query.descriptors, found.descriptors, PAIR_RATIO)
        if len(queries) < 3:
            continue
        if best is not None and len(queries) <= best[0]:
            continue  # its inliers, at most its pairs, cannot beat the best fit's
        source = query.points[queries]
        target = found.points[trains]
        model, mask = cv2.estimateAffine2D(
            source, target, method=cv2.RANSAC, ransacReprojThreshold=FIT_PIXELS, maxIters=500
        )
        if model is None or mask is None:
            continue
        inliers = int(mask.sum())
        if best is None or inliers > best[0]:
            best = (inliers, model, target[mask.reshape(-1).astype(bool)], variant)
    if best is None:
        return None
    inliers, model, points, variant = best
    if variant == 1:
        bank = np.ascontiguousarray(bank[:, ::-1])
    k = VERIFY_SIDE / SIDE
    scaled = model.astype(np.float32).copy()
    scaled[:, 2] *= k
    size = (bank.shape[1], bank.shape[0])
    warped = cv2.warpAffine(seen, scaled, size, flags=cv2.INTER_LINEAR)
    cover = cv2.warpAffine(np.ones_like(seen), scaled, size, flags=cv2.INTER_NEAREST)
    covered = cv2.erode(cover, np.ones((3, 3), np.uint8)) > 0.5
    text = cv2.warpAffine(derived.text().astype(np.uint8), scaled, size, flags=cv2.INTER_NEAREST) > 0
    compared = covered & ~text
    if compared.sum() < 64:
        return LocalCheck(inliers, 0.0, 0.0, 0.0, (0.0, 0.0, 0.0), 0.0, 0.0, 0.0)
    # The query's own pixels that land inside the banked picture: the banked frame mapped back.
    back = cv2.warpAffine(
        np.ones_like(bank),
        scaled,
        (seen.shape[1], seen.shape[0]),
        flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
    )
    inside = max(float(back.mean()), float(covered.mean()))
    ys, xs = np.nonzero(covered)
    overlap = float((xs.max() - xs.min() + 1) * (ys.max() - ys.min() + 1)) / (k * k)
    span = float(np.ptp(points[:, 0]) * np.ptp(points[:, 1]))
    colour = NO_FIT if generic else Fit(1.0, 1.0)
    if seen_colour is not None and bank_colour is not None and (generic or not derived.monochrome()):
        if variant == 1:
            bank_colour = np.ascontiguousarray(bank_colour[:, ::-1])
        colour = colour_fits(
            cv2.warpAffine(seen_colour, scaled, size, flags=cv2.INTER_LINEAR), bank_colour, compared, generic
        )
    grey, residual = _fit_residual(warped, bank, compared)
    log.debug(
        "local: grey %.3f subject %.3f, colour %.3f subject %.3f",
        grey.share,
        grey.subject,
        colour.share,
        colour.subject,
    )
    return LocalCheck(
        inliers,
        min(1.0, span / max(overlap, 1.0)),
        _masked_correlation(_high_pass(warped), _high_pass(bank), compared),
        _masked_correlation(warped, bank, compared),
        _tone_shares(residual),
        inside,
        colour.share,
        min(grey.subject, colour.subject),
    )


def text_mask(seen: np.ndarray) -> np.ndarray:
    """Where a query's thumbnail (grey or colour, at VERIFY_SIDE) holds text-like detail: cells dense with
    sharp pixels (TEXT_BUSY) in groups (`inset.text_cells`), grown by a cell for outlines and JPEG
    ringing. A smooth picture has none, so what the checks compare there is the caption, sticker text or
    chrome a copy added, not the banked picture: the checks leave it out (`~text_mask`). All False when
    over MAX_TEXT of it would go."""
    grey = cv2.cvtColor(seen, cv2.COLOR_RGB2GRAY) if seen.ndim == 3 else seen
    sharp = np.abs(cv2.Laplacian(grey.astype(np.float32), cv2.CV_32F, ksize=1)) > TEXT_SHARP
    height, width = sharp.shape
    rows, columns = -(-height // TEXT_CELL), -(-width // TEXT_CELL)
    padded = np.zeros((rows * TEXT_CELL, columns * TEXT_CELL), dtype=bool)
    padded[:height, :width] = sharp
    busy = text_cells(padded.reshape(rows, TEXT_CELL, columns, TEXT_CELL).mean(axis=(1, 3)) > TEXT_BUSY)
    nothing = np.zeros(sharp.shape, dtype=bool)
    if not busy.any():
        return nothing
    grown = cv2.dilate(busy.astype(np.uint8), np.ones((3, 3), np.uint8))
    mask: np.ndarray = np.kron(grown, np.ones((TEXT_CELL, TEXT_CELL), np.uint8))[:height, :width] > 0
    return nothing if mask.mean() > MAX_TEXT else mask


def _left_out(seen: np.ndarray, covered: np.ndarray | None, turn: int = 0) -> np.ndarray:
    """What a check leaves out of a query's (turned) thumbnail `seen`: its text (`text_mask`), and what
    `covered` (a mask over the query as it is, any size) marks as pasted over it, turned alike."""
    left = text_mask(seen)
    if covered is None:
        return left
    over = _resized_mask(oriented(covered, turn), (seen.shape[1], seen.shape[0]))
    out: np.ndarray = left | over
    return out


def _resized_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A boolean mask resized to `size` (width, height), a pixel kept where any of it was set."""
    resized: np.ndarray = cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
    return resized


def tone_fit(seen: np.ndarray, bank: np.ndarray, mask: np.ndarray) -> tuple[float, float, float]:
    """Share of `mask` where `seen`, mapped to `bank`'s tones by a least-squares quadratic, is within 8, 12
    and 16 grey levels of `bank` (see LocalCheck.fits)."""
    return _tone_shares(_tone_residual(seen, bank, mask))


def _tone_shares(residual: np.ndarray) -> tuple[float, float, float]:
    return float(np.mean(residual <= 8)), float(np.mean(residual <= 12)), float(np.mean(residual <= 16))


def _tone_residual(seen: np.ndarray, bank: np.ndarray, mask: np.ndarray) -> np.ndarray:
    fitted, target = _tone_fitted(seen, bank, mask)
    residual: np.ndarray = np.abs(fitted - target)[mask]
    return residual


def _tone_fitted(seen: np.ndarray, bank: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`seen` (smoothed) mapped to `bank`'s tones by the least-squares quadratic fitted over `mask`, and
    `bank` smoothed alike: whole arrays, so that they can be compared a pixel off too."""
    x = cv2.GaussianBlur(seen, (0, 0), TONE_BLUR).astype(np.float64) / 255.0
    y = cv2.GaussianBlur(bank, (0, 0), TONE_BLUR).astype(np.float64)
    clipped = _clipped(x, mask)
    # Pixels the copy clipped say nothing of its tone curve: fitted on the others (see CLIPPED_HIGH).
    fitted_on = mask if clipped is None else mask & ~(clipped[0] | clipped[1])
    design = np.stack([np.ones_like(x[fitted_on]), x[fitted_on], x[fitted_on] * x[fitted_on]], axis=1)
    coefficients, *_ = np.linalg.lstsq(design, y[fitted_on], rcond=None)
    fitted = coefficients[0] + coefficients[1] * x + coefficients[2] * x * x
    return _bounded(fitted, y, clipped), y


CLIPPED_HIGH = 250.0 / 255.0
CLIPPED_LOW = 5.0 / 255.0
"""A copy's (smoothed) channel at or above CLIPPED_HIGH, or at or below CLIPPED_LOW, is clipped: a filter
that brightened and raised contrast pushed it past white (or black), so its level says only that the
original was at least (at most) as bright as the fit of the copy's other pixels predicts there."""
MIN_UNCLIPPED = 0.25
"""The least share of the compared pixels a channel must keep unclipped for the tone fit to leave its clipped
pixels out: where most of a copy is clipped, too little is left to fit (a white or black picture would
agree with any bright or dark part), and the fit is made as before, over every pixel."""
MIN_UNCLIPPED_CHANNEL = 0.05
"""The same for one channel of the per-channel colour fit where the copy's grey keeps MIN_UNCLIPPED
unclipped: that fit also takes a share of the grey, so the picture's other channels carry it, and its
four coefficients need a few hundred pixels (one in twenty of a 128 px thumbnail is about 600). A
filter that brightened a blue sky with saturation x1.6 left its blue channel 94 % clipped, its red and
green 80 % unclipped (final21's `soft-sky-0/colour`, fitted over every pixel: colour 0.73). A white
picture's grey is clipped too, so this never applies to one."""


PLATEAU_BAND = 8.0
PLATEAU_SHARE = 0.10
PLATEAU_TOP = 0.8
"""A filter that brightens clips a pastel picture's channels at white, and the contrast, saturation or
gamma applied after it move the clipped pixels off white together, to a plateau under CLIPPED_HIGH
(final23's recoloured chains: brightness x1.18-1.25, then contrast, saturation x0.5-1.4 and gamma; a
brightened sky 78 % at its channel's top, none of it at 250). Where a channel's top level (at PLATEAU_TOP
or more: a bright channel) holds PLATEAU_SHARE of the compared pixels within PLATEAU_BAND levels, those
pixels are taken as clipped there (`_plateaus`), bounding rather than fitting the map, in the colour
checks' last try (`colour_fits`)."""
RESIDUAL_BLUR = 2.0
"""Sigma (at VERIFY_SIDE) over which that last try averages the colour misfit before it counts pixels
within 12 levels (`_averaged_agreement`). A re-encode at JPEG quality 20 leaves blocks of chroma error
(16 px of the file, 4-10 of a thumbnail for copies of 200-500 px) that a desaturated copy's map, which
scales its chroma back up, amplifies past 12 levels pixel by pixel (final23's chains, re-encoded at 20-21
after a recolour, agreed in colour over 0.45-0.78 as fitted); averaged, it falls under."""


def _clipped(
    x: np.ndarray,
    mask: np.ndarray,
    least: float = MIN_UNCLIPPED,
    high_level: float | np.ndarray = CLIPPED_HIGH,
) -> tuple[np.ndarray, np.ndarray] | None:
    """Where `x` (a smoothed channel, 0 to 1) is clipped high and low, or None where too little of `mask`
    is left unclipped (`least`, MIN_UNCLIPPED unless told) or nothing is clipped. `high_level`: the level
    from which it is clipped high (CLIPPED_HIGH, or each channel's `_plateaus`)."""
    high, low = x >= high_level, x <= CLIPPED_LOW
    clipped = (high | low)[mask]
    if not clipped.any() or float(np.mean(~clipped)) < least:
        return None
    return high, low


def _bounded(
    fitted: np.ndarray, target: np.ndarray, clipped: tuple[np.ndarray, np.ndarray] | None
) -> np.ndarray:
    """`fitted` where the copy was not clipped; where it was clipped high, the banked level itself if that
    is at least the fitted one (a clipped pixel only bounds the original from below), and low alike."""
    if clipped is None:
        return fitted
    high, low = clipped
    bounded = np.where(high & (target > fitted), target, fitted)
    return np.where(low & (target < bounded), target, bounded)


def _shifted_residual(fitted: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The least residual (largest over channels, for colour arrays) between `target` and `fitted` moved
    by up to SUBJECT_SHIFT pixels each way: a copy mapped a pixel off still agrees on an edge."""
    r = SUBJECT_SHIFT
    # Channels as planes (channels x height x width): the largest over channels is then an elementwise
    # maximum of whole planes, not a reduction over a last axis of three (a third of the cost; same values).
    planes = fitted[None] if fitted.ndim == 2 else np.moveaxis(fitted, -1, 0)
    goal = target[None] if target.ndim == 2 else np.ascontiguousarray(np.moveaxis(target, -1, 0))
    padded = np.pad(planes, ((0, 0), (r, r), (r, r)), mode="edge")
    height, width = goal.shape[1:]
    best = np.full((height, width), np.inf)
    residual = np.empty_like(goal, dtype=np.result_type(padded, goal))
    for dy in range(2 * r + 1):
        for dx in range(2 * r + 1):
            np.subtract(padded[:, dy : dy + height, dx : dx + width], goal, out=residual)
            np.abs(residual, out=residual)
            np.minimum(best, np.maximum.reduce(residual, axis=0), out=best)
    return best


def structure_weights(bank: np.ndarray) -> np.ndarray:
    """Each pixel of a banked thumbnail (grey, or colour: its most detailed channel) weighed by its detail:
    its high-passed magnitude (VERIFY_BLUR) less SUBJECT_FLOOR levels. Its subject, edges, hill lines and
    clouds weigh; a flat or smoothly graded background weighs nothing."""
    if bank.ndim == 3:
        detail = np.max(np.stack([np.abs(_high_pass(bank[..., c])) for c in range(3)]), axis=0)
    else:
        detail = np.abs(_high_pass(bank))
    weights: np.ndarray = np.clip(detail - SUBJECT_FLOOR, 0.0, SUBJECT_CAP)
    return weights


def _better(fit: Fit, than: Fit) -> bool:
    """Whether `fit` is a better agreement: its structure agrees where `than`'s does not, or as well and
    more of its pixels do."""
    return (fit.subject >= MIN_SUBJECT_FIT, fit.share) > (than.subject >= MIN_SUBJECT_FIT, than.share)


def _weighted_share(agree: np.ndarray, weights: np.ndarray) -> float:
    total = float(weights.sum())
    return float((weights * agree).sum() / total) if total >= MIN_SUBJECT_WEIGHT else 0.0


def fits(seen: np.ndarray, bank: np.ndarray, mask: np.ndarray) -> Fit:
    """`tone_fit`'s share within 12 grey levels over `mask`, and the same weighed by the banked picture's
    structure (`structure_weights`): its `subject` share."""
    return _fit_residual(seen, bank, mask)[0]


def _fit_residual(seen: np.ndarray, bank: np.ndarray, mask: np.ndarray) -> tuple[Fit, np.ndarray]:
    """`fits`, and the residual over `mask` its share counts (`_tone_residual`'s), from one tone fit:
    `check_local` reports `tone_fit` too, which fitted the tones a second time."""
    fitted, target = _tone_fitted(seen, bank, mask)
    residual: np.ndarray = np.abs(fitted - target)[mask]
    share = float(np.mean(residual <= 12))
    close = _shifted_residual(fitted, target)[mask] <= 12
    return Fit(share, _weighted_share(close, structure_weights(bank)[mask])), residual


@dataclass(frozen=True, slots=True)
class Fit:
    """How a query agrees with a banked picture where it was placed: `share` of the pixels, and `subject`,
    the share weighed by the banked picture's structure (see MIN_SUBJECT_FIT)."""

    share: float
    subject: float

    def holds(self, least: float) -> bool:
        return self.share >= least and self.subject >= MIN_SUBJECT_FIT

    def worst(self, other: Fit) -> Fit:
        return Fit(min(self.share, other.share), min(self.subject, other.subject))


NO_FIT = Fit(0.0, 0.0)


def _high_pass(array: np.ndarray) -> np.ndarray:
    return array - cv2.GaussianBlur(array, (0, 0), VERIFY_BLUR, borderType=cv2.BORDER_REFLECT)


def _masked_correlation(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    x, y = a[mask].astype(np.float64), b[mask].astype(np.float64)
    x -= x.mean()
    y -= y.mean()
    norm = float(np.linalg.norm(x) * np.linalg.norm(y))
    return float(x @ y / norm) if norm > 0 else 0.0


@dataclass(frozen=True, slots=True)
class RegionCheck:
    """A query placed inside a banked smooth picture (`region_check`) and how well they agree there."""

    placement: float
    """Correlation of the query with the banked picture where it was placed (-1 to 1)."""
    area: float
    """Share of the banked picture the placed query covers."""
    grey: float
    """`tone_fit`'s share within 12 grey levels."""
    colour: float
    """`colour_fit`'s share within 12 levels in every channel."""
    subject: float = 1.0
    """The least of the two weighed by the banked picture's structure (`Fit.subject`)."""
    relief: float = float("inf")
    """`relief` of the banked part the query was placed on (see MIN_RELIEF)."""
    held: float = 0.0
    """Share of the banked picture's structure (`structure_weights`) inside the part the query was placed
    on (see DENSE_PIECE); 0 where not measured (a query compared with the whole banked picture)."""

    @property
    def accepted(self) -> bool:
        small = self.area < SMALL_REGION
        return (
            self.relief >= (MIN_SMALL_RELIEF if small else MIN_RELIEF)
            and self.area >= MIN_REGION_AREA
            and self.placement >= (MIN_SMALL_PLACEMENT if small else self._least_placement)
            and self.grey >= (MIN_SMALL_FIT if small else MIN_REGION_FIT)
            and self.colour >= MIN_COLOUR_FIT
            and self.subject >= (MIN_SMALL_SUBJECT if small else MIN_SUBJECT_FIT)
            and (not small or self.held < DENSE_PIECE * self.area or self.subject >= MIN_DENSE_SUBJECT)
        )

    @property
    def _least_placement(self) -> float:
        return MIN_PIECE_PLACEMENT if self.area < PIECE_REGION else MIN_PLACEMENT


def colour_thumbnail(image: Image.Image) -> np.ndarray:
    """A colour copy at VERIFY_SIDE on its longest side, as floats (height x width x 3)."""
    array = np.asarray(image if image.mode == "RGB" else image.convert("RGB"))
    height, width = array.shape[:2]
    scale = VERIFY_SIDE / max(height, width)
    size = (max(8, round(width * scale)), max(8, round(height * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.resize(array, size, interpolation=interpolation).astype(np.float32)


def oriented_colour(array: np.ndarray, turn: int) -> np.ndarray:
    """`oriented` for a colour array."""
    return np.stack([oriented(array[..., c], turn) for c in range(3)], axis=-1)


def crop_fraction(image: Image.Image, box: Box) -> Image.Image:
    left, top = round(box[0] * image.width), round(box[1] * image.height)
    right, bottom = max(left + 1, round(box[2] * image.width)), max(top + 1, round(box[3] * image.height))
    return image.crop((left, top, right, bottom))


def colour_fit(seen: np.ndarray, bank: np.ndarray, mask: np.ndarray) -> float:
    """See `colour_fits`: the share of `mask` alone."""
    return float(_colour_agree(seen, bank, mask).mean()) if mask.any() else 0.0


def colour_fits(
    seen: np.ndarray, bank: np.ndarray, mask: np.ndarray, shared: bool = False, forgiving: bool = True
) -> Fit:
    """`colour_fit` over `mask`, and weighed by the banked picture's structure in colour (`Fit.subject`).
    `forgiving` False leaves out the last try (`_degraded_fit`): a small piece must agree all but exactly."""
    if not mask.any():
        return NO_FIT
    fit = _any_colour_fit(seen, bank, mask, shared, forgiving)
    return _as_recolour(fit, seen, bank, mask, shared) if fit.holds(MIN_COLOUR_FIT) else fit


def _as_recolour(fit: Fit, seen: np.ndarray, bank: np.ndarray, mask: np.ndarray, shared: bool) -> Fit:
    """`fit` (one that holds) where a recolour edit could have made the copy's colours from the banked
    picture's (`colour_explained`, `hues_kept`; for a generic banked picture, `chroma_gain` too);
    otherwise its share cut to the one that failed, under every colour threshold."""
    explained = colour_explained(seen, bank, mask)
    kept = 1.0 if monochrome(seen) else hues_kept(seen, bank, mask)
    gain = chroma_gain(seen, bank, mask) if shared else None
    if (
        explained >= MIN_EXPLAINED
        and (kept is None or kept >= MIN_HUE_KEPT)
        and (gain is None or gain >= MIN_CHROMA_GAIN)
    ):
        return fit
    log.debug("colour: not a recolour (explained %.3f, hues kept %s, chroma gain %s)", explained, kept, gain)
    cut = min(explained, 1.0 if kept is None else kept, 1.0 if gain is None else max(0.0, gain))
    return Fit(min(fit.share, cut), fit.subject)


def chroma_gain(seen: np.ndarray, bank: np.ndarray, mask: np.ndarray) -> float | None:
    """How much of the copy's colour (`seen`, smoothed: each pixel's channels less their mean, its chroma
    in RGB) the map shared by the three channels (`_shared_fitted`, the banked picture fitted from the
    copy) keeps over `mask`: the least-squares gain from the copy's chroma to the map's, 1 for a copy
    as it was. An edit that turned the colour up by k (a saturation, a contrast or a brightening by k,
    each scaling every pixel's chroma) has a gain of about 1/k, more where channels clip; a negative gain
    turns every hue round. None where the copy has too little chroma to say (CHROMA_SPREAD): a grey
    copy. See MIN_CHROMA_GAIN."""
    if not mask.any():
        return None
    fitted, _ = _shared_fitted(seen, bank, mask)
    x = cv2.GaussianBlur(seen, (0, 0), TONE_BLUR).astype(np.float64)[mask]
    spread = x - x.mean(axis=1, keepdims=True)
    energy = float((spread * spread).sum())
    if energy < CHROMA_SPREAD * CHROMA_SPREAD * spread.size:
        return None
    f = fitted[mask]
    return float((spread * (f - f.mean(axis=1, keepdims=True))).sum() / energy)


def colour_explained(seen: np.ndarray, bank: np.ndarray, mask: np.ndarray) -> float:
    """Share of `mask` where the copy's colours (`seen`, smoothed) follow from the banked picture's within
    12 levels in every channel: each channel of the copy fitted by least squares as a quadratic in the
    banked picture's three channels (a colour matrix, its offsets and curves: brightness, contrast,
    saturation, gamma, sepia, a colour profile), fitted again on the pixels within COLOUR_REFIT. The
    colour checks fit the other way, the banked picture from the copy, which any map that merges colours
    satisfies (see MIN_EXPLAINED)."""
    x = cv2.GaussianBlur(bank, (0, 0), TONE_BLUR).astype(np.float64)[mask] / 255.0
    y = cv2.GaussianBlur(seen, (0, 0), TONE_BLUR).astype(np.float64)[mask]
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    design = np.stack([np.ones_like(r), r, g, b, r * r, g * g, b * b, r * g, r * b, g * b], axis=1)
    worst = np.zeros(len(y))
    for c in range(3):
        coefficients, *_ = np.linalg.lstsq(design, y[:, c], rcond=None)
        kept = np.abs(design @ coefficients - y[:, c]) <= COLOUR_REFIT
        if kept.sum() >= 16:
            coefficients, *_ = np.linalg.lstsq(design[kept], y[kept, c], rcond=None)
        worst = np.maximum(worst, np.abs(design @ coefficients - y[:, c]))
    return float(np.mean(worst <= 12)) if len(y) else 0.0


def hues_kept(seen: np.ndarray, bank: np.ndarray, mask: np.ndarray) -> float | None:
    """Share of the chroma over `mask` whose hue the copy kept within HUE_TURN (CIE Lab, both smoothed),
    each pixel weighed by its chroma in both pictures; only pixels coloured in both (HUE_CHROMA) and not
    bright in the banked picture (HUE_HEADROOM) count. None when they are under MIN_HUE_PIXELS of `mask`."""
    copy = cv2.GaussianBlur(seen, (0, 0), TONE_BLUR).astype(np.float32)
    original = cv2.GaussianBlur(bank, (0, 0), TONE_BLUR).astype(np.float32)
    asked = mask & (original.max(axis=-1) <= HUE_HEADROOM)
    a = cv2.cvtColor(np.clip(copy, 0, 255) / 255.0, cv2.COLOR_RGB2Lab)[asked]
    b = cv2.cvtColor(np.clip(original, 0, 255) / 255.0, cv2.COLOR_RGB2Lab)[asked]
    chroma_a, chroma_b = np.hypot(a[:, 1], a[:, 2]), np.hypot(b[:, 1], b[:, 2])
    coloured = (chroma_a >= HUE_CHROMA) & (chroma_b >= HUE_CHROMA)
    if coloured.sum() < MIN_HUE_PIXELS * mask.sum():
        return None
    turn = np.angle(np.exp(1j * (np.arctan2(a[:, 2], a[:, 1]) - np.arctan2(b[:, 2], b[:, 1]))), deg=True)
    weights = np.where(coloured, chroma_a * chroma_b, 0.0)
    return float(weights[np.abs(turn) <= HUE_TURN].sum() / weights.sum())


def _any_colour_fit(
    seen: np.ndarray, bank: np.ndarray, mask: np.ndarray, shared: bool, forgiving: bool
) -> Fit:
    """`colour_fits` before `_as_recolour`: the fitted map, the unchanged colours, the last try."""
    fitted, target = (_shared_fitted if shared else _colour_fitted)(seen, bank, mask)
    weights = structure_weights(bank)[mask]
    fit = _colour_agreement(fitted, target, mask, weights)
    if fit.holds(MIN_COLOUR_FIT):
        return fit
    # The map that leaves colours as they were is one of the maps fitted (a quadratic of each channel and
    # a share of the grey, shared or not), which the least squares can miss: opaque stickers over a third
    # of a ball's ground pulled its fit off the ball a copy kept unchanged (final18). The better of the
    # two: no map outside the family is tried.
    unchanged = _colour_agreement(
        cv2.GaussianBlur(seen, (0, 0), TONE_BLUR).astype(np.float64), target, mask, weights
    )
    best = unchanged if _better(unchanged, fit) else fit
    if best.holds(MIN_COLOUR_FIT) or not forgiving:
        return best
    # Tried last, on copies the fits above refuse: one brightened past white, then toned and re-encoded.
    degraded = _degraded_fit(seen, bank, mask, weights, shared)
    return degraded if _better(degraded, best) else best


def _degraded_fit(
    seen: np.ndarray, bank: np.ndarray, mask: np.ndarray, weights: np.ndarray, shared: bool
) -> Fit:
    """`colour_fits`' last try, for a copy recoloured after it was brightened past white and re-encoded
    hard (final23's chains): its channels' plateaus taken as clipped (`_plateaus`, PLATEAU_BAND), and its
    share of agreeing pixels counted on the misfit averaged over compression blocks (`_averaged_agreement`,
    RESIDUAL_BLUR). The structure must still agree pixel by pixel too (a pixel of slack, as in every
    check), where a look-alike's outline differs. The same map family, the same 12 levels: what it
    forgives is what brightening past white and a hard re-encode destroy, spread over the picture. Not
    tried on small pieces (`region_check` under SMALL_REGION), which must agree all but exactly."""
    fitted, target = (_shared_fitted if shared else _colour_fitted)(seen, bank, mask, plateau=True)
    averaged = _averaged_agreement(fitted, target, mask, weights)
    exact = _colour_agreement(fitted, target, mask, weights)
    return Fit(averaged.share, min(averaged.subject, exact.subject))


def _averaged_agreement(fitted: np.ndarray, target: np.ndarray, mask: np.ndarray, weights: np.ndarray) -> Fit:
    """`_colour_agreement` of the misfit averaged over RESIDUAL_BLUR (within `mask`): compression noise,
    which a hard re-encode leaves over a copy in blocks, averages out; a look-alike's other colours, a
    patch or a band of them, do not."""
    inside = mask.astype(np.float64)
    residual = (fitted - target) * inside[..., None]
    spread = np.maximum(cv2.GaussianBlur(inside, (0, 0), RESIDUAL_BLUR), 1e-6)
    averaged = cv2.GaussianBlur(residual, (0, 0), RESIDUAL_BLUR) / spread[..., None]
    close = np.abs(averaged).max(axis=-1)[mask] <= 12
    return Fit(float(close.mean()), _weighted_share(close, weights))


def _plateaus(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Each channel's level from which a copy's (smoothed, 0-1) pixels count as clipped high: CLIPPED_HIGH,
    or lower where the channel's top (its 99.5th percentile over `mask`, at PLATEAU_TOP or more) holds a
    plateau, PLATEAU_SHARE of the pixels within PLATEAU_BAND levels of it: from there on."""
    levels = np.full(x.shape[-1], CLIPPED_HIGH)
    band = PLATEAU_BAND / 255.0
    for c in range(x.shape[-1]):
        values = x[..., c][mask]
        top = float(np.percentile(values, 99.5))
        if top >= PLATEAU_TOP and float(np.mean(values >= top - band)) >= PLATEAU_SHARE:
            levels[c] = min(CLIPPED_HIGH, top - band)
    return levels


def _colour_agreement(fitted: np.ndarray, target: np.ndarray, mask: np.ndarray, weights: np.ndarray) -> Fit:
    share = float(np.all(np.abs(fitted - target)[mask] <= 12, axis=1).mean())
    close = _shifted_residual(fitted, target)[mask] <= 12
    return Fit(share, _weighted_share(close, weights))


def _colour_agree(seen: np.ndarray, bank: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Over `mask`, where each colour channel of `seen`, mapped to `bank`'s (`_colour_fitted`), is within
    12 levels of it."""
    fitted, target = _colour_fitted(seen, bank, mask)
    inside: np.ndarray = np.all(np.abs(fitted - target)[mask] <= 12, axis=1)
    return inside


def _shared_fitted(
    seen: np.ndarray, bank: np.ndarray, mask: np.ndarray, plateau: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """`_colour_fitted` with one map for the three channels (a quadratic of the channel plus a share of
    the grey: brightness, contrast, gamma, saturation), which cannot turn one hue into another. For a
    generic banked picture (`is_generic`): a flat logo of any colour fits a ball's outline and, channel
    by channel, its colour; only a copy keeps its hues."""
    x = cv2.GaussianBlur(seen, (0, 0), TONE_BLUR).astype(np.float64) / 255.0
    y = cv2.GaussianBlur(bank, (0, 0), TONE_BLUR).astype(np.float64)
    grey = x @ np.array([0.299, 0.587, 0.114])
    columns = [np.ones_like(x), x, x * x, np.repeat(grey[..., None], 3, axis=-1)]
    # The same rows as the columns' masked pixels (pixel by pixel, channel by channel), from the masked
    # pixels of `x` and `grey` alone rather than of four whole images.
    seen_x = x[mask]
    shades = np.repeat(grey[mask][:, None], 3, axis=1)
    design = np.stack([np.ones_like(seen_x), seen_x, seen_x * seen_x, shades], axis=-1).reshape(-1, 4)
    target = y[mask].reshape(-1)
    clipped = _clipped(x, mask, high_level=_plateaus(x, mask) if plateau else CLIPPED_HIGH)
    if clipped is not None:
        # Each channel's clipped pixels left out of the fit (see CLIPPED_HIGH).
        unclipped = ~(clipped[0] | clipped[1])[mask].reshape(-1)
        design, target = design[unclipped], target[unclipped]
    coefficients, *_ = np.linalg.lstsq(design, target, rcond=None)
    kept = np.abs(design @ coefficients - target) <= COLOUR_REFIT
    if kept.sum() >= 16:
        coefficients, *_ = np.linalg.lstsq(design[kept], target[kept], rcond=None)
    fitted = sum(c * column for c, column in zip(coefficients.tolist(), columns, strict=True))
    return _bounded(np.asarray(fitted), y, clipped), y


def _colour_fitted(
    seen: np.ndarray, bank: np.ndarray, mask: np.ndarray, plateau: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Each colour channel of `seen` (smoothed) mapped to `bank`'s by its own least-squares quadratic over
    `mask`, plus a share of the grey (a filter: contrast, brightness, gamma per channel; saturation, which
    moves each channel towards the grey and which a channel's own quadratic cannot follow where the
    picture holds several hues), and `bank` smoothed alike.
    Soft look-alikes share a figure's outline in grey; their colours disagree. The fit is made twice, the
    second time on the pixels the first left within COLOUR_REFIT levels: captions and stickers over a copy
    would otherwise pull its tones off."""
    fitted, target = [], []
    blurred = cv2.GaussianBlur(seen, (0, 0), TONE_BLUR).astype(np.float64) / 255.0
    grey = blurred @ np.array([0.299, 0.587, 0.114])
    grey_kept = float(np.mean(((grey > CLIPPED_LOW) & (grey < CLIPPED_HIGH))[mask]))
    least = MIN_UNCLIPPED_CHANNEL if grey_kept >= MIN_UNCLIPPED else MIN_UNCLIPPED
    levels = _plateaus(blurred, mask) if plateau else np.full(3, CLIPPED_HIGH)
    for c in range(3):
        x = blurred[..., c]
        y = cv2.GaussianBlur(bank[..., c], (0, 0), TONE_BLUR).astype(np.float64)
        clipped = _clipped(x, mask, least, float(levels[c]))
        fitted_on = mask if clipped is None else mask & ~(clipped[0] | clipped[1])
        xm, ym = x[fitted_on], y[fitted_on]
        design = np.stack([np.ones_like(xm), xm, xm * xm, grey[fitted_on]], axis=1)
        coefficients, *_ = np.linalg.lstsq(design, ym, rcond=None)
        residual = np.abs(design @ coefficients - ym)
        kept = residual <= COLOUR_REFIT
        if kept.sum() >= 16:
            coefficients, *_ = np.linalg.lstsq(design[kept], ym[kept], rcond=None)
        a, b, c2, g = coefficients.tolist()
        fitted.append(_bounded(a + b * x + c2 * x * x + g * grey, y, clipped))
        target.append(y)
    return np.stack(fitted, axis=-1), np.stack(target, axis=-1)


def best_placement(within: np.ndarray, picture: np.ndarray, w: int, h: int) -> tuple[float, int, int]:
    """`picture` shrunk to w x h (area resampling) and placed where it correlates best inside `within`
    (normalised cross-correlation, `cv2.matchTemplate`): the correlation there and the top-left corner."""
    template = cv2.resize(picture, (w, h), interpolation=cv2.INTER_AREA)
    _, score, _, (x, y) = cv2.minMaxLoc(cv2.matchTemplate(within, template, cv2.TM_CCOEFF_NORMED))
    return float(score), x, y


def region_check(
    seen: np.ndarray,
    bank: np.ndarray,
    bank_colour: np.ndarray,
    window: Box,
    shared: bool = False,
    covered: np.ndarray | None = None,
) -> RegionCheck | None:
    """The query (`seen`: its colour thumbnail, turned) placed where it fits best inside a banked picture
    (`bank`, `bank_colour`: its thumbnails), at REGION_SCALES around the size of `window` (fractions of the
    banked picture), and how well they agree there. None when the query cannot be placed inside it.
    `covered` (a mask over `seen`, turned alike) is left out of the checks; a query with one that does
    not agree is turned back as a tilted copy with nothing left out (TILT_PAINTED)."""
    height, width = bank.shape
    grey_seen = cv2.cvtColor(seen, cv2.COLOR_RGB2GRAY)
    if covered is not None:  # placed as painted (`inset.painted`): pasted things would pull it off
        over = _resized_mask(covered, (seen.shape[1], seen.shape[0])).astype(np.uint8)
        grey = np.clip(grey_seen, 0, 255).astype(np.uint8)
        grey_seen = cv2.inpaint(grey, over, 3, cv2.INPAINT_TELEA).astype(np.float32)
    aspect = seen.shape[1] / seen.shape[0]
    area = (window[2] - window[0]) * width * (window[3] - window[1]) * height
    base = float(np.sqrt(area * aspect))
    best: tuple[float, int, int, int, int, float] | None = None
    step = REGION_SCALES[1] - REGION_SCALES[0]
    for offsets in ((), (-step / 2, step / 2)):
        # First the sizes of REGION_SCALES, then half a step either side of the best one where it
        # correlates at MIN_PLACEMENT or more (under it, a finer size would not make it agree).
        if best is not None and best[0] < MIN_PLACEMENT:
            break
        scales: tuple[float, ...] = tuple(best[5] + o for o in offsets) if best else REGION_SCALES
        for scale in scales:
            w = round(base * scale)
            h = round(w / aspect)
            if w < 8 or h < 8 or w > width or h > height:
                continue
            score, x, y = best_placement(bank, grey_seen, w, h)
            if best is None or score > best[0]:
                best = (score, x, y, w, h, scale)
    if best is None:
        return None
    score, x, y, w, h, _ = best
    check = _placed_check(seen, bank, bank_colour, (score, x, y, w, h), shared, covered)
    if check.accepted or score < MIN_PLACEMENT or check.relief < MIN_RELIEF:
        # A query that does not correlate as placed is not a copy tilted by a few degrees; one that fits
        # best on a plain part of the banked picture would have fitted on its structure, were it a copy.
        return check
    if covered is not None and not TILT_PAINTED:
        return check  # a painted view's mask may be a tilted copy's edges (TILT_PAINTED)
    turns = _turned_back(seen)
    tilted = _tilted_placement(turns, bank, w / seen.shape[1])
    if tilted is None or tilted[1][0] <= score:
        return check
    turned, placement = tilted
    check = _placed_check(turned, bank, bank_colour, placement, shared)
    if check.accepted or not TILT_SIZES:
        return check
    sized = _tilted_placement(turns, bank, w / seen.shape[1], TILT_SIZES)
    if sized is None or sized[1][0] < max(MIN_TILT_SIZED_PLACEMENT, placement[0]):
        return check
    again = _placed_check(sized[0], bank, bank_colour, sized[1], shared)
    return again if again.accepted else check


def _placed_check(
    seen: np.ndarray,
    bank: np.ndarray,
    bank_colour: np.ndarray,
    placement: tuple[float, int, int, int, int],
    shared: bool,
    covered: np.ndarray | None = None,
) -> RegionCheck:
    """How well the query agrees with the banked picture where `placement` (correlation, x, y, width,
    height in the banked thumbnail) put it, its text left out (`text_mask`)."""
    score, x, y, w, h = placement
    area = w * h / (bank.shape[0] * bank.shape[1])
    part = bank_colour[y : y + h, x : x + w]
    rise = relief(part)
    if rise < MIN_RELIEF:
        return _region(score, area, NO_FIT, NO_FIT, rise)  # nothing there to agree on: not compared
    held = held_share(bank_colour, (x, y, w, h))
    compared = ~_resized_mask(_left_out(seen, covered), (w, h))
    placed = cv2.resize(seen, (w, h), interpolation=cv2.INTER_AREA)
    grey = fits(cv2.cvtColor(placed, cv2.COLOR_RGB2GRAY), bank[y : y + h, x : x + w], compared)
    # Not forgiving on a small piece: a plateau taken as clipped let a look-alike ball's piece of 32 %
    # agree over 0.90 of a banked ball's structure (final20's `flat:gradient-subject/151`), 0.70 as fitted.
    colour = colour_fits(placed, part, compared, shared, forgiving=area >= SMALL_REGION)
    return _region(score, area, grey, colour, rise, held)


def _turned_back(seen: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """The query turned back by each of TILTS (degrees) and cut to the rectangle inside it that the turn
    leaves whole, in colour and in grey: made once, placed at one size and then, if need be, at
    TILT_SIZES (`_tilted_placement`)."""
    height, width = seen.shape[:2]
    turns = []
    for angle in TILTS:
        matrix = cv2.getRotationMatrix2D((width / 2, height / 2), angle, 1.0)
        turned = cv2.warpAffine(seen, matrix, (width, height), flags=cv2.INTER_LINEAR)
        margin = int(np.ceil(np.sin(np.deg2rad(abs(angle))) * max(width, height) / 2)) + 1
        inner = np.ascontiguousarray(turned[margin : height - margin, margin : width - margin])
        turns.append((inner, cv2.cvtColor(inner, cv2.COLOR_RGB2GRAY)))
    return turns


def _tilted_placement(
    turns: Sequence[tuple[np.ndarray, np.ndarray]],
    bank: np.ndarray,
    scale: float,
    sizes: Sequence[float] = (1.0,),
) -> tuple[np.ndarray, tuple[float, int, int, int, int]] | None:
    """Each of the query's turned-back views (`_turned_back`) placed at `scale` (banked thumbnail pixels
    per query pixel) times each of `sizes` where it correlates best: the turned query and its placement,
    for the tilt and size that correlate best; None when none fits inside."""
    best: tuple[np.ndarray, tuple[float, int, int, int, int]] | None = None
    for inner, grey in turns:
        for size in sizes:
            w, h = round(inner.shape[1] * scale * size), round(inner.shape[0] * scale * size)
            if w < 8 or h < 8 or w > bank.shape[1] or h > bank.shape[0]:
                continue
            score, x, y = best_placement(bank, grey, w, h)
            if best is None or score > best[1][0]:
                best = (inner, (score, x, y, w, h))
    return best


def _refined_box(
    colour: Image.Image, box: Box, bank: np.ndarray, slack: tuple[float, float]
) -> tuple[float, Box] | None:
    """The banked picture (`bank`, its grey thumbnail) placed again where `contained_match` found it in a
    query (`box`, fractions of the query), at the thumbnail's own resolution: within `slack` (fractions
    of each side: CONTAINED_REFINE pixels of the CONTAINED_SIDE copy) of the box, at REFINE_SCALES of its
    size. The correlation there and the box found, or None when the picture does not fit."""
    left, top, right, bottom = box
    outer = (
        max(0.0, left - slack[0]),
        max(0.0, top - slack[1]),
        min(1.0, right + slack[0]),
        min(1.0, bottom + slack[1]),
    )
    piece = crop_fraction(colour, outer)
    height, width = bank.shape
    size = (
        max(8, round(width * (outer[2] - outer[0]) / (right - left))),
        max(8, round(height * (outer[3] - outer[1]) / (bottom - top))),
    )
    grey = cv2.resize(
        np.asarray(piece if piece.mode == "L" else piece.convert("L"), dtype=np.float32),
        size,
        interpolation=cv2.INTER_AREA,
    )
    unit = ((outer[2] - outer[0]) / grey.shape[1], (outer[3] - outer[1]) / grey.shape[0])
    best: tuple[float, Box] | None = None
    for scale in REFINE_SCALES:
        w, h = round(width * scale), round(height * scale)
        if w > grey.shape[1] or h > grey.shape[0]:
            continue
        score, x, y = best_placement(grey, bank, w, h)
        if best is None or score > best[0]:
            x0, y0 = outer[0] + x * unit[0], outer[1] + y * unit[1]
            best = (score, (x0, y0, x0 + w * unit[0], y0 + h * unit[1]))
    return best


def relief(part: np.ndarray) -> float:
    """How much of a banked part (a colour or grey thumbnail) a low-order surface does not explain: each
    channel fitted by least squares with a quadratic in x and y (a plain colour, a linear or radial-looking
    ramp, gentle shading), the root mean square of what is left, largest over the channels, in grey
    levels. Clouds, hill lines and subjects leave much; a plain gradient its JPEG noise and banding (see
    MIN_RELIEF)."""
    # Every other pixel (a smooth picture's relief is the same at half the size), not smoothed: a blur's
    # border (reflected or replicated) bends a ramp, which would read as relief; the banked thumbnail is
    # an area-average of a large picture, its JPEG noise well under a level.
    sampled = part[::2, ::2]
    height, width = sampled.shape[:2]
    if height < 4 or width < 4:
        return 0.0
    values = sampled.reshape(height * width, -1).astype(np.float64)
    y, x = np.mgrid[0:height, 0:width]
    u, v = (x.reshape(-1) / width - 0.5), (y.reshape(-1) / height - 0.5)
    design = np.stack([np.ones_like(u), u, v, u * u, u * v, v * v], axis=1)
    # Normal equations by einsum, not lstsq: LAPACK's threads spin for their time slices on a loaded
    # machine (1 ms became 17).
    gram = np.einsum("ni,nj->ij", design, design)
    coefficients = np.linalg.solve(gram, np.einsum("ni,nc->ic", design, values))
    left = values - np.einsum("ni,ic->nc", design, coefficients)
    return float(np.sqrt(np.einsum("nc,nc->c", left, left) / len(left)).max())


def held_share(bank_colour: np.ndarray, box: tuple[int, int, int, int]) -> float:
    """Share of a banked picture's structure (`structure_weights` of its colour thumbnail) inside `box`
    (x, y, width, height in the thumbnail): 1.0 for a picture with no structure to weigh."""
    weights = structure_weights(bank_colour)
    total = float(weights.sum())
    if total <= 0.0:
        return 1.0
    x, y, w, h = box
    return float(weights[y : y + h, x : x + w].sum()) / total


def _region(
    placement: float, area: float, grey: Fit, colour: Fit, rise: float = float("inf"), held: float = 0.0
) -> RegionCheck:
    check = RegionCheck(
        placement, area, grey.share, colour.share, min(grey.subject, colour.subject), rise, held
    )
    log.debug("region: %s", check)
    return check
