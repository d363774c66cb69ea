"""OCR on real shared posters with the PP-OCR models shipped in the rapidocr-onnxruntime wheel."""
from __future__ import annotations

import pytest

pytest.importorskip("rapidocr_onnxruntime")

from posterdb.core.errors import ImageError  # noqa: E402
from posterdb.reading.identify.text import squash  # noqa: E402
from posterdb.reading.ocr import PosterReader, ReadLine, text_of  # noqa: E402


@pytest.fixture(scope="module")
def reader():
    return PosterReader(threads=1)


@pytest.mark.parametrize("imdb_id, title", [
    ("tt0011841", "WAYDOWNEAST"),   # Way Down East (1920)
    ("tt0012349", "THEKID"),        # The Kid (1921)
    ("tt0011000", "SATANSBOOK"),    # Leaves From Satan's Book (1920)
])
def test_reads_the_title_on_a_shared_poster(reader, posters_dir, imdb_id, title):
    lines = reader.read_path(posters_dir / "images" / f"{imdb_id}.jpg")
    assert lines and all(isinstance(ln, ReadLine) for ln in lines)
    assert title in squash(text_of(lines))
    best = max(lines, key=lambda ln: title in squash(ln.text))
    assert best.confidence > 0.9
    assert len(best.box) == 4 and best.height > 5          # pixels of the 182x268 scan
    assert all(0 <= x <= 200 and 0 <= y <= 300 for x, y in best.box)
    assert ReadLine.from_json(best.to_json()).text == best.text


def test_bytes_that_are_not_an_image_name_the_file(reader, tmp_path):
    bad = tmp_path / "scan.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(ImageError, match="scan.jpg"):
        reader.read_path(bad)


def test_a_blank_image_reads_nothing(reader):
    import numpy as np
    assert reader.read_array(np.full((268, 182, 3), 255, np.uint8)) == []
