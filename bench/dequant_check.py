"""The dequantised float MobileNetV2 against the int8 TFLite model on every shared poster.

    python -m bench.dequant_check [--posters DIR] [--limit N] [--out vectors-dir]

Prints the mean / min / 1st-percentile cosine of the pooled 1280-d features (the README's 0.9982
over 5,097 posters) and each model's speed on one thread; --out saves both vector sets (.npy,
rows in sorted file-name order) for the study scripts (bench/finetune_eval.py).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def main(argv=None) -> dict:
    import torch
    from PIL import Image

    from posterdb.embedders import get_embedder
    from posterdb.embedders.mobilenet_torch import from_tflite

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--posters", type=Path, default=SHARED / "posters" / "images")
    ap.add_argument("--model-dir", type=Path, default=SHARED / "models")
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    net = from_tflite(a.model_dir / "mobilenet_v2_1.0_224_quant.tflite")
    emb = get_embedder("mobilenet-v2", model_dir=a.model_dir, num_threads=1)
    files = sorted(p for p in a.posters.iterdir() if p.is_file())[: a.limit or None]
    Q, F = [], []
    tq = tf = 0.0
    for i in range(0, len(files), 64):
        x = np.stack([emb.preprocess(Image.open(f).convert("RGB")) for f in files[i:i + 64]])
        t0 = time.perf_counter()
        Q.append(emb.embed_batch(x))
        t1 = time.perf_counter()
        with torch.inference_mode():
            f = net(net.normalise(torch.from_numpy(x).permute(0, 3, 1, 2))).numpy()
        tq, tf = tq + t1 - t0, tf + time.perf_counter() - t1
        F.append(f / np.linalg.norm(f, axis=1, keepdims=True))
    Q, F = np.concatenate(Q), np.concatenate(F)
    c = (Q * F).sum(1)
    r = {"posters": len(files), "mean_cos": float(c.mean()), "min_cos": float(c.min()),
         "p01_cos": float(np.percentile(c, 1)), "int8_posters_per_s_1thread": len(files) / tq,
         "float_posters_per_s_1thread": len(files) / tf}
    if a.out:
        a.out.mkdir(parents=True, exist_ok=True)
        np.save(a.out / "int8.npy", Q)
        np.save(a.out / "float.npy", F)
        (a.out / "files.json").write_text(json.dumps([f.name for f in files]))
    print(json.dumps(r, indent=1))
    return r


if __name__ == "__main__":
    main()
