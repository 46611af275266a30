"""C2PA manifests (Content Credentials), read and validated with c2pa-python.

Called only when the container walk found an embedded manifest store, so images without one never load
the native library. The reader runs offline: remote manifest fetch and OCSP fetch off, and an empty list
of allowed network hosts (an image from the stream must not make the worker fetch a URL of its author's
choosing). A manifest that exists only remotely (a URL in XMP, nothing embedded) is therefore not read.

What a manifest yields (`C2paResult.markers`):

- validation ``Trusted`` (the signer chains to a configured trust anchor) or ``Valid`` (well-formed and
  correctly signed, signer not on the trust list), with an action whose ``digitalSourceType`` is
  ``trainedAlgorithmicMedia`` or ``compositeWithTrainedAlgorithmicMedia`` in any manifest of the store:
  ``c2pa:digitalSourceType trainedAlgorithmicMedia (Trusted)``;
- validation ``Invalid`` (tampered pixels, a broken signature...): ``c2pa:invalid (<failure codes>)``,
  whatever it claims, since a manifest that fails validation is never a pass;
- a store the library cannot read at all (truncated, corrupt): ``c2pa:invalid (unreadable)``;
- c2pa-python missing: ``c2pa:unverified (c2pa-python not available)``;
- a valid manifest of a capture or an ordinary edit: nothing.

Trust anchors: a PEM bundle named by the ``c2pa_trust_anchors`` setting (``MONITOR_C2PA_TRUST_ANCHORS``;
for instance the C2PA trust list), added to the library's own.
"""

from __future__ import annotations

import importlib
import io
import json
import logging
import threading
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from monitor.provenance.xmp import AI_SOURCE_TYPES, source_type_code
from monitor.settings import SettingsError, env_name, explicit_setting

logger = logging.getLogger(__name__)

TRUST_ANCHORS_ENV = env_name("c2pa_trust_anchors")
_OFFLINE = {
    "verify": {"remote_manifest_fetch": False, "ocsp_fetch": False},
    "core": {"allowed_network_hosts": []},
}
_UNTRUSTED = "signingCredential.untrusted"


def _c2pa() -> Any:
    """c2pa-python, imported on first use: its native library loads only when a manifest turns up."""
    return importlib.import_module("c2pa")


@dataclass(frozen=True, slots=True)
class C2paResult:
    """What the manifest store of one file says and whether it holds up."""

    state: str
    """``Trusted``, ``Valid``, ``Invalid`` (c2pa's validation states), ``Unreadable`` or ``Unavailable``."""
    source_type: str | None = None
    """The AI digital source type an action of the store claims, if any."""
    failures: tuple[str, ...] = ()
    """Validation failure codes of the active manifest (``assertion.dataHash.mismatch``...)."""
    detail: str = ""
    """The reader's error, for a store it could not read."""

    @property
    def markers(self) -> tuple[str, ...]:
        if self.state in ("Trusted", "Valid"):
            return (f"c2pa:digitalSourceType {self.source_type} ({self.state})",) if self.source_type else ()
        if self.state == "Invalid":
            codes = ", ".join(code for code in self.failures if code != _UNTRUSTED)[:200] or "no failure code"
            claim = f"; claims {self.source_type}" if self.source_type else ""
            return (f"c2pa:invalid ({codes}{claim})",)
        if self.state == "Unavailable":
            return ("c2pa:unverified (c2pa-python not available)",)
        return ("c2pa:invalid (unreadable)",)


def claimed_source_type(store: dict[str, Any]) -> str | None:
    """The strongest AI source type any action of any manifest claims (ingredients' manifests too)."""
    found: set[str] = set()
    manifests = store.get("manifests")
    for manifest in manifests.values() if isinstance(manifests, dict) else ():
        assertions = manifest.get("assertions") if isinstance(manifest, dict) else None
        for assertion in assertions if isinstance(assertions, list) else ():
            if not isinstance(assertion, dict) or not str(assertion.get("label", "")).startswith(
                "c2pa.actions"
            ):
                continue
            data = assertion.get("data")
            actions = data.get("actions") if isinstance(data, dict) else None
            for action in actions if isinstance(actions, list) else ():
                value = action.get("digitalSourceType") if isinstance(action, dict) else None
                if isinstance(value, str) and (code := source_type_code(value)):
                    found.add(code)
    return next((code for code in AI_SOURCE_TYPES if code in found), None)


def _failures(store: dict[str, Any]) -> tuple[str, ...]:
    results = store.get("validation_results")
    active = results.get("activeManifest") if isinstance(results, dict) else None
    failure = active.get("failure") if isinstance(active, dict) else store.get("validation_status")
    codes = [item.get("code") for item in failure or () if isinstance(item, dict)]
    return tuple(dict.fromkeys(code for code in codes if isinstance(code, str)))


class C2paVerifier:
    """Reads and validates embedded manifest stores; one per process is enough (see `default_verifier`)."""

    def __init__(self, trust_anchors_pem: str | None = None) -> None:
        self.trust_anchors_pem = trust_anchors_pem
        self._context: Any = None
        self._lock = threading.Lock()

    def _reader_context(self) -> Any:
        with self._lock:
            if self._context is None:
                settings: dict[str, Any] = dict(_OFFLINE)
                if self.trust_anchors_pem:
                    settings["trust"] = {"user_anchors": self.trust_anchors_pem}
                self._context = _c2pa().Context.from_dict(settings)
            return self._context

    def verify(self, data: bytes, mime: str | None) -> C2paResult | None:
        """The store's validation and claim; None when the library finds no manifest after all."""
        try:
            context = self._reader_context()
            reader = _c2pa().Reader.try_create(mime, io.BytesIO(data), context=context)
            if reader is None:
                return None
            with reader:
                store = json.loads(reader.json())
        except ImportError as exc:
            return C2paResult("Unavailable", detail=str(exc))
        except Exception as exc:  # the native reader's errors are data about the file, never a crash
            return C2paResult("Unreadable", detail=f"{type(exc).__name__.lstrip('_')}: {exc}"[:300])
        if not isinstance(store, dict):
            return C2paResult("Unreadable", detail="manifest store is not a JSON object")
        state = store.get("validation_state")
        return C2paResult(
            state=state if state in ("Trusted", "Valid", "Invalid") else "Invalid",
            source_type=claimed_source_type(store),
            failures=_failures(store) or (() if state else ("no validation state",)),
        )


def verifier_for(trust_anchors: Path | None) -> C2paVerifier:
    """A verifier trusting the PEM bundle at `trust_anchors` (none: the library's own anchors only).

    A bundle that cannot be read is logged as an error and the verifier trusts no extra anchor: signers
    then show as ``Valid``, never wrongly as ``Trusted``, and the worker keeps running.
    """
    if trust_anchors is None:
        return C2paVerifier()
    try:
        return C2paVerifier(trust_anchors.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        logger.error(
            "%s=%s cannot be read (%s): C2PA signers will not show as Trusted",
            TRUST_ANCHORS_ENV,
            trust_anchors,
            exc,
        )
        return C2paVerifier()


@cache
def default_verifier() -> C2paVerifier:
    """The process's verifier, with the trust anchors of the ``c2pa_trust_anchors`` setting.

    Read on its own (`explicit_setting`): `read_markers` runs where no `Settings` is at hand (the CLI's
    `inspect`, an analysis process), and another setting's bad value must not cost the trust anchors.
    """
    try:
        anchors = explicit_setting("c2pa_trust_anchors")
    except SettingsError as exc:
        logger.error("%s: C2PA signers will not show as Trusted", exc)
        return C2paVerifier()
    return verifier_for(anchors)
