"""IPTC DigitalSourceType and xmp:CreatorTool from an XMP packet, parsed as the RDF/XML it is.

XMP writes one property three ways (an attribute of rdf:Description, an element with text, an element with
rdf:resource) under any namespace prefix, so the packet is parsed and properties are matched by namespace
URI, not by a byte pattern. The parser is defusedxml's: a packet with a DTD, an entity declaration or an
external reference is refused by the parser itself, whatever the packet's encoding (XMP has no use for
any of them, and entity expansion is how an XML bomb works, external entities how a file leaks). A packet
refused so, or not well-formed, is an `XmpError`, which the caller reports and skips.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

from defusedxml import DefusedXmlException, DTDForbidden, EntitiesForbidden, ExternalReferenceForbidden
from defusedxml.ElementTree import fromstring

AI_SOURCE_TYPES = ("trainedAlgorithmicMedia", "compositeWithTrainedAlgorithmicMedia")
"""The IPTC digital source types that mean "made by a generative model" (wholly, or composited in)."""

_IPTC_EXT_PREFIX = "{http://iptc.org/std/Iptc4xmpExt/"
_CREATOR_TOOL = "{http://ns.adobe.com/xap/1.0/}CreatorTool"
_RDF_RESOURCE = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}resource"
_ROOTS = (b"<x:xmpmeta", b"<x:xapmeta", b"<rdf:RDF")
_REFUSED: tuple[tuple[type[DefusedXmlException], str], ...] = (
    (DTDForbidden, "a document type declaration"),
    (EntitiesForbidden, "an entity declaration"),
    (ExternalReferenceForbidden, "an external reference"),
)


class XmpError(ValueError):
    """The packet is not XMP that can be parsed safely."""


@dataclass(frozen=True, slots=True)
class XmpFacts:
    source_types: tuple[str, ...]
    """DigitalSourceType values as written (URIs of the IPTC vocabulary, normally)."""
    creator_tools: tuple[str, ...]


def source_type_code(value: str) -> str | None:
    """The vocabulary code of a DigitalSourceType URI (or bare code) when it is one of the AI ones."""
    value = value.strip()
    code = value.rstrip("/").rsplit("/", 1)[-1]
    if code in AI_SOURCE_TYPES and (value == code or "/digitalsourcetype/" in value.lower()):
        return code
    return None


def _document(packet: bytes) -> bytes:
    """The XML document inside a packet: from the xmpmeta (or bare rdf:RDF) element to its end tag, with
    a document type declaration before it kept, so that the parser sees it and refuses it."""
    for root in _ROOTS:
        start = packet.find(root)
        if start >= 0:
            end_tag = b"</" + root[1:] + b">"
            stop = packet.rfind(end_tag)
            if stop < start:
                raise XmpError(f"no {end_tag.decode()} end tag")
            doctype = packet.rfind(b"<!DOCTYPE", 0, start)
            return packet[doctype if doctype >= 0 else start : stop + len(end_tag)]
    raise XmpError("no xmpmeta or rdf:RDF element")


def read_xmp(packet: bytes) -> XmpFacts:
    """The DigitalSourceType and CreatorTool values of an XMP packet."""
    document = _document(packet)
    try:
        root = fromstring(document, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        what = next((text for kind, text in _REFUSED if isinstance(exc, kind)), type(exc).__name__)
        raise XmpError(f"{what} in XMP, refused") from exc
    except ET.ParseError as exc:
        raise XmpError(f"not well-formed XML ({exc})") from exc
    source_types: list[str] = []
    creator_tools: list[str] = []
    for element in root.iter():
        for name, value in element.attrib.items():
            if name.startswith(_IPTC_EXT_PREFIX) and name.endswith("}DigitalSourceType"):
                source_types.append(value)
            elif name == _CREATOR_TOOL:
                creator_tools.append(value)
        tag = element.tag if isinstance(element.tag, str) else ""
        if tag.startswith(_IPTC_EXT_PREFIX) and tag.endswith("}DigitalSourceType"):
            source_types.append(element.get(_RDF_RESOURCE) or "".join(element.itertext()))
        elif tag == _CREATOR_TOOL:
            creator_tools.append("".join(element.itertext()))
    return XmpFacts(
        tuple(v.strip() for v in source_types if v.strip()),
        tuple(v.strip() for v in creator_tools if v.strip()),
    )
