"""posterdb.images: hostile files, conversions to RGB, bombs, thread safety, real posters."""
from __future__ import annotations

import hashlib
import os
import resource
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import hostile  # tests/ is on sys.path (rootdir conftest, no __init__.py)
import numpy as np
import pytest
from hostile import BASE_SIZE, EXPECTED_SIZES, make_hostile_corpus
from PIL import Image, ImageFile

from posterdb.core.errors import ImageError
from posterdb.media import images
from posterdb.media.images import (
    MAX_FILE_BYTES,
    SUPPORTED_SUFFIXES,
    PosterImage,
    decode,
    iter_image_files,
    open_poster,
    read_bytes,
    sha256_bytes,
)

REAL = "images/tt0015648.jpg"


@pytest.fixture(scope="module")
def real_poster(posters_dir) -> Path:
    return posters_dir / REAL


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, real_poster) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("hostile")
    return root, make_hostile_corpus(root, real_poster)


@pytest.fixture(scope="module")
def base(real_poster) -> Image.Image:
    """The RGB image every derived corpus file was made from."""
    return Image.open(real_poster).convert("RGB").resize(BASE_SIZE)


def _diff(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(np.asarray(a, dtype=np.float32) - np.asarray(b, dtype=np.float32)).mean())


def _outcome(path: Path) -> tuple[str, PosterImage | ImageError]:
    try:
        return "ok", open_poster(path)
    except ImageError as e:
        return "error", e


# ------------------------------------------------------------------ the hostile corpus

def test_corpus_is_big_enough(corpus):
    _, expect = corpus
    assert len(expect) >= 30
    assert sum(n.startswith("truncated_") for n in expect) >= 5
    assert {"ok", "error"} == set(expect.values())


def test_every_hostile_file_behaves_as_expected(corpus):
    root, expect = corpus
    for name, want in expect.items():
        got, result = _outcome(root / name)      # anything but ImageError fails the test
        assert got == want, f"{name!r}: expected {want}, got {result}"
        if got == "error":
            assert result.path == str(root / name)
            assert result.reason and "\n" not in result.reason
            assert str(root / name) in str(result)


def test_iter_image_files_over_the_corpus(corpus):
    root, expect = corpus
    t0 = time.perf_counter()
    found = list(iter_image_files(root))          # terminates despite sub/back -> ..
    assert time.perf_counter() - t0 < 5
    rel = [p.relative_to(root).as_posix() for p in found]
    assert set(rel) == set(expect) - hostile.NOT_YIELDED
    assert len(rel) == len(set(rel))              # the directory loop yields nothing twice
    assert found == sorted(found)
    for p in found:                               # what ingest does: never anything but ImageError
        assert _outcome(p)[0] == expect[p.relative_to(root).as_posix()]


@pytest.mark.parametrize("name, reason", [
    ("empty.jpg", "empty file (0 bytes)"),
    ("random.jpg", "not an image: unrecognised format"),
    ("text.jpg", "not an image: unrecognised format"),
    ("html.jpg", "not an image: HTML document"),
    ("pdf.jpg", "not an image: PDF document"),
    ("vector.svg", "SVG is not supported (vector image)"),
    ("svg_named.png", "SVG is not supported (vector image)"),
    ("icon_named.png", "unsupported image format ICO"),
    ("bomb.png", "decompression bomb: 30000×30000 exceeds 40,000,000 pixels"),
    ("bomb_7000.png", "decompression bomb: 7000×7000 exceeds 40,000,000 pixels"),
    ("bomb.gif", "decompression bomb: 65535×65535 exceeds 40,000,000 pixels"),
    ("claims_50000.jpg", "decompression bomb: 50000×50000 exceeds 40,000,000 pixels"),
    ("truncated_50.jpg", "truncated or corrupt image data: image file is truncated"),
    ("truncated_end.jpg", "truncated or corrupt image data: image file is truncated"),
    ("truncated_progressive.jpg", "truncated or corrupt image data"),
    ("truncated.png", "truncated or corrupt image data"),
    ("bad_crc.png", "truncated or corrupt image data: unreadable PNG header"),
    ("zero_width.png", "truncated or corrupt image data"),
    ("x.jpg", "is a directory"),
    ("loop.jpg", "symlink loop"),
    ("broken_link.jpg", "broken symlink (target missing)"),
    ("fifo.jpg", "not a regular file"),
])
def test_reasons_are_short_and_specific(corpus, name, reason):
    root, _ = corpus
    with pytest.raises(ImageError) as info:
        open_poster(root / name)
    assert info.value.reason.startswith(reason)
    assert len(info.value.reason) < 200


