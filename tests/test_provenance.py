"""Tests for monitor.provenance.markers: generator marks in a file's own metadata give markers; ordinary
photos and edited photos give none; garbage never raises."""

from __future__ import annotations

import io
import json
import logging
import random
import zlib
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from skimage import data as skdata

from monitor.provenance.containers import read_container
from monitor.provenance.exif import ExifError, ExifText, read_exif_text, user_comment
from monitor.provenance.markers import (
    PROBLEM_SOURCES,
    Problem,
    ProvenanceReport,
    add_problem_observer,
    generator_names,
    read_markers,
    read_provenance,
)
from monitor.provenance.xmp import XmpError, read_xmp
from tests.support.synthetic import jpeg_with_user_comment, xmp_packet

SD_PARAMETERS = (
    "pope francis in a white puffer coat, street photo\n"
    "Negative prompt: blurry, lowres\n"
    "Steps: 28, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 1234567, Size: 1024x1024, Model: sd_xl_base_1.0"
)
COMFY_PROMPT = json.dumps({"3": {"class_type": "KSampler", "inputs": {"seed": 1, "steps": 20}}})
COMFY_WORKFLOW = json.dumps({"last_node_id": 9, "nodes": [{"id": 3, "type": "KSampler"}]})


def _photo() -> Image.Image:
    return Image.fromarray(skdata.chelsea()).resize((160, 106))


PHOTO = _photo()


def png(text: dict[str, str] | None = None, *, compressed: bool = False, **params: object) -> bytes:
    info = PngInfo()
    for key, value in (text or {}).items():
        if compressed:
            info.add_itxt(key, value, zip=True)
        else:
            info.add_text(key, value)
    buffer = io.BytesIO()
    PHOTO.save(buffer, format="PNG", pnginfo=info, **params)
    return buffer.getvalue()


def jpeg(**params: object) -> bytes:
    buffer = io.BytesIO()
    PHOTO.save(buffer, format="JPEG", quality=85, **params)
    return buffer.getvalue()


def exif(software: str | None = None, *, camera: bool = True) -> Image.Exif:
    tags = Image.Exif()
    if camera:
        tags[0x010F] = "Canon"  # Make
        tags[0x0110] = "Canon EOS R6"  # Model
        tags[0x0132] = "2023:03:26 18:02:11"  # DateTime
        tags[0x013B] = "Jane Doe"  # Artist
    if software is not None:
        tags[0x0131] = software  # Software
    return tags


def xmp(source_type: str, creator_tool: str = "") -> bytes:
    return xmp_packet(source_type, creator_tool)


# --- generated images -----------------------------------------------------------------------------------


def test_stable_diffusion_parameters_chunk() -> None:
    assert read_markers(png({"parameters": SD_PARAMETERS})) == ("png:parameters (Stable Diffusion)",)


def test_stable_diffusion_parameters_in_a_compressed_itxt_chunk() -> None:
    assert read_markers(png({"parameters": SD_PARAMETERS}, compressed=True)) == (
        "png:parameters (Stable Diffusion)",
    )


def test_a_parameters_chunk_without_sd_settings_is_no_marker() -> None:
    assert read_markers(png({"parameters": "exposure +0.3, white balance daylight"})) == ()


def test_comfyui_prompt_and_workflow() -> None:
    assert read_markers(png({"prompt": COMFY_PROMPT, "workflow": COMFY_WORKFLOW})) == (
        "png:prompt+workflow (ComfyUI)",
    )
    # Images queued through ComfyUI's API carry the graph without the editor's workflow: still a mark.
    assert read_markers(png({"prompt": COMFY_PROMPT})) == ("png:prompt (ComfyUI)",)
    # A `prompt` chunk of plain text (any tool may write one) is not ComfyUI's graph.
    assert read_markers(png({"prompt": "a cat asleep on a sofa"})) == ()


def test_novelai_software_chunk() -> None:
    data = png({"Software": "NovelAI", "Source": "NovelAI Diffusion V3 4BDE2A90", "Description": "a cat"})
    assert read_markers(data) == ("png:Software (NovelAI)",)


def test_midjourney_exif_software_in_a_jpeg() -> None:
    assert read_markers(jpeg(exif=exif("Midjourney", camera=False))) == ("exif:Software (midjourney)",)


