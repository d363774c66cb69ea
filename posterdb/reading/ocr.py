"""Read the text printed on a poster: lines, boxes and confidences, offline.

RapidOCR runs PaddleOCR's PP-OCR detector and recogniser as ONNX models that ship inside the
``rapidocr-onnxruntime`` wheel (the ``read`` extra), so nothing is downloaded at run time.
onnxruntime uses CUDA when the ``onnxruntime-gpu`` build is installed and a GPU is visible;
otherwise the CPU.

Extreme images are read, not refused: a poster is read at most `OCR_MAX_SIDE` pixels on its long
side (decoded little bigger than that: JPEGs at reduced scale; a 6000² scan reads its title in
~6 s with ~400 MB for the detector, vs ~12 s and ~900 MB at RapidOCR's own 2000), and one more
elongated than `OCR_MAX_ASPECT` is padded with white to that ratio first (RapidOCR otherwise
scales a 20-pixel side of a 10000×20 strip up to the detector's 480 pixels). Boxes
are mapped back to the stored image's pixels. Whatever goes wrong reading one image is an
ImageError naming it, so a caller reading many can record it and go on.

Where the time goes (measured on 40 shared posters, one core, RapidOCR's defaults: 0.41 CPU-s
a poster): the detector ~0.12 s, the recogniser ~0.27 s for ~8 text boxes. The reader runs the
two stages itself so that it can

* skip boxes too small to hold a title (shorter than `MIN_LINE_HEIGHT` of the poster's height:
  credits and fine print; on 811 read shared posters identification finds the same films
  without them) — about half of the boxes, and the widest, most expensive ones;
* recognise the crops in width-sorted batches: `rec_batch` 1 on the CPU, where padding a
  batch to its widest crop costs more than the batch saves (a batch of 6, RapidOCR's default,
  takes 1.8x the CPU time of one crop at a time on these posters), 16 on a GPU;
* read a scan larger than `READ_SIDE` on its short side scaled down to it (what a dealer's
  large scan costs is what a 480-px one does);
* use several cores: `threads` engines of one onnxruntime thread each read that many posters
  side by side (`read_many`; onnxruntime and OpenCV release the GIL), instead of one engine
  splitting a small image's convolutions across threads.

Together: ~0.22 CPU-s a poster, so two cores read ~7 posters/s when nothing else runs
(`python -m bench --only watch-speed`; docs/intake.md).
"""
from __future__ import annotations

import logging
import math
import queue
import threading
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
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
READ_SIDE = DET_SIDE     # a larger short side is scaled down to this before reading
MIN_LINE_HEIGHT = 0.03   # of the poster's height: smaller boxes are not read
MIN_LINE_PIXELS = 4      # and never a box under this many pixels
CPU_REC_BATCH, GPU_REC_BATCH = 1, 16


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


def _sorted_boxes(boxes: np.ndarray) -> list[np.ndarray]:
    """Top to bottom, left to right (boxes within 10 px of height count as one row)."""
    out = sorted(boxes, key=lambda b: (b[0][1], b[0][0]))
    for i in range(len(out) - 1):
        for j in range(i, -1, -1):
            if abs(out[j + 1][0][1] - out[j][0][1]) < 10 and out[j + 1][0][0] < out[j][0][0]:
                out[j], out[j + 1] = out[j + 1], out[j]
            else:
                break
    return out


def _crop(img: np.ndarray, box: np.ndarray) -> np.ndarray:
    """The box's quadrilateral warped upright (a tall crop is turned on its side)."""
    import cv2

    pts = box.astype(np.float32)
    w = int(max(np.linalg.norm(pts[0] - pts[1]), np.linalg.norm(pts[2] - pts[3])))
    h = int(max(np.linalg.norm(pts[0] - pts[3]), np.linalg.norm(pts[1] - pts[2])))
    w, h = max(w, 1), max(h, 1)
    dst = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
    out = cv2.warpPerspective(img, cv2.getPerspectiveTransform(pts, dst), (w, h),
                              borderMode=cv2.BORDER_REPLICATE, flags=cv2.INTER_CUBIC)
    return np.rot90(out) if out.shape[0] >= 1.5 * out.shape[1] else out


