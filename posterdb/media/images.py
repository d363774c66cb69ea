"""Turn files on disk (or uploaded bytes) into validated, fully decoded RGB poster images.

Every failure is an :class:`~posterdb.errors.ImageError` naming the file and a short reason;
nothing from PIL, the OS or numpy escapes. Decoding is thread-safe and touches no global PIL
settings: the pixel limit and the aspect-ratio limit are checked against the header size before
any pixel is decoded.

Bounded memory: a caller that only needs the image at some size (a model's 224² input, the OCR
detector's side) passes `fit`; then no more pixels are decoded than `REDUCING_GAP` × `fit` on
each side (at least `DECODE_FLOOR`): JPEGs are decoded at 1/2, 1/4 or 1/8 scale by libjpeg itself
(`Image.draft`), other formats are box-reduced right after loading, before any colour conversion,
by one factor for both sides (the aspect ratio is kept). The stored original
bytes and the recorded width and height are the original's. A `MemoryWindow` passed as
`window` is held for the decode's estimated size (`decode_cost`) while it runs.
"""
from __future__ import annotations

import errno
import hashlib
import io
import logging
import os
import stat
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from posterdb.core.errors import ImageError
from posterdb.media.window import MemoryWindow

log = logging.getLogger(__name__)

SUPPORTED_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"})
MAX_PIXELS = 40_000_000
MAX_FILE_BYTES = 64 * 1024**2
# Longest side over shortest: the real posters run from 1.3:1 to 1.8:1, the most elongated
# formats a dealer sells (door panels, inserts, banners) to about 3.5:1. Beyond 8:1 a file is a
# strip, a banner scan or garbage: refused with its shape, never stored (it cannot be embedded
# or read as a poster).
MAX_ASPECT = 8.0
# Decode at least this many times the size the caller resizes to (PIL's own `reducing_gap`
# default for thumbnails): the result of the caller's resize is then indistinguishable from one
# of the full image.
REDUCING_GAP = 2
# ... and never less than this a side: an ordinary poster (the shared ones are at most 600 px)
# decodes exactly as without `fit` (the same pixels, the same vectors as every other path);
# only scans bigger than twice this are reduced (a 6300² scan decodes at 1/4 scale: 1575²).
DECODE_FLOOR = 1024

# Formats we decode (MPO, a multi-picture JPEG, comes through the JPEG opener) and their suffixes.
FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF")
SUFFIX_OF = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "BMP": ".bmp", "TIFF": ".tif",
             "GIF": ".gif"}
_DEEP_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I", "F"})
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
# Modes whose box reduction is meaningful before conversion (not palettes, bilevel, I;16).
_REDUCIBLE = frozenset({"L", "I", "F", "LA", "La", "RGB", "RGBA", "RGBa", "CMYK", "YCbCr"})
_ORIENT = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
           4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
           6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
           8: Image.Transpose.ROTATE_90}
_WHITE = (255, 255, 255, 255)

Image.init()  # register every plugin now, not lazily from several threads at once


@dataclass(frozen=True)
class PosterImage:
    """A decoded poster: the original bytes plus an RGB image ready for embedding.

    `width`/`height` are the original's (upright, after EXIF rotation); `image` is that size,
    or smaller when decoded with a `fit` (then at least REDUCING_GAP × fit a side), or None
    once an ingest engine has turned it into the model's input."""

    path: str
    data: bytes = field(repr=False)
    sha256: str
    image: Image.Image | None = field(repr=False, compare=False)
    width: int
    height: int
    format: str
    suffix: str


class _Reject(Exception):
    """Internal: a decode failure whose reason is already human-readable."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of `data`."""
    return hashlib.sha256(data).hexdigest()


def _mib(n: int) -> str:
    return f"{n / 1024**2:.1f} MiB"


def _too_large(n: int, limit: int) -> str:
    return f"file too large ({_mib(n)} > {limit // 1024**2} MiB limit)"


def iter_image_files(root: Path) -> Iterator[Path]:
    """Image files under `root` (recursive, sorted, suffix case-insensitive); a file root yields itself.

    Symlinked directories are followed once each (loops are cut); symlinked files, broken links
    and other non-directories with an image suffix are yielded so that reading them reports why.
    """
    root = Path(root)
    if not root.is_dir():
        if os.path.lexists(root):
            yield root
            return
        raise ImageError(root, "file or folder not found")
    found: list[Path] = []
    seen: set[tuple[int, int]] = set()
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            st = folder.stat()
            if (st.st_dev, st.st_ino) in seen:  # reached again through a symlink
                continue
            seen.add((st.st_dev, st.st_ino))
            entries = list(os.scandir(folder))
        except OSError as e:
            log.warning("skipping folder %s: %s", folder, e.strerror or e)
            continue
        for entry in entries:
            try:
                is_dir = entry.is_dir()  # follows symlinks
            except OSError:
                is_dir = False
            if is_dir:
                stack.append(Path(entry.path))
            elif os.path.splitext(entry.name)[1].lower() in SUPPORTED_SUFFIXES:
                found.append(Path(entry.path))
    yield from sorted(found)