@pytest.mark.parametrize(
    ("software", "name"),
    [("Adobe Firefly", "firefly"), ("DALL-E 3", "dall-e"), ("Stable Diffusion XL", "stable diffusion")],
)
def test_other_generators_in_exif_software(software: str, name: str) -> None:
    assert read_markers(jpeg(exif=exif(software))) == (f"exif:Software ({name})",)


def test_midjourney_exif_software_in_a_png() -> None:
    assert read_markers(png(exif=exif("Midjourney"))) == ("exif:Software (midjourney)",)


@pytest.mark.parametrize("source_type", ["trainedAlgorithmicMedia", "compositeWithTrainedAlgorithmicMedia"])
def test_xmp_digital_source_type_in_a_jpeg(source_type: str) -> None:
    assert read_markers(jpeg(xmp=xmp(source_type))) == (f"xmp:DigitalSourceType {source_type}",)


def test_xmp_digital_source_type_in_a_png() -> None:
    data = png({"XML:com.adobe.xmp": xmp("trainedAlgorithmicMedia").decode()})
    assert read_markers(data) == ("xmp:DigitalSourceType trainedAlgorithmicMedia",)


def test_several_marks_give_several_markers_once_each() -> None:
    data = png({"parameters": SD_PARAMETERS, "XML:com.adobe.xmp": xmp("trainedAlgorithmicMedia").decode()})
    markers = read_markers(data)
    assert set(markers) == {
        "png:parameters (Stable Diffusion)",
        "xmp:DigitalSourceType trainedAlgorithmicMedia",
    }
    assert len(markers) == 2


def test_re_encoding_strips_the_marks() -> None:
    generated = png({"parameters": SD_PARAMETERS})
    buffer = io.BytesIO()
    Image.open(io.BytesIO(generated)).convert("RGB").save(buffer, format="JPEG")
    assert read_markers(buffer.getvalue()) == ()


# --- ordinary images ------------------------------------------------------------------------------------


def test_a_plain_photo_has_no_markers() -> None:
    assert read_markers(jpeg()) == ()
    assert read_markers(png()) == ()


@pytest.mark.parametrize(
    "software",
    [
        None,
        "Firmware Version 1.0.2",
        "GIMP 2.10.34",
        "Adobe Photoshop 25.0 (Windows)",
        "Adobe Lightroom Classic 13.1 (Macintosh)",
        "Imagenomic Portraiture 3",  # a retouching plug-in: "imagen" is only part of a word
        "iOS 17.4",
    ],
)
def test_camera_and_editor_exif_yield_no_markers(software: str | None) -> None:
    assert read_markers(jpeg(exif=exif(software))) == ()


def test_an_xmp_digital_capture_yields_no_marker() -> None:
    assert read_markers(jpeg(exif=exif("GIMP 2.10"), xmp=xmp("digitalCapture"))) == ()
    assert read_markers(jpeg(xmp=xmp("digitalCapture", creator_tool="Adobe Photoshop 25.0"))) == ()


def test_ordinary_png_text_chunks_yield_no_markers() -> None:
    data = png({"Software": "GIMP 2.10", "Comment": "Sunset at the lake", "Title": "Holiday"})
    assert read_markers(data) == ()


# --- garbage --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"hello, not an image", id="text"),
        pytest.param(bytes(random.Random(3).randrange(256) for _ in range(4096)), id="noise"),
        pytest.param(b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR" + b"\xff" * 30, id="png-broken-header"),
        pytest.param(b"\xff\xd8\xff\xe1\xff\xffExif\x00\x00II*\x00" + b"\x00" * 10, id="jpeg-broken-exif"),
    ],
)
def test_garbage_yields_no_markers_and_never_raises(data: bytes) -> None:
    assert read_markers(data) == ()


