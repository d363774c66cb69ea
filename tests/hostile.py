"""A reusable corpus of hostile, odd and valid-but-awkward image files for ingest tests.

``make_hostile_corpus(dir, real_poster)`` writes the files and returns ``{relative name: "ok" | "error"}``:
what ingest must do with each. Images are derived from a real poster resized to BASE_SIZE, so the
decoded size of every "ok" file is known (``EXPECTED_SIZES``).
"""
from __future__ import annotations

import io
import os
import random
import struct
import zlib
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

BASE_SIZE = (120, 180)                       # (width, height) of the derived images
EXIF_ROTATED = "exif_rotated.jpg"            # stored 120×180 with Orientation=6 ...
EXIF_ROTATED_SIZE = (180, 120)               # ... so it decodes to 180×120
TRUNCATE_AT = (0.02, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99)   # fractions of the JPEG kept
UNREADABLE = "unreadable.jpg"                # chmod 000: an error unless running as root
SYMLINK_LOOP = "loop.jpg"
DIRECTORY = "x.jpg"
DIR_LOOP = "sub/back"                        # sub/back -> .. (a directory loop, not a file)
NOT_YIELDED = frozenset({"vector.svg", DIRECTORY})   # iter_image_files skips these (suffix / folder)

# Decoded (width, height) of every "ok" file except the raw copies of the real poster.
EXPECTED_SIZES: dict[str, tuple[int, int]] = {}


def _save(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png(width: int, height: int, idat: bytes, depth: int = 8, colour: int = 0) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat)
            + _chunk(b"IEND", b""))


