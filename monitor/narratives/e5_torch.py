"""multilingual-e5-small's forward pass on torch's bf16 matrix units, where the CPU has them.

The same model file, tokenizer, windows and pooling as monitor.narratives.e5_numpy (this is a subclass:
only `_forward` differs), and the same model up to rounding: the products on the CPU's native bf16 units
(AMX or AVX-512 BF16, through oneDNN) instead of float32 BLAS:

- weights, activations and each product's float32 sum are rounded to bf16 (8 significant bits: about
  2^-9 of a value). The engine (and e5_numpy) quantise each product's activations to int8 per block of 32
  first; this runtime did too until session 17, but on its small batches (5-6 screened captions, about
  130 rows) those five elementwise passes per product cost more than the product itself: without them a
  caption costs about 30% less CPU. Against the engine on 300 tuning-set captions: mean 1 - cosine 8.5e-5
  (4.7e-5 with the int8 step; the engine built with other flags differs from itself by about 1e-4),
  smallest cosine 0.99987 (0.99991). On the tuning sets every decision is still the engine's
  (benchmarks/narrative_decisions.py: the exact band absorbs the rest). Keeping the 4-bit weights exact
  (a Q4_0 weight is the sum of two bf16 numbers: [x, x] @ [high; low]) cost half again the CPU: a product
  of a few rows streams its weights, so their bytes set its cost;
- rows are padded to a multiple of 32 so that oneDNN meets few shapes (it builds a kernel per shape, which
  cost more than the products on a stream of new batch sizes); the weights are packed once, at load, in
  oneDNN's layout (packing them at every call cost a third of the product);
- attention one window at a time over its own rows: a padded, masked call for all windows, with its
  scatter and gather, cost 1.7 times as much on these few short windows.

Why not float32 in torch or int8 in onnxruntime: float32 (MKL) was 1.2-1.4x numpy's speed, onnxruntime's
MatMulNBits with int8 activations (the engine's exact arithmetic) as slow as numpy on these row counts;
bf16 on AMX is 3-5x cheaper per product. Without native bf16 torch emulates it, slower than float32, so
monitor.narratives.encoders runs this only where the CPU flags say native bf16 (numpy otherwise). Cost:
torch in the analysis process, about 300 MB more private memory than numpy (torch's own import: 290 MB).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from monitor.narratives.e5_numpy import E5Numpy, _dequantise

#: Rows of a pass are padded to a multiple of this: few shapes for oneDNN's kernel cache.
ROW_STEP = 32


def available() -> bool:
    """Whether torch with oneDNN is here (the caller checks the CPU for native bf16: encoders.BF16_FLAGS)."""
    try:
        import torch
    except ImportError:
        return False
    mkldnn: Any = torch.backends.mkldnn  # untyped in torch
    return bool(mkldnn.is_available())


class E5Torch(E5Numpy):
    """E5Numpy with its forward pass on bf16 matrix units (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        import torch

        super().__init__(path)
        # One thread, as the analysis runs numpy's BLAS (monitor.analysis.analyzer.one_blas_thread): the
        # products are small, and a second thread spins for a core that 2 shared cores do not have free.
        torch.set_num_threads(1)
        self._torch: Any = torch
        t = torch.from_numpy
        self._t_position = t(self._position)
        self._t_type = t(self._type)
        self._t_norm = (t(self._norm[0]), t(self._norm[1]))
        self._t_layers = []
        for layer in self._layers:
            packed = [self._pack(w) for w in (layer.qkv, layer.out, layer.up, layer.down)]
            self._t_layers.append(
                (
                    packed,
                    t(layer.qkv_bias),
                    t(layer.out_bias),
                    (t(layer.attention_norm[0]), t(layer.attention_norm[1])),
                    t(layer.up_bias),
                    t(layer.down_bias),
                    (t(layer.output_norm[0]), t(layer.output_norm[1])),
                )
            )
        self._layers = []  # the float32 copies (85 MB): no longer needed

    def _pack(self, weight: np.ndarray) -> Any:
        """(nin, nout) float32 weights -> the (nout, nin) linear weight in bf16, packed in oneDNN's layout."""
        torch = self._torch
        w = torch.from_numpy(np.ascontiguousarray(weight.T)).bfloat16()
        return torch.ops.mkldnn._reorder_linear_weight(w, None)

    def _product(self, x: Any, packed: Any, bias: Any) -> Any:
        """x rounded to bf16, times the packed weights, plus bias, float32."""
        out = self._torch.ops.mkldnn._linear_pointwise(x.bfloat16(), packed, None, "none", [], "")
        result = out.float()
        result += bias
        return result

    def _forward(self, windows: Sequence[Sequence[int]]) -> np.ndarray:
        torch = self._torch
        functional = torch.nn.functional
        with torch.inference_mode():
            return self._forward_torch(windows, torch, functional)

    def _forward_torch(self, windows: Sequence[Sequence[int]], torch: Any, functional: Any) -> np.ndarray:
        t = self.tokenizer
        lengths = [len(w) + 2 for w in windows]
        n, h = sum(lengths), self.hidden
        rows = -(-n // ROW_STEP) * ROW_STEP
        ids = np.fromiter((i for w in windows for i in (t.bos, *w, t.eos)), np.int64, n)
        positions = torch.from_numpy(np.concatenate([np.arange(length) for length in lengths]))
        x = torch.zeros((rows, h), dtype=torch.float32)
        x[:n] = torch.from_numpy(_dequantise(self._word[ids])) + self._t_position[positions] + self._t_type
        eps = float(self.eps)
        x = functional.layer_norm(x, (h,), *self._t_norm, eps)
        heads, size = self.heads, h // self.heads
        spans = list(zip(np.concatenate([[0], np.cumsum(lengths)[:-1]]).tolist(), lengths, strict=True))
        attended = torch.zeros((rows, h), dtype=torch.float32)  # the padding rows stay 0
        for (qkv_w, out_w, up_w, down_w), qkv_b, out_b, a_norm, up_b, down_b, o_norm in self._t_layers:
            qkv = self._product(x, qkv_w, qkv_b)
            for start, length in spans:  # each window over its own tokens (see the module docstring)
                q, k, v = qkv[start : start + length].view(length, 3, heads, size).permute(1, 2, 0, 3)
                context = functional.scaled_dot_product_attention(q, k, v)
                attended[start : start + length] = context.permute(1, 0, 2).reshape(length, h)
            x = functional.layer_norm(x + self._product(attended, out_w, out_b), (h,), *a_norm, eps)
            mid = functional.gelu(self._product(x, up_w, up_b))
            x = functional.layer_norm(x + self._product(mid, down_w, down_b), (h,), *o_norm, eps)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        sums = np.add.reduceat(x[:n].numpy(), starts, axis=0)
        pooled: np.ndarray = sums * (np.float32(1.0) / np.asarray(lengths, np.float32))[:, None]
        return pooled