class PosterReader:
    """Reads poster images with RapidOCR; thread-safe. `threads` engines of one onnxruntime
    thread each read that many posters at once (`read_many`); on a GPU, one engine."""

    def __init__(self, threads: int = 1, use_gpu: bool | None = None, min_confidence: float = 0.5,
                 det_side: int = DET_SIDE, min_line_height: float = MIN_LINE_HEIGHT,
                 rec_batch: int | None = None, read_side: int | None = READ_SIDE):
        try:
            import cv2
            from rapidocr_onnxruntime import RapidOCR
        except ImportError as e:  # pragma: no cover - depends on the install
            raise ReaderUnavailableError(
                "reading posters needs the OCR engine: pip install 'posterdb[read]' "
                f"({e})") from e
        cv2.setNumThreads(1)
        self.use_gpu = gpu_available() if use_gpu is None else bool(use_gpu)
        self.workers = 1 if self.use_gpu else max(1, int(threads))
        self.threads = self.workers
        self.min_confidence = min_confidence
        self.min_line_height = float(min_line_height)
        self.read_side = read_side
        batch = rec_batch or (GPU_REC_BATCH if self.use_gpu else CPU_REC_BATCH)
        kw = {"intra_op_num_threads": 1, "inter_op_num_threads": 1,
              "text_score": min_confidence, "det_limit_side_len": det_side, "use_cls": False,
              "rec_batch_num": batch}
        if self.use_gpu:
            kw.update(det_use_cuda=True, cls_use_cuda=True, rec_use_cuda=True)
        self._free: queue.SimpleQueue = queue.SimpleQueue()
        for _ in range(self.workers):
            self._free.put(RapidOCR(**kw))
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    @property
    def device(self) -> str:
        return "cuda" if self.use_gpu else f"cpu×{self.workers}"

    def _lines(self, engine, bgr: np.ndarray, height: int) -> list[ReadLine]:
        """Detect, keep the boxes tall enough for a title (of `height`, the image's own rows
        in `bgr`: a padded canvas is taller), recognise them."""
        import cv2

        h0, w0 = bgr.shape[:2]
        scale = 1.0
        if self.read_side and min(h0, w0) > self.read_side:
            scale = self.read_side / min(h0, w0)
            bgr = cv2.resize(bgr, (max(1, round(w0 * scale)), max(1, round(h0 * scale))),
                             interpolation=cv2.INTER_AREA)
        if min(bgr.shape[:2]) < 8:
            return []
        boxes, _ = engine.text_det(bgr)
        if boxes is None or len(boxes) == 0:
            return []
        floor = max(MIN_LINE_PIXELS, self.min_line_height * height * scale)
        kept, crops = [], []
        for box in _sorted_boxes(boxes):
            crop = _crop(bgr, box)
            if min(crop.shape[:2]) >= floor:
                kept.append(box)
                crops.append(crop)
        if not crops:
            return []
        texts, _ = engine.text_rec(crops)
        lines = []
        for box, got in zip(kept, texts):
            text, score = str(got[0]).strip(), float(got[1])
            if text and score >= self.min_confidence:
                pts = tuple((float(x) / scale, float(y) / scale) for x, y in box)
                lines.append(ReadLine(text, score, pts))
        return lines

    def read_array(self, rgb: np.ndarray, height: int | None = None) -> list[ReadLine]:
        """Lines on an RGB uint8 image (H, W, 3), top to bottom as the detector orders them;
        `height`: the rows that are the poster (default: all)."""
        bgr = np.ascontiguousarray(np.asarray(rgb)[:, :, ::-1])
        engine = self._free.get()
        try:
            return self._lines(engine, bgr, height or bgr.shape[0])
        finally:
            self._free.put(engine)

    def read_image(self, image: Image.Image, size: tuple[int, int] | None = None
                   ) -> list[ReadLine]:
        """Lines on a PIL image, boxes in pixels of `size` (the original's, when `image` was
        decoded smaller; default: the image's own). Capped at OCR_MAX_SIDE and padded to at
        most OCR_MAX_ASPECT before reading."""
        w0, h0 = size or image.size
        fitted = prepare(image)
        lines = self.read_array(np.asarray(fitted.canvas), fitted.height)
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

    def read_many(self, paths: Iterable[str | Path]) -> Iterator[list[ReadLine] | ImageError]:
        """Each path's lines (or the ImageError it raised), in the order given, read by every
        engine at once; yielded in order as soon as each is ready."""
        paths = list(paths)
        if self.workers == 1 or len(paths) < 2:
            for p in paths:
                yield _attempt(self.read_path, p)
            return
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="ocr")
        window = 2 * self.workers    # a few ahead: decoding overlaps, memory stays small
        futures = [self._pool.submit(_attempt, self.read_path, p) for p in paths[:window]]
        for i in range(len(paths)):
            if i + window < len(paths):
                futures.append(self._pool.submit(_attempt, self.read_path, paths[i + window]))
            yield futures[i].result()


def _attempt(read, path) -> list[ReadLine] | ImageError:
    try:
        return read(path)
    except ImageError as e:
        return e


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
    """One reader per engine count for the whole process (loading the models takes a second)."""
    return PosterReader(threads=threads)


def text_of(lines: Sequence[ReadLine]) -> str:
    """The read lines as one searchable string (one line per row)."""
    return "\n".join(line.text for line in lines)
