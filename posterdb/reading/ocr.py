"""Read the text printed on a poster: lines, boxes and confidences, offline.

RapidOCR runs PaddleOCR's PP-OCR detector and recogniser as ONNX models that ship inside the
``rapidocr-onnxruntime`` wheel (the ``read`` extra), so nothing is downloaded at run time.
onnxruntime uses CUDA when the ``onnxruntime-gpu`` build is installed and a GPU is visible;
otherwise the CPU with a fixed number of threads (1 by default: the read stage runs beside
ingest and other work, at its own pace).

Extreme images are read, not refused: a poster is read at most `OCR_MAX_SIDE` pixels on its long
side (decoded little bigger than that: JPEGs at reduced scale; a 6000² scan reads its title in
~6 s with ~400 MB for the detector, vs ~12 s and ~900 MB at RapidOCR's own 2000), and one more
elongated than `OCR_MAX_ASPECT` is padded with white to that ratio first (RapidOCR otherwise
scales a 20-pixel side of a 10000×20 strip up to the detector's 480 pixels). Boxes
are mapped back to the stored image's pixels. Whatever goes wrong reading one image is an
ImageError naming it, so a caller reading many can record it and go on.
"""
from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from posterdb.core.errors import ImageError, RefusedError
from posterdb.media.images import REDUCING_GAP, decode, read_bytes

log = logging.getLogger(__name__)

ENGINE = "rapidocr-onnxruntime"
# The detector scales the short side up to this many pixels. RapidOCR's default (736) costs
# 0.37 s of CPU a poster at 182x268; 480 costs 0.24 s and reads these posters as well or better
# (measured on 30 shared posters). The 180-degree line classifier is off: posters are upright.
DET_SIDE = 480
OCR_MAX_SIDE = 1280      # long side read (RapidOCR reads up to 2000: 2x the time and memory)
OCR_MAX_ASPECT = 4.0     # more elongated images are padded with white to this ratio


class ReaderUnavailableError(RefusedError):
    """The OCR engine is not installed (the ``read`` extra)."""


@dataclass(frozen=True)
class ReadLine:
    """One line of text found on a poster: its box (4 corner points, pixels of the image read)."""

    text: str
    confidence: float
    box: tuple[tuple[float, float], ...]

    @property
    def height(self) -> float:
        ys = [p[1] for p in self.box]
        return max(ys) - min(ys)

    @property
    def top(self) -> float:
        return min(p[1] for p in self.box)

    def to_json(self) -> dict:
        return {"text": self.text, "confidence": round(self.confidence, 4),
                "box": [[round(x, 1), round(y, 1)] for x, y in self.box]}

    @classmethod
    def from_json(cls, d: dict) -> "ReadLine":
        return cls(str(d["text"]), float(d["confidence"]),
                   tuple((float(x), float(y)) for x, y in d["box"]))


def gpu_available() -> bool:
    """True when onnxruntime can run on CUDA here (the onnxruntime-gpu build and a visible GPU)."""
    try:
        import onnxruntime as ort
    except ImportError:
        return False
    return "CUDAExecutionProvider" in ort.get_available_providers() and ort.get_device() == "GPU"