@pytest.mark.parametrize("frac", hostile.TRUNCATE_AT)
def test_truncated_jpeg_rejected_at_every_offset(corpus, frac):
    root, _ = corpus
    with pytest.raises(ImageError, match="truncated or corrupt"):
        open_poster(root / f"truncated_{int(frac * 100):02d}.jpg")


def test_unreadable_file(corpus):
    root, expect = corpus
    got, result = _outcome(root / hostile.UNREADABLE)
    assert got == expect[hostile.UNREADABLE]
    if os.geteuid() != 0:                      # root reads chmod 000 files (unless caps dropped)
        assert got == "error" and result.reason == "permission denied"
    if got == "error":
        assert result.reason == "permission denied"


def test_permission_denied_reason(monkeypatch, corpus):
    """Also checked as root, where chmod 000 cannot produce it."""
    root, _ = corpus

    def denied(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(images, "open", denied, raising=False)
    with pytest.raises(ImageError, match="permission denied"):
        open_poster(root / "real.jpg")


def test_missing_and_too_large(tmp_path, corpus):
    root, _ = corpus
    with pytest.raises(ImageError, match="file not found"):
        read_bytes(tmp_path / "nope.jpg")
    with pytest.raises(ImageError, match=r"file too large \(.* MiB limit\)"):
        read_bytes(root / "real.jpg", max_bytes=1024 * 1024 // 1024)
    with pytest.raises(ImageError, match="file too large"):
        decode(b"\xff\xd8" + bytes(MAX_FILE_BYTES))


# ------------------------------------------------------------------ conversions

def test_ok_files_become_standalone_rgb(corpus):
    root, expect = corpus
    for name, want in expect.items():
        if want != "ok":
            continue
        p = open_poster(root / name)
        data = (root / name).read_bytes()
        assert p.image.mode == "RGB" and type(p.image) is Image.Image, name
        assert (p.width, p.height) == p.image.size
        if name in EXPECTED_SIZES:
            assert p.image.size == EXPECTED_SIZES[name], name
        assert p.data == data and p.sha256 == hashlib.sha256(data).hexdigest()
        assert p.suffix == images.SUFFIX_OF[p.format] and p.suffix in SUPPORTED_SUFFIXES
        assert p.path == str(root / name)
        np.asarray(p.image).sum()               # fully loaded: no file behind it


def test_format_comes_from_the_bytes_not_the_name(corpus):
    root, _ = corpus
    p = open_poster(root / "jpeg_named.png")
    assert (p.format, p.suffix) == ("JPEG", ".jpg")
    assert open_poster(root / "image.tif").suffix == ".tif"
    assert open_poster(root / "animated.webp").format == "WEBP"


@pytest.mark.parametrize("name", ["png16.png", "int32.tif", "float.tif"])
def test_deep_images_are_scaled_not_clipped(corpus, base, name):
    root, _ = corpus
    img = open_poster(root / name).image
    assert _diff(img, base.convert("L").convert("RGB")) < 1.5


def test_cmyk_jpeg_colours_survive(corpus, base):
    root, _ = corpus
    raw = Image.open(root / "cmyk.jpg")
    assert raw.mode == "CMYK" and "adobe" in raw.info        # inverted Adobe CMYK
    assert _diff(open_poster(root / "cmyk.jpg").image, base) < 8


def test_transparency_is_composited_on_white(corpus, base):
    root, _ = corpus
    rgba = np.asarray(open_poster(root / "rgba.png").image)
    assert rgba[0].min() == 255                       # alpha 0 on the top row
    assert _diff(Image.fromarray(rgba[-1:]), base.crop((0, 179, 120, 180))) < 2   # opaque bottom
    la = np.asarray(open_poster(root / "la.png").image, dtype=np.float32)
    expected = (np.asarray(base.convert("L"), dtype=np.float32)[..., None] * 128 + 255 * 127) / 255
    assert np.abs(la - expected).mean() < 2
    pal = np.asarray(open_poster(root / "palette_transparent.png").image)
    assert pal.shape == (180, 120, 3)


def test_exif_rotation_swaps_width_and_height(corpus, base):
    root, _ = corpus
    assert Image.open(root / hostile.EXIF_ROTATED).size == BASE_SIZE
    p = open_poster(root / hostile.EXIF_ROTATED)
    assert (p.width, p.height) == hostile.EXIF_ROTATED_SIZE
    right = _diff(p.image, base.transpose(Image.Transpose.ROTATE_270))   # JPEG-lossy, so compare
    wrong = _diff(p.image, base.transpose(Image.Transpose.ROTATE_90))
    assert right < 12 and right < wrong / 2


def test_animated_images_give_the_first_frame(corpus, base):
    root, _ = corpus
    for name in ("animated.gif", "animated.webp"):
        img = open_poster(root / name).image
        assert _diff(img, base) < _diff(img, base.rotate(180)) / 2, name


def test_decode_accepts_uploads(corpus):
    root, _ = corpus
    data = (root / "real.jpg").read_bytes()
    p = decode(bytearray(data))
    assert p.path == "upload" and p.sha256 == sha256_bytes(data)
    assert decode(memoryview(data), "poster.jpg").path == "poster.jpg"
    with pytest.raises(ImageError) as info:
        decode(b"", "x.png")
    assert (info.value.path, info.value.reason) == ("x.png", "empty file (0 bytes)")


# ------------------------------------------------------------------ bombs and global state

def test_bombs_rejected_fast_without_allocating(corpus):
    root, _ = corpus
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss   # KiB on Linux
    t0 = time.perf_counter()
    for name in ("bomb.png", "bomb_7000.png", "bomb.gif", "claims_50000.jpg"):
        with pytest.raises(ImageError, match="decompression bomb"):
            open_poster(root / name)
    assert time.perf_counter() - t0 < 1.0
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown < 100 * 1024, f"peak RSS grew by {grown} KiB"
    assert (root / "bomb.png").stat().st_size < 200_000


def test_max_pixels_is_per_call_and_global_pil_state_untouched(corpus):
    root, _ = corpus
    limit, truncated = Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES
    with pytest.raises(ImageError, match="decompression bomb: 182×268 exceeds 1,000 pixels"):
        open_poster(root / "real.jpg", max_pixels=1000)
    assert open_poster(root / "real.jpg").width == 182
    assert (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES) == (limit, truncated)


def test_our_limit_not_pils_global_one_decides(monkeypatch, corpus):
    """Image.open refuses over 2 × Image.MAX_IMAGE_PIXELS; decode re-opens and applies max_pixels."""
    root, _ = corpus
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)     # real.jpg has 48,776 pixels
    with pytest.raises(Image.DecompressionBombError):
        Image.open(root / "real.jpg")
    assert open_poster(root / "real.jpg").image.size == (182, 268)
    with pytest.raises(ImageError, match="decompression bomb: 182×268 exceeds 40,000 pixels"):
        open_poster(root / "real.jpg", max_pixels=40_000)


# ------------------------------------------------------------------ iter_image_files

def test_iter_image_files_single_file_and_missing(tmp_path, corpus):
    root, _ = corpus
    assert list(iter_image_files(root / "real.jpg")) == [root / "real.jpg"]
    assert list(iter_image_files(root / "loop.jpg")) == [root / "loop.jpg"]
    with pytest.raises(ImageError, match="not found"):
        list(iter_image_files(tmp_path / "missing"))
    (tmp_path / "a").mkdir()
    for name in ("B.PNG", "a/c.Jpg", "a/notes.txt", "z.jpeg", "a/d.TIFF", "e.heic"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.relative_to(tmp_path).as_posix() for p in iter_image_files(tmp_path)] == \
        ["B.PNG", "a/c.Jpg", "a/d.TIFF", "z.jpeg"]


def test_iter_image_files_follows_symlinked_folders_once(tmp_path, corpus):
    root, _ = corpus
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "p.jpg").write_bytes((root / "real.jpg").read_bytes())
    os.symlink(tmp_path / "real", tmp_path / "z_link")
    os.symlink(tmp_path, tmp_path / "real" / "up")        # loop back to the top
    found = list(iter_image_files(tmp_path))
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["real/p.jpg"]


