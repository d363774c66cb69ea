"""Read the text printed on a poster: lines, boxes and confidences, offline.

RapidOCR runs PaddleOCR's PP-OCR detector and recogniser as ONNX models that ship inside the
``rapidocr-onnxruntime`` wheel (the ``read`` extra), so nothing is downloaded at run time.
onnxruntime uses CUDA when the ``onnxruntime-gpu`` build is installed and a GPU is visible;
otherwise the CPU with a fixed number of threads (1 by default: the read stage runs beside
ingest and other work, at its own pace).
"""
from __future__ import annotations

import io
import logging
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from posterdb.core.errors import ImageError, RefusedError

log = logging.getLogger(__name__)

ENGINE = "rapidocr-onnxruntime"
# The detector scales the short side up to this many pixels. RapidOCR's default (736) costs
# 0.37 s of CPU a poster at 182x268; 480 costs 0.24 s and reads these posters as well or better
# (measured on 30 shared posters). The 180-degree line classifier is off: posters are upright.
DET_SIDE = 480


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

    def read_image(self, image: Image.Image) -> list[ReadLine]:
        return self.read_array(np.asarray(image.convert("RGB")))

    def read_bytes(self, data: bytes, name: str = "<bytes>") -> list[ReadLine]:
        """Lines on an encoded image; undecodable bytes raise ImageError naming `name`."""
        try:
            with Image.open(io.BytesIO(data)) as im:
                im = ImageOps.exif_transpose(im).convert("RGB")
        except Exception as e:  # PIL raises many kinds
            raise ImageError(name, f"cannot decode image ({type(e).__name__})") from e
        return self.read_image(im)

    def read_path(self, path: str | Path) -> list[ReadLine]:
        try:
            data = Path(path).read_bytes()
        except OSError as e:
            raise ImageError(path, e.strerror or str(e)) from e
        return self.read_bytes(data, str(path))


@lru_cache(maxsize=4)
def shared_reader(threads: int = 1) -> PosterReader:
    """One reader per thread count for the whole process (loading the models takes a second)."""
    return PosterReader(threads=threads)


def text_of(lines: list[ReadLine]) -> str:
    """The read lines as one searchable string (one line per row)."""
    return "\n".join(line.text for line in lines)