def test_a_truncated_generated_image_still_never_raises() -> None:
    generated = jpeg(exif=exif("Midjourney"))
    for cut in range(0, len(generated), max(1, len(generated) // 60)):
        markers = read_markers(generated[:cut])
        assert isinstance(markers, tuple)
        assert all(isinstance(m, str) for m in markers)


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning")
def test_a_jpeg_with_a_corrupt_exif_block_never_raises() -> None:
    good = jpeg(exif=exif("Midjourney"))
    start = good.index(b"Exif\x00\x00") + 6
    corrupt = good[:start] + b"MM\x00\x2a\xff\xff\xff\xff" + good[start + 8 :]
    assert read_markers(corrupt) == ()


# --- more formats and writers ----------------------------------------------------------------------------


def webp(**params: object) -> bytes:
    buffer = io.BytesIO()
    PHOTO.save(buffer, format="WEBP", quality=80, **params)
    return buffer.getvalue()


def user_comment_exif(raw: bytes, *, camera: bool = False) -> Image.Exif:
    tags = exif(camera=camera)
    tags.get_ifd(0x8769)[0x9286] = raw  # Exif IFD: UserComment
    return tags


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"UNICODE\x00" + SD_PARAMETERS.encode("utf-16-be"), id="unicode-be"),  # piexif, SD WebUI
        pytest.param(b"UNICODE\x00" + SD_PARAMETERS.encode("utf-16-le"), id="unicode-le"),
        pytest.param(b"ASCII\x00\x00\x00" + SD_PARAMETERS.encode(), id="ascii"),
    ],
)
@pytest.mark.parametrize("save", [jpeg, webp], ids=["jpeg", "webp"])
def test_stable_diffusion_parameters_in_exif_user_comment(raw: bytes, save: Any) -> None:
    assert read_markers(save(exif=user_comment_exif(raw))) == ("exif:UserComment (Stable Diffusion)",)


def test_a_camera_user_comment_is_no_marker() -> None:
    data = jpeg(exif=user_comment_exif(b"ASCII\x00\x00\x00Holiday at the lake, Steps: 3 km", camera=True))
    assert read_markers(data) == ()


# --- EXIF: our reader against Pillow's -------------------------------------------------------------------


def pillow_exif_text(blob: bytes) -> ExifText:
    """The same five tags read with Pillow's EXIF parser. Its UserComment is raw bytes, decoded with our
    charset rules (Pillow has none); its ASCII tags are cut at the first NUL, as EXIF defines them."""
    tags = Image.Exif()
    tags.load(blob)
    found: list[tuple[str, str]] = []
    for tag, name in (
        (0x0131, "Software"),
        (0x010E, "ImageDescription"),
        (0x010F, "Make"),
        (0x0110, "Model"),
    ):
        value = tags.get(tag)
        if isinstance(value, str) and (text := value.split("\x00", 1)[0].strip()):
            found.append((name, text))
    comment = tags.get_ifd(0x8769).get(0x9286)
    if isinstance(comment, bytes) and (
        text := user_comment(comment, "little" if blob[:2] == b"II" else "big")
    ):
        found.append(("UserComment", text))
    return ExifText(tuple(found))


def _skimage_file(name: str) -> bytes:
    return (Path(skdata.__file__).parent / name).read_bytes()


def _exif_samples() -> dict[str, bytes]:
    described = exif("Stable Diffusion", camera=True)
    described[0x010E] = SD_PARAMETERS  # ImageDescription
    comfy = Image.Exif()
    comfy[0x0110] = "prompt:" + COMFY_PROMPT
    comfy[0x010F] = "workflow:" + COMFY_WORKFLOW
    return {
        # Real photos: an edited astronomy photo (Photoshop) and scientific TIFFs.
        "hubble-jpeg": _skimage_file("hubble_deep_field.jpg"),
        "multipage-tiff": _skimage_file("multipage.tif"),
        "multipage-rgb-tiff": _skimage_file("multipage_rgb.tif"),
        # Generators and cameras, in each container that carries EXIF.
        "camera-jpeg": jpeg(exif=exif()),
        "midjourney-jpeg": jpeg(exif=exif("Midjourney v6")),
        "midjourney-png": png(exif=exif("Midjourney v6")),
        "described-webp": webp(exif=described),
        "comfyui-webp": webp(exif=comfy),
        "sd-webui-jpeg": jpeg_with_user_comment(PHOTO),
        "unicode-le-webp": webp(exif=user_comment_exif(b"UNICODE\x00" + SD_PARAMETERS.encode("utf-16-le"))),
        "ascii-comment-jpeg": jpeg(exif=user_comment_exif(b"ASCII\x00\x00\x00Lake, 3 km", camera=True)),
        "jis-comment-jpeg": jpeg(
            exif=user_comment_exif(b"JIS\x00\x00\x00\x00\x00" + "湖".encode("shift_jis"))
        ),
    }


EXIF_SAMPLES = _exif_samples()


