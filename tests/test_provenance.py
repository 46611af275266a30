"""Tests for monitor.provenance: generator marks in a file's own metadata give markers; ordinary photos and
edited photos give none; garbage never raises."""

from __future__ import annotations

import io
import json
import random

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from skimage import data as skdata

from monitor.provenance import read_markers

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
    tool = f' xmp:CreatorTool="{creator_tool}"' if creator_tool else ""
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/"'
        f' xmlns:xmp="http://ns.adobe.com/xap/1.0/"{tool}'
        f' Iptc4xmpExt:DigitalSourceType="http://cv.iptc.org/newscodes/digitalsourcetype/{source_type}"/>'
        '</rdf:RDF></x:xmpmeta><?xpacket end="w"?>'
    ).encode()


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
    assert read_markers(png({"prompt": COMFY_PROMPT})) == ()


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
