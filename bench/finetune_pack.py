"""Pack what bench/finetune_gpu.py needs into one folder (< 64 MiB, for a lent GPU machine).

    python -m bench.dequant_check --out VEC          # int8.npy + files.json (sorted file names)
    python -m bench.finetune_pack VEC OUT [--quality 62]

OUT gets: posters.npz (every poster re-encoded as JPEG q62, at most 224 px wide: all the model
ever uses; the originals do not fit the transfer), meta.npz (multi-hot genres, decades, the
seeded split of `posterdb eval` (seed 0, near-duplicate groups from the int8 vectors) and 5 folds
by group on its training side and on the 2010s), float_mnv2.pt (the dequantised backbone, fp16:
the GPU computes in bf16 anyway), ftlib/ (the two modules the script imports) and the script.
VEC/meta.npz (the same plus tr/te) is what bench/finetune_eval.py reads.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import shutil
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def main(argv=None):
    import torch
    from PIL import Image

    from posterdb.classify.splits import (
        group_kfold,
        grouped_train_test_split,
        near_duplicate_groups,
    )
    from posterdb.core.genres import GENRES, parse_genres
    from posterdb.embedders.mobilenet_torch import from_tflite

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("vectors", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--quality", type=int, default=62)
    ap.add_argument("--posters", type=Path, default=SHARED / "posters")
    ap.add_argument("--model-dir", type=Path, default=SHARED / "models")
    a = ap.parse_args(argv)
    out = a.out
    out.mkdir(parents=True, exist_ok=True)
    files = json.loads((a.vectors / "files.json").read_text())
    X = np.load(a.vectors / "int8.npy")
    rows = {Path(r["file"]).name: r for r in csv.DictReader(open(a.posters / "labels.csv", encoding="utf-8"))}
    Y = np.zeros((len(files), len(GENRES)), np.uint8)
    dec = np.zeros(len(files), np.int64)
    for i, f in enumerate(files):
        for g in parse_genres(rows[f]["genres"])[0]:
            Y[i, GENRES.index(g)] = 1
        dec[i] = int(rows[f]["year"]) // 10 * 10
    groups = near_duplicate_groups(X, 0.97)
    tr, te = grouped_train_test_split(X, 0.25, 0, groups=groups)
    seed_fold = np.full(len(files), -1)
    for k, (_, hold) in enumerate(group_kfold(groups[tr], 5, seed=0)):
        seed_fold[tr[hold]] = k
    d10 = np.flatnonzero(dec == 2010)
    dec_fold = np.full(len(files), -1)
    for k, (_, hold) in enumerate(group_kfold(groups[d10], 5, seed=0)):
        dec_fold[d10[hold]] = k
    meta = dict(Y=Y, dec=dec, seed_fold=seed_fold, dec_fold=dec_fold, files=np.array(files))
    np.savez(out / "meta.npz", **meta)
    np.savez(a.vectors / "meta.npz", **meta, tr=tr, te=te, groups=groups)
    blobs = []
    for f in files:
        im = Image.open(a.posters / "images" / f).convert("RGB")
        if im.width > 224:
            im = im.resize((224, round(im.height * 224 / im.width)), Image.LANCZOS)
        b = io.BytesIO()
        im.save(b, "JPEG", quality=a.quality, optimize=True)
        blobs.append(b.getvalue())
    offs = np.cumsum([0] + [len(b) for b in blobs])
    np.savez(out / "posters.npz", data=np.frombuffer(b"".join(blobs), np.uint8), offs=offs)
    ck = from_tflite(a.model_dir / "mobilenet_v2_1.0_224_quant.tflite").to_checkpoint(
        base="mobilenet_v2_1.0_224_quant.tflite")
    ck["state_dict"] = {k: v.half() for k, v in ck["state_dict"].items()}
    torch.save(ck, out / "float_mnv2.pt")
    lib = out / "ftlib" / "posterdb" / "embedders"
    lib.mkdir(parents=True, exist_ok=True)
    (out / "ftlib" / "posterdb" / "__init__.py").write_text("")
    (lib / "__init__.py").write_text("")
    shutil.copy(ROOT / "posterdb" / "embedders" / "mobilenet_torch.py", lib)
    shutil.copy(ROOT / "posterdb" / "finetune.py", out / "ftlib" / "posterdb")
    shutil.copy(ROOT / "bench" / "finetune_gpu.py", out)
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"{out}: {total / 2**20:.1f} MiB; split {len(tr)} / {len(te)}")


if __name__ == "__main__":
    main()