@pytest.mark.parametrize("data", EXIF_SAMPLES.values(), ids=EXIF_SAMPLES.keys())
def test_our_exif_reader_gives_pillows_answers(data: bytes) -> None:
    blobs = read_container(data).exif
    assert len(blobs) == 1
    ours = read_exif_text(blobs[0])
    assert ours.tags, "every sample carries at least one of the tags read"
    assert ours == pillow_exif_text(blobs[0])


def test_the_exif_samples_cover_every_tag_read() -> None:
    names = {
        name
        for data in EXIF_SAMPLES.values()
        for name, _ in read_exif_text(read_container(data).exif[0]).tags
    }
    assert names == {"Software", "ImageDescription", "Make", "Model", "UserComment"}


def _tiff_with_software(raw: bytes) -> bytes:
    """A little-endian TIFF structure whose IFD0 holds one ASCII Software entry of `raw`."""
    entry = (0x0131).to_bytes(2, "little") + (2).to_bytes(2, "little") + len(raw).to_bytes(4, "little")
    return (
        b"II*\x00"
        + (8).to_bytes(4, "little")
        + (1).to_bytes(2, "little")
        + entry
        + (26).to_bytes(4, "little")
        + b"\0" * 4
        + raw
    )


def test_utf8_in_an_ascii_tag_is_read_as_utf8_where_pillow_reads_latin1() -> None:
    blob = _tiff_with_software("DALL·E 3\x00".encode())
    assert read_exif_text(blob).get("Software") == "DALL·E 3"
    assert read_markers(png_with_chunks(png_chunk(b"eXIf", blob))) == ("exif:Software (dall·e)",)


def test_an_ifd_of_65535_entries_is_refused_at_once_and_reported() -> None:
    # 786 kB of entries, each pointing past the end: Pillow would read and warn about every one.
    entry = (0x0131).to_bytes(2, "big") + (2).to_bytes(2, "big") + (1 << 30).to_bytes(4, "big") + bytes(4)
    blob = b"MM\x00*" + (8).to_bytes(4, "big") + (65535).to_bytes(2, "big") + entry * 65535 + bytes(4)
    with pytest.raises(ExifError, match="IFD of 65535 entries"):
        read_exif_text(blob)
    report = read_provenance(png_with_chunks(png_chunk(b"eXIf", blob)))
    assert report.markers == ()
    assert [p.where for p in report.problems] == ["exif"]


@pytest.mark.parametrize("source_type", ["trainedAlgorithmicMedia", "compositeWithTrainedAlgorithmicMedia"])
def test_xmp_digital_source_type_in_a_webp(source_type: str) -> None:
    assert read_markers(webp(xmp=xmp(source_type))) == (f"xmp:DigitalSourceType {source_type}",)


def test_xmp_in_a_compressed_png_itxt_chunk() -> None:
    data = png({"XML:com.adobe.xmp": xmp("compositeWithTrainedAlgorithmicMedia").decode()}, compressed=True)
    assert read_markers(data) == ("xmp:DigitalSourceType compositeWithTrainedAlgorithmicMedia",)


def test_xmp_written_as_elements_under_another_prefix() -> None:
    # The same properties as elements, one with rdf:resource, under prefixes of the writer's choosing.
    packet = (
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        b'<rdf:Description rdf:about="" xmlns:ext="http://iptc.org/std/Iptc4xmpExt/2008-02-29/"'
        b' xmlns:t="http://ns.adobe.com/xap/1.0/">'
        b"<t:CreatorTool>Midjourney v6</t:CreatorTool>"
        b'<ext:DigitalSourceType rdf:resource="http://cv.iptc.org/newscodes/digitalsourcetype/'
        b'trainedAlgorithmicMedia"/>'
        b"</rdf:Description></rdf:RDF></x:xmpmeta>"
    )
    assert set(read_markers(jpeg(xmp=packet))) == {
        "xmp:DigitalSourceType trainedAlgorithmicMedia",
        "xmp:CreatorTool (midjourney)",
    }


# XML attacks: the packet declares entities before its xmpmeta element. Its DigitalSourceType is written
# through an entity, so a parser that expanded or fetched it would find the mark.
_SOURCE_ELEMENT = (
    '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    '<rdf:Description rdf:about="" xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/">'
    "<Iptc4xmpExt:DigitalSourceType>{value}</Iptc4xmpExt:DigitalSourceType>"
    "</rdf:Description></rdf:RDF></x:xmpmeta>"
)


