"""Fine-tuning and re-embedding speed on this machine's CPU (2 cores here).

    python -m bench.finetune_cpu [--posters 200] [--threads 2]

The CPU here is shared, so the CPU seconds per thread are reported next to the wall time.
A short measured run: one epoch of fine-tuning over N real posters (all blocks trainable, batch 32),
then re-embedding the same posters with the float network, next to the int8 mobilenet-v2 embedder
on the same images (the reference in the same run). Scaled to the 3,823-poster training side of
the seeded split and to all 5,097 posters, linearly (time per poster is flat in N at a fixed batch).
"""
from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def measure(n: int = 200, threads: int = 2, model_dir: Path = SHARED / "models",
        posters: Path = SHARED / "posters") -> dict:
    import torch
    from PIL import Image

    from posterdb.core.genres import GENRES, parse_genres
    from posterdb.embedders import get_embedder
    from posterdb.embedders.mobilenet_torch import from_tflite
    from posterdb.finetune.train import (
        FinetuneConfig,
        embed,
        finetune,
        poster_inputs,
    )

    torch.set_num_threads(threads)
    rows = list(csv.DictReader(open(posters / "labels.csv", encoding="utf-8")))
    rows = [rows[i] for i in np.linspace(0, len(rows) - 1, n).astype(int)]
    images = [Image.open(posters / r["file"]).convert("RGB") for r in rows]
    Y = np.zeros((n, len(GENRES)), np.uint8)
    for i, r in enumerate(rows):
        for g in parse_genres(r["genres"])[0]:
            Y[i, GENRES.index(g)] = 1
    dec = np.array([int(r["year"]) // 10 * 10 for r in rows])
    src, inf = (torch.from_numpy(np.stack(a)) for a in zip(*[poster_inputs(im) for im in images]))
    net = from_tflite(model_dir / "mobilenet_v2_1.0_224_quant.tflite")
    c0 = time.process_time()
    hist = finetune(net, src, Y, dec, FinetuneConfig(epochs=1, batch_size=32), device="cpu")
    train_cpu_s = time.process_time() - c0
    t, c0 = time.perf_counter(), time.process_time()
    embed(net, inf, "cpu", batch_size=64)
    float_s, embed_cpu_s = time.perf_counter() - t, time.process_time() - c0
    int8 = get_embedder("mobilenet-v2", model_dir=model_dir, num_threads=threads)
    x = inf.permute(0, 2, 3, 1).numpy()
    t = time.perf_counter()
    for i in range(0, n, 64):
        int8.embed_batch(x[i:i + 64])
    int8_s = time.perf_counter() - t
    epoch_s = hist["epochs"][0]["seconds"]
    per = epoch_s / n
    return {"posters": n, "threads": threads, "epoch_s": epoch_s, "train_posters_per_s": n / epoch_s,
            "epoch_s_scaled_3823": per * 3823, "epoch_s_scaled_5097": per * 5097,
            "reembed_float_posters_per_s": n / float_s, "int8_embed_posters_per_s": n / int8_s,
            "float_vs_int8": (n / float_s) / (n / int8_s),
            # CPU seconds / threads: what the wall time would be on an otherwise idle machine
            "epoch_cpu_s_per_thread": train_cpu_s / threads,
            "reembed_posters_per_cpu_s_per_thread": n / (embed_cpu_s / threads)}


def run(quick: bool = False) -> list:
    """`python -m bench --only finetune`: the rows of the bench table."""
    from .common import Figure, loadavg

    r = measure(64 if quick else 200, 2)
    load = loadavg()
    return [Figure("finetune", f"fine-tune 1 epoch, {r['posters']} real posters, 2 threads (CPU)",
                   r["epoch_s"], "s", note=f"scaled: {r['epoch_s_scaled_3823']:.0f} s per epoch "
                   f"of the 3,823-poster training side, {r['epoch_s_scaled_5097']:.0f} s at 5,097; "
                   f"CPU time per thread {r['epoch_cpu_s_per_thread']:.1f} s (= wall on an idle box)",
                   load=load, extra=r),
            Figure("finetune", "re-embed with the fine-tuned float MobileNetV2 (CPU)",
                   r["reembed_float_posters_per_s"], "posters/s", r["int8_embed_posters_per_s"],
                   "int8 mobilenet-v2 on the same images", load=load)]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--posters", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args(argv)
    r = measure(a.posters, a.threads)
    print(json.dumps(r, indent=1))
    return r


if __name__ == "__main__":
    main()