@lru_cache(maxsize=1)
def png_bomb(side: int = 30_000) -> bytes:
    """A valid side×side 1-bit greyscale PNG of zeros (~100 KiB for 30000², 900 M pixels)."""
    row = b"\x00" * (1 + (side + 7) // 8)     # filter byte + packed bits
    z = zlib.compressobj(9)
    block = row * 1000
    parts = [z.compress(block) for _ in range(side // 1000)]
    parts += [z.compress(row * (side % 1000)), z.flush()]
    return _png(side, side, b"".join(parts), depth=1)


def gif_bomb(side: int = 65_535) -> bytes:
    """A GIF whose screen and single frame claim side×side pixels, with only a few bytes of data."""
    header = b"GIF89a" + struct.pack("<HHBBB", side, side, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    frame = b"," + struct.pack("<HHHHB", 0, 0, side, side, 0) + b"\x02\x02\x44\x01\x00"
    return header + frame + b";"


def claim_size(jpeg: bytes, width: int, height: int) -> bytes:
    """Rewrite the SOF header of a baseline/progressive JPEG to claim width×height."""
    i = 2
    while i + 4 <= len(jpeg):
        marker, length = jpeg[i + 1], struct.unpack(">H", jpeg[i + 2:i + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            return jpeg[:i + 5] + struct.pack(">HH", height, width) + jpeg[i + 9:]
        i += 2 + length
    raise ValueError("no SOF marker")


def _exif_orientation(value: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = value
    return exif.tobytes()


def _images(real: bytes) -> dict[str, bytes]:
    """Files derived from the real poster (all decodable), keyed by name, with EXPECTED_SIZES set."""
    base = Image.open(io.BytesIO(real)).convert("RGB").resize(BASE_SIZE)
    w, h = BASE_SIZE
    grey = base.convert("L")
    rgba = base.convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(BASE_SIZE))
    la = grey.convert("LA")
    la.putalpha(128)
    pal = base.convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    frames = [base, base.rotate(180), grey.convert("RGB")]
    deep = np.asarray(grey, dtype=np.uint16) * 257
    out = {
        "progressive.jpg": _save(base, "JPEG", progressive=True, quality=85),
        "grayscale.jpg": _save(grey, "JPEG"),
        "cmyk.jpg": _save(base.convert("CMYK"), "JPEG"),        # libjpeg adds an Adobe marker (inverted)
        EXIF_ROTATED: _save(base, "JPEG", exif=_exif_orientation(6)),
        "png16.png": _save(Image.fromarray(deep), "PNG"),      # mode I;16
        "palette_transparent.png": _save(pal, "PNG", transparency=0),
        "rgba.png": _save(rgba, "PNG"),
        "la.png": _save(la, "PNG"),
        "bilevel.png": _save(base.convert("1"), "PNG"),
        "animated.gif": _save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100,
                              loop=0),
        "animated.webp": _save(frames[0], "WEBP", save_all=True, append_images=frames[1:],
                               duration=100),
        "image.webp": _save(base, "WEBP", quality=80),
        "image.bmp": _save(base, "BMP"),
        "image.tif": _save(base, "TIFF", compression="tiff_lzw"),
        "int32.tif": _save(Image.fromarray(deep.astype(np.int32)), "TIFF"),
        "float.tif": _save(Image.fromarray(np.asarray(grey, dtype=np.float32) / 255), "TIFF"),
        "one_pixel.png": _save(base.resize((1, 1)), "PNG"),
        "tiny16.jpg": _save(base.resize((16, 16)), "JPEG"),
        "name with spaces.jpg": _save(base, "JPEG"),
        "ünïcödé ポスター.jpg": _save(base, "JPEG"),
        "new\nline.jpg": _save(base, "JPEG"),
        "UPPER.JPEG": _save(base, "JPEG"),
        "jpeg_named.png": _save(base, "JPEG"),                 # format comes from the bytes
        "trailing_garbage.jpg": _save(base, "JPEG") + b"\x00" * 64 + b"garbage",
    }
    EXPECTED_SIZES.update({k: (w, h) for k in out})
    EXPECTED_SIZES.update({EXIF_ROTATED: EXIF_ROTATED_SIZE, "one_pixel.png": (1, 1),
                           "tiny16.jpg": (16, 16)})
    return out


def _broken(real: bytes) -> dict[str, bytes]:
    """Files that must be rejected, keyed by name."""
    rnd = random.Random(1234)
    out = {f"truncated_{int(f * 100):02d}.jpg": real[:max(3, int(len(real) * f))] for f in TRUNCATE_AT}
    prog = _save(Image.open(io.BytesIO(real)).convert("RGB"), "JPEG", progressive=True)
    png = _save(Image.open(io.BytesIO(real)).convert("RGB").resize(BASE_SIZE), "PNG")
    out.update({
        "truncated_end.jpg": real[:-2],                        # only the EOI marker missing
        "truncated_progressive.jpg": prog[:len(prog) * 2 // 3],
        "truncated.png": png[:len(png) // 2],
        "bad_crc.png": png[:40] + bytes([png[40] ^ 0xFF]) + png[41:],
        "header_only.jpg": real[:20],
        "empty.jpg": b"",
        "random.jpg": rnd.randbytes(4096),
        "random_with_jpeg_magic.jpg": b"\xff\xd8\xff\xe0" + rnd.randbytes(4096),
        "bomb.png": png_bomb(),
        "bomb_7000.png": png_bomb(7_000),                      # 49 M pixels: PIL opens it, we refuse
        "bomb.gif": gif_bomb(),
        "claims_50000.jpg": claim_size(real, 50_000, 50_000),
        "zero_width.png": _png(0, 10, zlib.compress(b"")),
        "vector.svg": b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" '
                      b'height="10"><rect width="10" height="10"/></svg>\n',
        "svg_named.png": b'<svg xmlns="http://www.w3.org/2000/svg"><circle r="5"/></svg>',
        "html.jpg": b"<!DOCTYPE html>\n<html><body>404 Not Found</body></html>\n",
        "text.jpg": b"hello, I am not a poster\n",
        "pdf.jpg": b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n",
        "icon_named.png": _save(Image.new("RGB", (16, 16), "red"), "ICO"),
    })
    return out


def _readable(path: Path) -> bool:
    """chmod 000 still reads as root (os.geteuid() == 0) unless DAC capabilities were dropped: probe."""
    try:
        with open(path, "rb"):
            return True
    except PermissionError:
        return False


def make_hostile_corpus(dir: Path, real_poster: Path) -> dict[str, str]:
    """Write the corpus into `dir`; return {relative name: "ok" | "error"} (see module docstring)."""
    dir = Path(dir)
    dir.mkdir(parents=True, exist_ok=True)
    real = Path(real_poster).read_bytes()
    expect: dict[str, str] = {}
    for kind, files in (("ok", _images(real)), ("error", _broken(real))):
        for name, data in files.items():
            (dir / name).write_bytes(data)
            expect[name] = kind
    (dir / "real.jpg").write_bytes(real)
    expect["real.jpg"] = "ok"
    (dir / "nested" / "deeper").mkdir(parents=True)
    (dir / "nested" / "deeper" / "real copy.jpg").write_bytes(real)
    expect["nested/deeper/real copy.jpg"] = "ok"
    os.symlink("real.jpg", dir / "link_to_real.jpg")
    expect["link_to_real.jpg"] = "ok"
    os.symlink("does-not-exist.jpg", dir / "broken_link.jpg")
    expect["broken_link.jpg"] = "error"
    os.symlink(SYMLINK_LOOP, dir / SYMLINK_LOOP)
    expect[SYMLINK_LOOP] = "error"
    (dir / DIRECTORY).mkdir()
    expect[DIRECTORY] = "error"
    os.mkfifo(dir / "fifo.jpg")
    expect["fifo.jpg"] = "error"
    (dir / "sub").mkdir()
    os.symlink("..", dir / DIR_LOOP)
    (dir / UNREADABLE).write_bytes(real)
    os.chmod(dir / UNREADABLE, 0)
    expect[UNREADABLE] = "ok" if _readable(dir / UNREADABLE) else "error"
    return expect