# ------------------------------------------------------------------ real posters, threads

def test_thread_pool_matches_sequential(posters_dir, label_rows):
    paths = [posters_dir / r["file"] for r in label_rows[::100][:50]]
    assert len(paths) == 50
    seq = [open_poster(p) for p in paths]
    with ThreadPoolExecutor(max_workers=8) as pool:
        par = list(pool.map(open_poster, paths))
    for a, b in zip(seq, par):
        assert (a.sha256, a.image.size) == (b.sha256, b.image.size)
        assert a.image.tobytes() == b.image.tobytes()


def test_real_posters_decode(posters_dir, label_rows):
    for r in label_rows[::5]:
        p = open_poster(posters_dir / r["file"])
        assert p.format == "JPEG" and p.image.mode == "RGB" and p.suffix == ".jpg"
        assert 80 <= p.width <= 400 and 120 <= p.height <= 600


def test_greyscale_real_posters_become_rgb(posters_dir, label_rows):
    grey = [r for r in label_rows if Image.open(posters_dir / r["file"]).mode == "L"][:3]
    for r in grey:
        img = open_poster(posters_dir / r["file"]).image
        a = np.asarray(img)
        assert img.mode == "RGB" and (a[..., 0] == a[..., 1]).all()


def test_poster_image_repr_is_short(corpus):
    root, _ = corpus
    assert len(repr(open_poster(root / "real.jpg"))) < 400


