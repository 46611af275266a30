"""Bank hashes in the ThreatExchange PDQ text format, so banks can be shared with HMA users.

One hash per line: the 64 hex digits of the PDQ hash, then its cluster (ThreatExchange calls it a label
or tag) and an optional free-text label, comma separated (CSV quoting for labels with commas):

    f8f8f0cee0f4a84f06370a22038f2f0b82e6e0f4a8e1b4f2b7e11e0bf061b064,pope-puffer,Pope in a puffer coat

On import a bare hash line takes the cluster given on the command line, blank lines and `#` comments are
skipped, as is a header line starting with `hash`. A bad line is an error naming its line number:
nothing of the file is imported, so a half-read list never lands in a bank.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass

from monitor.imaging.pdq import pdq_from_hex


class FormatError(ValueError):
    """A line of a hash list cannot be read."""


@dataclass(frozen=True, slots=True)
class PdqEntry:
    pdq: int
    cluster: str
    label: str = ""
    quality: int | None = None


def parse_lines(lines: Iterable[str], default_cluster: str | None = None) -> list[PdqEntry]:
    """Entries of a hash list; `default_cluster` for lines that carry only a hash."""
    entries: list[PdqEntry] = []
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        fields = next(csv.reader([text]))
        first = fields[0].strip()
        if number == 1 and first.lower() in ("hash", "pdq", "signal"):
            continue
        try:
            value = pdq_from_hex(first)
        except ValueError as exc:
            raise FormatError(f"line {number}: {exc}") from None
        cluster = fields[1].strip() if len(fields) > 1 and fields[1].strip() else default_cluster
        if not cluster:
            raise FormatError(f"line {number}: no cluster (give one per line or with --cluster)")
        label = ",".join(fields[2:]).strip() if len(fields) > 2 else ""
        entries.append(PdqEntry(value, cluster, label))
    return entries


def format_lines(entries: Iterable[PdqEntry]) -> str:
    """A hash list for the entries, one `hash,cluster,label` line each."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    for entry in entries:
        writer.writerow(
            [f"{entry.pdq:064x}", entry.cluster, entry.label]
            if entry.label
            else [f"{entry.pdq:064x}", entry.cluster]
        )
    return buffer.getvalue()