class PosterReader:
    """Reads poster images with RapidOCR. One instance per thread (calls are serialised)."""

    def __init__(self, threads: int = 1, use_gpu: bool | None = None, min_confidence: float = 0.5,
                 det_side: int = DET_SIDE):
        try:
            import cv2
            from rapidocr_onnxruntime import RapidOCR
        except ImportError as e:  # pragma: no cover - depends on the install
            raise ReaderUnavailableError(
                "reading posters needs the OCR engine: pip install 'posterdb[read]' "
                f"({e})") from e
        cv2.setNumThreads(max(1, threads))
        self.use_gpu = gpu_available() if use_gpu is None else bool(use_gpu)
        self.threads = threads
        self.min_confidence = min_confidence
        kw = {"intra_op_num_threads": threads, "inter_op_num_threads": 1,
              "text_score": min_confidence, "det_limit_side_len": det_side, "use_cls": False}
        if self.use_gpu:
            kw.update(det_use_cuda=True, cls_use_cuda=True, rec_use_cuda=True)
        self._engine = RapidOCR(**kw)
        self._lock = threading.Lock()

    @property
    def device(self) -> str:
        return "cuda" if self.use_gpu else f"cpu×{self.threads}"

    def read_array(self, rgb: np.ndarray) -> list[ReadLine]:
        """Lines on an RGB uint8 image (H, W, 3), top to bottom as the detector orders them."""
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])
        with self._lock:
            result, _ = self._engine(bgr, use_cls=False)
        lines = []
        for box, text, score in result or ():
            text = str(text).strip()
            if not text:
                continue
            pts = tuple((float(x), float(y)) for x, y in box)
            lines.append(ReadLine(text, float(score), pts))
        return lines

    def read_image(self, image: Image.Image, size: tuple[int, int] | None = None
                   ) -> list[ReadLine]:
        """Lines on a PIL image, boxes in pixels of `size` (the original's, when `image` was
        decoded smaller; default: the image's own). Capped at OCR_MAX_SIDE and padded to at
        most OCR_MAX_ASPECT before reading."""
        w0, h0 = size or image.size
        fitted = prepare(image)
        lines = self.read_array(np.asarray(fitted.canvas))
        sx, sy = w0 / fitted.width, h0 / fitted.height
        if sx == sy == 1:
            return lines
        return [ReadLine(ln.text, ln.confidence, tuple((x * sx, y * sy) for x, y in ln.box))
                for ln in lines]

    def read_bytes(self, data: bytes, name: str = "<bytes>") -> list[ReadLine]:
        """Lines on an encoded image. Anything wrong (undecodable bytes, the OCR engine failing,
        memory) raises ImageError naming `name`."""
        poster = decode(data, name, fit=OCR_MAX_SIDE // REDUCING_GAP, max_aspect=math.inf)
        try:
            return self.read_image(poster.image, (poster.width, poster.height))
        except MemoryError as e:
            raise ImageError(name, "image too large to read (out of memory)") from e
        except Exception as e:  # onnxruntime, OpenCV and RapidOCR raise many kinds
            text = " ".join(str(e).split())[:160] or type(e).__name__
            raise ImageError(name, f"OCR failed: {type(e).__name__}: {text}") from e

    def read_path(self, path: str | Path) -> list[ReadLine]:
        """Lines on an image file (read bounded: a regular file of at most MAX_FILE_BYTES)."""
        return self.read_bytes(read_bytes(path), str(path))


@dataclass(frozen=True)
class Fitted:
    """What the detector is given: `canvas` (RGB), whose top-left `width`×`height` is the image."""

    canvas: Image.Image
    width: int
    height: int


def prepare(image: Image.Image, max_side: int = OCR_MAX_SIDE,
            max_aspect: float = OCR_MAX_ASPECT) -> Fitted:
    """The image as the detector should see it: RGB, long side at most `max_side`, and padded
    with white (right or bottom) to at most `max_aspect`: 1."""
    image = image.convert("RGB")
    w, h = image.size
    scale = min(1.0, max_side / max(w, h))
    if scale < 1:
        w, h = max(1, round(w * scale)), max(1, round(h * scale))
        image = image.resize((w, h), Image.BILINEAR)
    cw, ch = max(w, math.ceil(h / max_aspect)), max(h, math.ceil(w / max_aspect))
    if (cw, ch) == (w, h):
        return Fitted(image, w, h)
    canvas = Image.new("RGB", (cw, ch), (255, 255, 255))
    canvas.paste(image, (0, 0))
    return Fitted(canvas, w, h)


@lru_cache(maxsize=4)
def shared_reader(threads: int = 1) -> PosterReader:
    """One reader per thread count for the whole process (loading the models takes a second)."""
    return PosterReader(threads=threads)


def text_of(lines: list[ReadLine]) -> str:
    """The read lines as one searchable string (one line per row)."""
    return "\n".join(line.text for line in lines)