def _os_reason(e: OSError, path: str) -> str:
    if e.errno == errno.ENOENT:
        return "broken symlink (target missing)" if os.path.islink(path) else "file not found"
    if e.errno == errno.ELOOP:
        return "symlink loop"
    if e.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if e.errno == errno.EISDIR:
        return "is a directory"
    if e.errno == errno.ENAMETOOLONG:
        return "file name too long"
    return f"cannot read file: {e.strerror or e}"


def read_bytes(path: str | os.PathLike, *, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """The file's bytes, or ImageError: missing, directory, symlink loop, unreadable, empty, too large."""
    p = os.fspath(path)
    try:
        st = os.stat(p)
        if stat.S_ISDIR(st.st_mode):
            raise ImageError(p, "is a directory")
        if not stat.S_ISREG(st.st_mode):
            raise ImageError(p, "not a regular file (device, pipe or socket)")
        if st.st_size > max_bytes:
            raise ImageError(p, _too_large(st.st_size, max_bytes))
        with open(p, "rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as e:
        raise ImageError(p, _os_reason(e, p)) from e
    except ValueError as e:  # embedded NUL in the name
        raise ImageError(p, f"invalid file name: {e}") from e
    if not data:
        raise ImageError(p, "empty file (0 bytes)")
    if len(data) > max_bytes:
        raise ImageError(p, _too_large(len(data), max_bytes))
    return data


def _sniff_non_image(data: bytes) -> str:
    """Reason for bytes PIL could not identify: SVG, HTML, PDF or a known-but-unsupported format."""
    head = data[:2048].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith(b"<svg") or (head.startswith((b"<?xml", b"<!doctype svg")) and b"<svg" in head):
        return "SVG is not supported (vector image)"
    if head.startswith((b"<!doctype html", b"<html")) or b"<html" in head[:512]:
        return "not an image: HTML document"
    if head.startswith(b"%pdf"):
        return "not an image: PDF document"
    for fmt in FORMATS:  # right magic number, but PIL refused the header
        accept = Image.OPEN[fmt][1]
        ok = accept is not None and accept(data[:16])
        if ok and not isinstance(ok, str):
            return f"truncated or corrupt image data: unreadable {fmt} header"
    try:  # any other PIL format? (opening only parses the header; nothing is decoded)
        with Image.open(io.BytesIO(data)) as im:
            return f"unsupported image format {im.format}"
    except Exception:
        return "not an image: unrecognised format"


def _open_unchecked(data: bytes) -> Image.Image | None:
    """Open like Image.open but without PIL's own (global) pixel limit; None if unidentified."""
    prefix = data[:16]
    for fmt in FORMATS:
        factory, accept = Image.OPEN[fmt]
        ok = True if accept is None else accept(prefix)
        if not ok or isinstance(ok, str):
            continue
        try:
            return factory(io.BytesIO(data), "")
        except (SyntaxError, IndexError, TypeError, ValueError, OSError, EOFError):
            continue
    return None


def _open(data: bytes) -> Image.Image:
    try:
        return Image.open(io.BytesIO(data), formats=FORMATS)
    except UnidentifiedImageError:
        raise _Reject(_sniff_non_image(data)) from None
    except Image.DecompressionBombError:
        # Over PIL's global limit: re-open without it so that we can name the size.
        im = _open_unchecked(data)
        if im is None:
            raise _Reject("decompression bomb: image size exceeds PIL's limit") from None
        return im


def _deep_to_l(im: Image.Image) -> Image.Image:
    """16/32-bit integer or float greyscale to 8-bit L (scaled, not clipped as PIL's convert does)."""
    a = np.asarray(im)
    if im.mode.startswith("I;16"):
        return Image.fromarray((a.astype(np.uint32) // 257).astype(np.uint8))
    a = np.nan_to_num(a.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
    if im.mode == "F" and lo >= 0 and hi <= 1:
        a = a * 255
    elif lo >= 0 and hi <= 255:
        pass
    elif lo >= 0 and hi <= 65535:
        a = a / 257
    else:
        a = (a - lo) * (255 / (hi - lo)) if hi > lo else np.zeros_like(a)
    return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8))


def _to_rgb(im: Image.Image) -> Image.Image:
    """Any PIL mode to a new, standalone RGB image; transparency is composited on white."""
    mode = im.mode
    try:
        if mode in _DEEP_MODES:
            im = _deep_to_l(im)
        if mode == "La":  # premultiplied: PIL converts it only to LA
            im = im.convert("LA")
        if mode in _ALPHA_MODES or "transparency" in im.info:
            rgba = im.convert("RGBA")
            out = Image.new("RGBA", rgba.size, _WHITE)
            out.alpha_composite(rgba)
            return out.convert("RGB")
        return im.convert("RGB")
    except ValueError as e:
        raise _Reject(f"unsupported colour mode {mode}") from e


def decode_cost(im: Image.Image, original: tuple[int, int]) -> int:
    """Estimated peak bytes of decoding `im` (opened, drafted) to RGB: PIL's own buffer (4 bytes
    a pixel for RGB/RGBA/CMYK/I/F, 2 for I;16, 1 for L/P/1) plus up to three 4-byte copies made
    while converting (RGBA, the white composite, RGB); a progressive JPEG's coefficients at the
    original size (2 bytes a sample, whatever the draft scale); an animated WebP's canvases."""
    w, h = im.size
    stored = 1 if im.mode in ("1", "L", "P") else 2 if im.mode.startswith("I;16") else 4
    cost = w * h * (stored + 12)
    if im.format in ("JPEG", "MPO") and ("progressive" in im.info or "progression" in im.info):
        cost += original[0] * original[1] * 2 * len(im.getbands())
    if im.format == "WEBP" and getattr(im, "n_frames", 1) > 1:
        cost += w * h * 12
    return cost


def _wanted(size: tuple[int, int], fit: int | None) -> tuple[int, int] | None:
    """The least size worth decoding for a caller resizing to `fit` (None: everything)."""
    if not fit:
        return None
    side = max(1, int(fit) * REDUCING_GAP, DECODE_FLOOR)
    return min(size[0], side), min(size[1], side)


def _reduce(im: Image.Image, want: tuple[int, int] | None) -> Image.Image:
    """Box-reduce by a whole factor, the same on both sides (the aspect ratio is kept: CLIP
    crops), while each side stays ≥ `want` (no-op when it would not)."""
    if want is None:
        return im
    factor = min(im.width // want[0], im.height // want[1])
    return im.reduce(factor) if factor >= 2 else im


def _orientation(im: Image.Image) -> int:
    try:
        return int(im.getexif().get(0x0112, 1))
    except Exception as e:  # unreadable EXIF: keep the pixels as stored
        log.debug("ignoring bad EXIF: %s", e)
        return 1


def _decode(data: bytes, max_pixels: int, fit: int | None, window: MemoryWindow | None,
            max_aspect: float) -> tuple[Image.Image, str, tuple[int, int]]:
    im = _open(data)
    try:
        w, h = im.size
        if w <= 0 or h <= 0:
            raise _Reject(f"invalid image size {w}×{h}")
        if w * h > max_pixels:
            raise _Reject(f"decompression bomb: {w}×{h} exceeds {max_pixels:,} pixels")
        if max(w, h) > max_aspect * min(w, h):
            raise _Reject(f"extreme aspect ratio {w}×{h} ({max(w, h) / min(w, h):.3g}:1; a "
                          f"poster is at most {max_aspect:g}:1): crop or re-scan it")
        fmt = "JPEG" if im.format == "MPO" else str(im.format)
        want = _wanted(im.size, fit)
        if want is not None and fmt == "JPEG":
            im.draft(None, want)          # libjpeg decodes at 1/2, 1/4 or 1/8 scale
        cost = decode_cost(im, (w, h))
        with window.hold(cost) if window is not None else nullcontext():
            try:
                im.load()  # first frame only; raises on truncated data
                orientation = _orientation(im)   # after load: PNG's getexif() loads the pixels
                out = im
                if out.mode in _REDUCIBLE and "transparency" not in out.info:
                    out = _reduce(out, want)
                if orientation in _ORIENT:
                    out = out.transpose(_ORIENT[orientation])
                rgb = _reduce(_to_rgb(out), want)
            finally:   # free the big buffers before the window lets the next decode in
                out = None
                im.close()
        size = (h, w) if orientation in (5, 6, 7, 8) else (w, h)
        return rgb, fmt, size
    finally:
        im.close()


def _detail(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def decode(data: bytes, path: str = "upload", *, max_pixels: int = MAX_PIXELS,
           fit: int | None = None, window: MemoryWindow | None = None,
           max_aspect: float | None = None) -> PosterImage:
    """Validate and decode image bytes into a :class:`PosterImage`; ImageError for anything unusable.

    `fit`: the side the caller will resize the image to; only what that needs is decoded (see
    the module docstring). `window`: held for the decode's estimated bytes while it runs.
    `max_aspect`: longest over shortest side accepted (default MAX_ASPECT; math.inf: any)."""
    path = str(path)
    data = bytes(data)
    if not data:
        raise ImageError(path, "empty file (0 bytes)")
    if len(data) > MAX_FILE_BYTES:
        raise ImageError(path, _too_large(len(data), MAX_FILE_BYTES))
    try:
        image, fmt, (width, height) = _decode(data, max_pixels, fit, window,
                                              MAX_ASPECT if max_aspect is None else max_aspect)
    except _Reject as e:
        raise ImageError(path, e.reason) from e
    except MemoryError as e:
        raise ImageError(path, "image too large to decode (out of memory)") from e
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, struct.error, ...
        raise ImageError(path, f"truncated or corrupt image data: {_detail(e)}") from e
    return PosterImage(path=path, data=data, sha256=sha256_bytes(data), image=image,
                       width=width, height=height, format=fmt, suffix=SUFFIX_OF[fmt])


def open_poster(path: str | os.PathLike, *, max_pixels: int = MAX_PIXELS,
                fit: int | None = None) -> PosterImage:
    """read_bytes + decode."""
    return decode(read_bytes(path), os.fspath(path), max_pixels=max_pixels, fit=fit)