def billion_laughs_xmp() -> bytes:
    """Ten levels of ten references: 10^9 copies of the text when expanded (gigabytes), 1 kB written."""
    levels = ['<!ENTITY lol0 "trainedAlgorithmicMedia ">'] + [
        f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10)
    ]
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
        f"<!DOCTYPE x:xmpmeta [{''.join(levels)}]>" + _SOURCE_ELEMENT.format(value="&lol9;")
    ).encode()


def external_entity_xmp(target: str) -> bytes:
    return (
        f'<!DOCTYPE x:xmpmeta [<!ENTITY source SYSTEM "{target}">]>'
        + _SOURCE_ELEMENT.format(value="&source;")
    ).encode()


def test_an_entity_free_packet_written_the_same_way_is_a_marker() -> None:
    # The control for the two attacks below: the same element with its value written out.
    packet = _SOURCE_ELEMENT.format(
        value="http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
    )
    assert read_markers(jpeg(xmp=packet.encode())) == ("xmp:DigitalSourceType trainedAlgorithmicMedia",)


@pytest.mark.parametrize("container", ["jpeg", "png"])
def test_an_xmp_billion_laughs_is_refused_not_expanded(container: str) -> None:
    packet = billion_laughs_xmp()
    assert len(packet) < 2000
    data = jpeg(xmp=packet) if container == "jpeg" else png({"XML:com.adobe.xmp": packet.decode()})
    report = read_provenance(data)  # returns at once: nothing is expanded
    assert report.markers == ()
    assert [(p.where, p.detail) for p in report.problems] == [
        ("xmp", f"in {container}: a document type declaration in XMP, refused, skipped")
    ]


def test_an_xmp_external_entity_is_refused_not_fetched(tmp_path: Path) -> None:
    source = tmp_path / "source.txt"
    source.write_text("http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia")
    for target in (source.as_uri(), "http://127.0.0.1:9/source.txt"):
        report = read_provenance(jpeg(xmp=external_entity_xmp(target)))
        assert report.markers == ()
        assert len(report.problems) == 1 and report.problems[0].where == "xmp"
        assert "refused" in report.problems[0].detail


@pytest.mark.parametrize(
    ("packet", "reason"),
    [
        pytest.param(
            b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "b">]><rdf:RDF>&a; DigitalSourceType</rdf:RDF>',
            "a document type declaration in XMP, refused",
            id="internal-entity-before-rdf",
        ),
        pytest.param(
            b'<!DOCTYPE x:xmpmeta SYSTEM "http://127.0.0.1:9/x.dtd">'
            b'<x:xmpmeta xmlns:x="adobe:ns:meta/"></x:xmpmeta>',
            "a document type declaration in XMP, refused",
            id="external-dtd",
        ),
        pytest.param(
            b'<x:xmpmeta xmlns:x="adobe:ns:meta/">&undeclared; DigitalSourceType</x:xmpmeta>',
            "not well-formed XML (undefined entity",
            id="undeclared-entity",
        ),
    ],
)
def test_read_xmp_refuses_declarations_and_undeclared_entities(packet: bytes, reason: str) -> None:
    with pytest.raises(XmpError) as info:
        read_xmp(packet)
    assert str(info.value).startswith(reason)


def test_a_generator_named_in_xmp_creator_tool() -> None:
    assert read_markers(jpeg(xmp=xmp("digitalCapture", creator_tool="Adobe Firefly 3"))) == (
        "xmp:CreatorTool (firefly)",
    )


@pytest.mark.parametrize("name", generator_names())
def test_every_listed_generator_is_found_in_software_and_creator_tool(name: str) -> None:
    written = f"{name.title()} 2.1"
    assert read_markers(jpeg(xmp=xmp("digitalCapture", creator_tool=written))) == (
        f"xmp:CreatorTool ({name})",
    )
    if name.isascii():  # Pillow writes EXIF ASCII as ASCII: "DALL·E" would arrive as "DALL?E"
        assert read_markers(jpeg(exif=exif(written))) == (f"exif:Software ({name})",)