# ------------------------------------------------------------------ bounded memory (issue 19)

def _save_bytes(im: Image.Image, fmt: str, **kw) -> bytes:
    import io

    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


@pytest.fixture(scope="module")
def big_scan(base) -> Image.Image:
    """The real poster blown up to a 2400×3600 scan (8.6 M pixels)."""
    return base.resize((2400, 3600), Image.Resampling.BICUBIC)


def _exif(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


@pytest.mark.parametrize("kind", ["baseline", "progressive", "cmyk", "exif6"])
def test_fit_decodes_a_huge_jpeg_at_reduced_scale(big_scan, kind):
    from posterdb.media.window import MemoryWindow

    src = big_scan.convert("CMYK") if kind == "cmyk" else big_scan
    kw = {"progressive": {"progressive": True}, "exif6": {"exif": _exif(6)}}.get(kind, {})
    data = _save_bytes(src, "JPEG", quality=90, **kw)
    window = MemoryWindow(64 * 1024**2)
    small = decode(data, kind, fit=224, window=window)
    full = decode(data, kind)
    upright = (3600, 2400) if kind == "exif6" else (2400, 3600)
    assert (small.width, small.height) == (full.width, full.height) == upright  # the original's
    assert full.image.size == upright
    assert small.data == data and small.sha256 == full.sha256
    assert small.image.size == tuple(s // 2 for s in upright)    # 1/2 scale, the aspect kept
    assert min(small.image.size) >= images.DECODE_FLOOR
    assert (small.image.width > small.image.height) == (kind == "exif6")       # rotated too
    stats = window.stats()
    assert stats["grants"] == 1 and stats["in_use"] == 0
    full_cost = 2400 * 3600 * 16
    if kind == "progressive":    # libjpeg keeps every coefficient at full size (2 bytes each)
        assert 2400 * 3600 * 2 <= stats["largest"] <= full_cost / 4 + 2400 * 3600 * 6, stats
    else:                        # what was held: the reduced decode
        assert stats["largest"] <= full_cost / 4, stats
    # the model's input from the reduced decode is the full decode's, within JPEG noise
    for side in (224, 32):
        a = np.asarray(small.image.resize((side, side), Image.BILINEAR), np.float32)
        b = np.asarray(full.image.resize((side, side), Image.BILINEAR), np.float32)
        assert np.abs(a - b).mean() < 3, (side, np.abs(a - b).mean())


def _zeros_png(side: int, depth: int, colour: int, channels: int) -> bytes:
    """A valid side×side PNG of zero samples: a few KiB on disk, side² pixels decoded."""
    import struct
    import zlib

    row = b"\x00" * (1 + (side * channels * depth + 7) // 8)
    z = zlib.compressobj(9)
    idat = b"".join(z.compress(row * 100) for _ in range(side // 100))
    idat += z.compress(row * (side % 100)) + z.flush()
    return (b"\x89PNG\r\n\x1a\n" + hostile._chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, depth,
                                                                      colour, 0, 0, 0))
            + hostile._chunk(b"IDAT", idat) + hostile._chunk(b"IEND", b""))


@pytest.mark.parametrize("depth, colour, channels", [(8, 6, 4), (16, 6, 4), (16, 0, 1), (1, 0, 1)])
def test_fit_reduces_huge_pngs_of_tiny_files(depth, colour, channels):
    """3000² PNGs of a few KiB (RGBA, 16-bit RGBA, 16-bit grey, bilevel): the window is held for
    the whole decode, the image comes back reduced, transparency on white, size the original's.
    (Whole-factor box reduction: 3000 // 1024 = 2.)"""
    from posterdb.media.window import MemoryWindow

    data = _zeros_png(3000, depth, colour, channels)
    assert len(data) < 200_000
    window = MemoryWindow(1024**2)                      # smaller than one decode: granted alone
    p = decode(data, "z.png", fit=224, window=window)
    assert (p.width, p.height) == (3000, 3000)
    assert p.image.size == (1500, 1500)                # reduced by 2: still ≥ DECODE_FLOOR
    px = np.asarray(p.image)
    assert px.dtype == np.uint8 and px.shape[2] == 3
    assert (px == 255).all() if colour == 6 else (px == 0).all()     # alpha 0 -> white
    assert window.stats()["largest"] >= 3000 * 3000 and window.in_use == 0


@pytest.mark.parametrize("size", [(10000, 20), (20, 10000), (801, 100)])
def test_extreme_aspect_ratios_are_refused_with_their_shape(size):
    import math

    data = _save_bytes(Image.new("RGB", size, "white"), "PNG")
    w, h = size
    with pytest.raises(ImageError) as info:
        decode(data, "strip.png", fit=224)
    ratio = f"{max(w, h) / min(w, h):.3g}:1"
    assert info.value.reason.startswith(f"extreme aspect ratio {w}×{h} ({ratio}; a poster is "
                                        "at most 8:1)")
    assert decode(data, "strip.png", max_aspect=math.inf).image.size == size   # for reading
    assert decode(_save_bytes(Image.new("RGB", (800, 100)), "PNG")).width == 800   # 8:1 is fine


def test_ordinary_posters_decode_as_without_fit(posters_dir, label_rows):
    """Below DECODE_FLOOR nothing is reduced: the same pixels, so the same vectors as any path
    that decodes in full (classify, fine-tune)."""
    for r in label_rows[::500]:
        data = (posters_dir / r["file"]).read_bytes()
        assert decode(data, fit=224).image.tobytes() == decode(data).image.tobytes()


def test_bombs_still_refused_before_any_pixel_with_fit(corpus):
    from posterdb.media.window import MemoryWindow

    root, _ = corpus
    window = MemoryWindow(1024**2)
    for name in ("bomb.png", "bomb_7000.png", "bomb.gif", "claims_50000.jpg"):
        with pytest.raises(ImageError, match="decompression bomb"):
            decode((root / name).read_bytes(), name, fit=224, window=window)
    assert window.stats()["grants"] == 0                 # refused from the header alone


def test_many_frames_and_truncated_huge_files_with_fit(base, big_scan):
    frames = [base.rotate(i * 3) for i in range(120)]
    pal = [f.convert("P", palette=Image.Palette.WEB) for f in frames]   # no quantising per frame
    for fmt, fr, kw in (("GIF", pal, {}), ("WEBP", frames, {"method": 0, "quality": 10})):
        data = _save_bytes(fr[0], fmt, save_all=True, append_images=fr[1:], duration=10, **kw)
        t0 = time.perf_counter()
        img = decode(data, f"anim.{fmt}", fit=224).image
        assert time.perf_counter() - t0 < 2, fmt        # the first frame only, not 120
        assert _diff(img, base) < _diff(img, base.rotate(180)) / 2, fmt
    for kw in ({}, {"progressive": True}):
        data = _save_bytes(big_scan, "JPEG", quality=90, **kw)
        with pytest.raises(ImageError, match="truncated or corrupt"):
            decode(data[: len(data) // 2], "half.jpg", fit=224)


def test_memory_window_accounting():
    """The window's books, not its timing: 8 threads × 50 grants of random sizes; at every moment
    the bytes held stay within the capacity (or one oversize grant alone), all are returned."""
    import random
    import threading

    from posterdb.media.window import MemoryWindow

    window = MemoryWindow(1000)
    lock = threading.Lock()
    inside: list[int] = []
    seen: list[tuple[int, int]] = []                    # (bytes held, holders) at each entry
    rnd = random.Random(7)
    sizes = [[rnd.choice([1, 10, 100, 400, 999, 1000, 5000]) for _ in range(50)] for _ in range(8)]

    def worker(mine: list[int]) -> None:
        for n in mine:
            with window.hold(n) as got:
                assert got == n
                with lock:
                    inside.append(n)
                    seen.append((sum(inside), len(inside)))
                time.sleep(0)
                with lock:
                    inside.remove(n)

    threads = [threading.Thread(target=worker, args=(s,)) for s in sizes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for held, holders in seen:
        assert held <= 1000 or holders == 1, (held, holders)
    stats = window.stats()
    assert stats["in_use"] == 0 and window.holders == 0
    assert stats["grants"] == 400 == len(seen)
    assert stats["largest"] == 5000 and stats["peak"] >= 5000
    assert max(h for h, n in seen if n > 1) <= 1000
    with pytest.raises(RuntimeError, match="released more"):
        window.release(1)
    with pytest.raises(ValueError):
        MemoryWindow(0)
    with window.hold(-5) as got:                          # nonsense sizes count as nothing
        assert got == 0
    from posterdb.media.window import TRIM_ABOVE, give_back_freed_memory

    with window.hold(TRIM_ABOVE):                         # a big grant gives back on release
        pass
    assert window.stats()["trims"] == (1 if give_back_freed_memory() else 0)
