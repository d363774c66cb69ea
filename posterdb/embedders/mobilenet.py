"""mobilenet-v2: ImageNet MobileNetV2 int8 (TFLite via ai-edge-litert), 1280-d pooled features.

The graph is cut in memory right after `MobilenetV2/Logits/AvgPool` (the classifier head and its
fixed-batch Reshape are dropped), so the features are a real output tensor and the interpreter can
run batches. If cutting fails, the full model runs one image at a time with all tensors preserved.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from pathlib import Path

import numpy as np
from PIL import Image

from posterdb.embedders.base import Embedder, l2_normalize
from posterdb.embedders.weights import (
    Download, default_model_dir, download_url, resolve_weights, sha256_file)

log = logging.getLogger(__name__)

FILENAME = "mobilenet_v2_1.0_224_quant.tflite"
URL = f"https://github.com/google-coral/test_data/raw/master/{FILENAME}"
SHA256 = "7aad0c74c5e3c06e5eb3c827e13304fdd68a83da6087d92ee169c24ff9fd4776"
FEATURE_TENSOR = "MobilenetV2/Logits/AvgPool"
SIZE = 224


def cut_model_at(model: bytes, tensor_name: str) -> bytes:
    """Rewrite a .tflite flatbuffer so `tensor_name` is the only output and later ops are gone."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    m = schema.ModelT.InitFromPackedBuf(bytearray(model), 0)
    sg = m.subgraphs[0]
    names = [t.name.decode() if isinstance(t.name, bytes) else t.name for t in sg.tensors]
    idx = names.index(tensor_name)
    producer = max(i for i, op in enumerate(sg.operators) if idx in list(op.outputs))
    sg.operators = sg.operators[: producer + 1]
    sg.outputs = [idx]
    m.signatureDefs = []
    b = flatbuffers.Builder(len(model) + 1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())



@contextlib.contextmanager
def _quiet_native_stderr():
    """Silence what native code writes to fd 2 (LiteRT's INFO line has no off switch).
    Python-level stderr is flushed first; a failure to redirect just leaves the line there."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
    except (OSError, ValueError, AttributeError):
        yield
        return
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)

class MobileNetV2Embedder(Embedder):
    """ImageNet MobileNetV2 int8 features; CPU only; preprocess = squash to 224x224 uint8 HWC."""

    name = "mobilenet-v2"
    version = "tflite-int8-1"
    dim = 1280
    device = "cpu"

    def __init__(self, *, model_dir: str | Path | None = None, weights: str | Path | None = None,
                 device: str | None = None, num_threads: int | None = None, batch_size: int = 64,
                 chunk: int = 8, allow_download: bool | None = None):
        if device not in (None, "cpu", "auto"):
            raise ValueError(f"mobilenet-v2 runs on the CPU only (got device={device!r})")
        from ai_edge_litert.interpreter import Interpreter

        self.path = resolve_weights(
            "mobilenet-v2", [FILENAME], explicit=weights, model_dir=model_dir,
            download=Download(URL, "github.com",
                              lambda: download_url(URL, Path(model_dir or default_model_dir()) / FILENAME, SHA256)),
            allow_download=allow_download)
        self.weights_sha256 = sha256_file(self.path)
        self.batch_size = batch_size
        self._threads = num_threads or os.cpu_count() or 1
        self._lock = threading.Lock()
        content = self.path.read_bytes()
        try:
            cut = cut_model_at(content, FEATURE_TENSOR)
            self._interp = {1: self._make(Interpreter, cut, 1)}
            self._chunk = max(1, int(chunk))
            if self._chunk > 1:
                self._interp[self._chunk] = self._make(Interpreter, cut, self._chunk)
        except Exception as e:  # unexpected graph layout: slower but correct fallback
            log.warning("%s: cannot cut graph at %s (%s); using preserve_all_tensors", self.path,
                        FEATURE_TENSOR, e)
            self._chunk = 1
            self._interp = {1: self._make(Interpreter, content, 1, preserve=True)}
        it = self._interp[1]
        self._in = it.get_input_details()[0]["index"]
        det = next((d for d in it.get_tensor_details() if d["name"] == FEATURE_TENSOR), None)
        if det is None or int(np.prod(det["shape"])) != self.dim:
            raise ValueError(f"{self.path}: no {self.dim}-d tensor named {FEATURE_TENSOR!r}; wrong model file?")
        self._out, self._qdtype = det["index"], det["dtype"]
        scale, zero = det["quantization"]
        self._scale, self._zero = (float(scale) or 1.0), float(zero)

    def _make(self, interpreter_cls, content: bytes, n: int, preserve: bool = False):
        with _quiet_native_stderr():  # LiteRT prints "INFO: Created ... XNNPACK delegate" here
            it = interpreter_cls(model_content=content, num_threads=self._threads,
                                 experimental_preserve_all_tensors=preserve)
            if n != 1:
                it.resize_tensor_input(it.get_input_details()[0]["index"], [n, SIZE, SIZE, 3])
            it.allocate_tensors()
        return it

    def preprocess(self, image: Image.Image) -> np.ndarray:
        """Whole poster squashed to 224x224 (bilinear, antialiased), uint8 HWC."""
        if image.mode != "RGB":
            image = image.convert("RGB")
        return np.asarray(image.resize((SIZE, SIZE), Image.BILINEAR), dtype=np.uint8)

    def _run(self, n: int, x: np.ndarray) -> np.ndarray:
        it = self._interp[n]
        it.set_tensor(self._in, x)
        it.invoke()
        return it.get_tensor(self._out).reshape(n, self.dim)

    def embed_batch(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=np.uint8)
        if batch.ndim != 4 or batch.shape[1:] != (SIZE, SIZE, 3):
            raise ValueError(f"mobilenet-v2 expects (n, {SIZE}, {SIZE}, 3) uint8, got {batch.shape}")
        q = np.empty((len(batch), self.dim), dtype=self._qdtype)
        c = self._chunk
        with self._lock:
            full = len(batch) - len(batch) % c
            for i in range(0, full, c):
                q[i:i + c] = self._run(c, batch[i:i + c])
            for i in range(full, len(batch)):
                q[i:i + 1] = self._run(1, batch[i:i + 1])
        return l2_normalize((q.astype(np.float32) - self._zero) * self._scale)