def test_comfyui_graph_in_webp_exif() -> None:
    # ComfyUI's WebP saver: "prompt:{json}" in Model, "workflow:{json}" in Make.
    tags = Image.Exif()
    tags[0x0110] = "prompt:" + COMFY_PROMPT
    tags[0x010F] = "workflow:" + COMFY_WORKFLOW
    assert set(read_markers(webp(exif=tags))) == {"exif:Model (ComfyUI)", "exif:Make (ComfyUI)"}


NOVELAI_COMMENT = json.dumps(
    {"prompt": "a cat", "steps": 28, "sampler": "k_euler_ancestral", "seed": 42, "scale": 5, "uc": "lowres"}
)


def test_a_whole_novelai_file_gives_one_marker() -> None:
    data = png(
        {
            "Title": "AI generated image",
            "Description": "a cat",
            "Software": "NovelAI",
            "Source": "NovelAI Diffusion V3 4BDE2A90",
            "Comment": NOVELAI_COMMENT,
        }
    )
    assert read_markers(data) == ("png:Software (NovelAI)",)


def test_novelai_comment_alone_and_title_alone() -> None:
    assert read_markers(png({"Comment": NOVELAI_COMMENT})) == ("png:Comment (NovelAI)",)
    assert read_markers(png({"Title": "AI generated image"})) == ("png:Title (AI generated image)",)


def test_stable_diffusion_parameters_in_a_jpeg_comment() -> None:
    assert read_markers(jpeg(comment=SD_PARAMETERS.encode())) == ("jpeg:COM (Stable Diffusion)",)


def test_a_marked_file_truncated_in_its_pixels_keeps_its_mark_and_reports_the_cut() -> None:
    generated = png({"parameters": SD_PARAMETERS})
    cut = generated[: generated.index(b"IDAT") + 200]
    report = read_provenance(cut)
    assert report.markers == ("png:parameters (Stable Diffusion)",)
    assert len(report.problems) == 1 and "past the end" in str(report.problems[0])


# --- ordinary look-alikes --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(png({"Software": "gnome-screenshot"}), id="gnome-screenshot"),
        pytest.param(png({"Software": "Greenshot", "Comment": "Screenshot 2024-03-01"}), id="greenshot"),
        pytest.param(png({"Software": "Shutter", "Description": "Selection of Firefox"}), id="shutter"),
        pytest.param(jpeg(comment=b"Screenshot taken with Flameshot"), id="jpeg-comment"),
        pytest.param(jpeg(comment=b"CREATOR: gd-jpeg v1.0 (using IJG JPEG v80), quality = 85"), id="gd-jpeg"),
        pytest.param(webp(exif=exif("Snipping Tool")), id="webp-snipping-tool"),
        pytest.param(png({"XML:com.adobe.xmp": xmp("digitalCapture").decode()}), id="png-digital-capture"),
        pytest.param(webp(xmp=xmp("digitalCapture", creator_tool="Pixelmator Pro")), id="webp-capture"),
        pytest.param(webp(xmp=xmp("algorithmicallyEnhanced")), id="enhanced-is-not-generated"),
        pytest.param(png({"prompt": "{not json"}), id="prompt-not-json"),
        pytest.param(png({"workflow": json.dumps({"steps": ["crop", "resize"]})}), id="other-workflow"),
    ],
)
def test_screenshot_tools_captures_and_other_writers_yield_no_markers(data: bytes) -> None:
    assert read_provenance(data) == ProvenanceReport(markers=(), problems=())


# --- bad metadata: reported and skipped ------------------------------------------------------------------


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")


def png_with_chunks(*chunks: bytes) -> bytes:
    plain = png()
    idat = plain.index(b"IDAT") - 4  # insert the chunks after IHDR, before the pixels
    return plain[:idat] + b"".join(chunks) + plain[idat:]


def inflating_itxt(keyword: bytes, size: int) -> bytes:
    return png_chunk(
        b"iTXt", keyword + b"\x00\x01\x00\x00\x00" + zlib.compress(b"Steps: 1, " * (size // 10), 9)
    )


BAD_METADATA = {
    "zip-bomb-itxt": png_with_chunks(inflating_itxt(b"parameters", 50 << 20)),
    "corrupt-ztxt": png_with_chunks(png_chunk(b"zTXt", b"parameters\x00\x00" + b"not zlib at all")),
    "truncated-ztxt": png_with_chunks(
        png_chunk(b"zTXt", b"parameters\x00\x00" + zlib.compress(SD_PARAMETERS.encode())[:20])
    ),
    "text-without-keyword": png_with_chunks(png_chunk(b"tEXt", b"no separator here")),
    "garbage-exif": png_with_chunks(png_chunk(b"eXIf", b"MM\x00\x2a\xff\xff\xff\xff" + b"\x01" * 40)),
    "exif-huge-ifd": png_with_chunks(
        png_chunk(b"eXIf", b"II\x2a\x00\x08\x00\x00\x00\xff\xff" + b"\x00" * 30)
    ),
    "xmp-entity-bomb": png_with_chunks(
        png_chunk(
            b"iTXt",
            b"XML:com.adobe.xmp\x00\x00\x00\x00\x00"
            b'<!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>'
            b'<x:xmpmeta xmlns:x="adobe:ns:meta/">&b; DigitalSourceType</x:xmpmeta>',
        )
    ),
    "xmp-not-xml": jpeg(xmp=b"<x:xmpmeta DigitalSourceType trainedAlgorithmicMedia <<<</x:xmpmeta>"),
    "jpeg-segment-past-the-end": b"\xff\xd8\xff\xe1\x7f\xffExif\x00\x00MM\x00\x2a",
    "webp-chunk-past-the-end": b"RIFF\x00\x10\x00\x00WEBPEXIF\xff\xff\x00\x00MM\x00\x2a",
}


@pytest.mark.parametrize("data", BAD_METADATA.values(), ids=BAD_METADATA.keys())
def test_bad_metadata_is_reported_and_skipped(data: bytes) -> None:
    report = read_provenance(data)
    assert report.markers == ()
    assert report.problems, "the skipped metadata must be reported"
    assert {problem.where for problem in report.problems} <= set(PROBLEM_SOURCES)  # a bounded label


def test_many_large_texts_stop_at_the_files_budget_and_keep_the_mark_before_them() -> None:
    fillers = [inflating_itxt(f"note{i}".encode(), 900_000) for i in range(20)]  # 18 MB inflated, 20 kB here
    data = png_with_chunks(png_chunk(b"tEXt", b"parameters\x00" + SD_PARAMETERS.encode()), *fillers)
    report = read_provenance(data)
    assert report.markers == ("png:parameters (Stable Diffusion)",)
    assert report.problems and all("budget" in problem.detail for problem in report.problems)


def test_read_markers_logs_each_problem_and_tells_the_observers(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[Problem] = []
    remove = add_problem_observer(seen.append)
    try:
        with caplog.at_level(logging.WARNING, logger="monitor.provenance.markers"):
            assert read_markers(BAD_METADATA["zip-bomb-itxt"]) == ()
    finally:
        remove()
    assert len(seen) == 1 and "inflates past" in seen[0].detail
    assert any("inflates past" in record.getMessage() for record in caplog.records)
    read_markers(BAD_METADATA["corrupt-ztxt"])
    assert len(seen) == 1  # removed: told no more


def test_many_random_corruptions_of_marked_files_never_raise() -> None:
    """Bytes flipped, cut and spliced in files carrying every kind of mark: read_provenance (which, unlike
    read_markers, lets an unexpected exception through) must return a report for each."""
    rng = random.Random(5)
    tags = user_comment_exif(b"UNICODE\x00" + SD_PARAMETERS.encode("utf-16-be"), camera=True)
    tags[0x0131] = "Midjourney"
    marked = [
        png(
            {"parameters": SD_PARAMETERS, "prompt": COMFY_PROMPT, "workflow": COMFY_WORKFLOW}, compressed=True
        ),
        png({"XML:com.adobe.xmp": xmp("trainedAlgorithmicMedia", "Midjourney").decode()}, exif=tags),
        jpeg(exif=tags, xmp=xmp("trainedAlgorithmicMedia"), comment=SD_PARAMETERS.encode()),
        webp(exif=tags, xmp=xmp("compositeWithTrainedAlgorithmicMedia")),
    ]
    for original in marked:
        header = min(len(original), 4096)  # where the metadata is
        for _ in range(150):
            data = bytearray(original)
            for _ in range(rng.randrange(1, 6)):
                data[rng.randrange(header)] = rng.randrange(256)
            if rng.random() < 0.3:
                data = data[: rng.randrange(len(data))]
            report = read_provenance(bytes(data))
            assert all(isinstance(marker, str) for marker in report.markers)
