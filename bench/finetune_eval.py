"""Score feature options with posterdb's classifier on the same splits (the study table).

    python -m bench.finetune_eval RESULTS_DIR [--meta META.npz] [--int8 INT8.npy] [--only a,b]

RESULTS_DIR holds what bench/finetune_gpu.py wrote (<setup>.npz.partN); META.npz the labels,
decades and split (tr/te = the seeded split of `posterdb eval`, seed 0, computed on the int8
features; written by bench/finetune_pack.py); INT8.npy the int8 mobilenet-v2 vectors of the same
posters in the same order (bench/dequant_check.py --out). Defaults: /work/cache/ft (this
project's scratch folder).
Every option is scored with evaluate() in its external-test mode on the *same* train/test rows
(seeded split) and on 2010s -> 1970s, with heads, vote and blend.
"""
from __future__ import annotations

import argparse
import glob
import io
import json
import os
import time

import numpy as np

from posterdb.classify.experiment import evaluate


def l2(x):
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def load_setup(folder: str, name: str) -> dict[str, np.ndarray]:
    parts = sorted(glob.glob(os.path.join(folder, f"{name}.npz.part*")), key=lambda p: int(p.rsplit("part", 1)[1]))
    if not parts:
        return {}
    z = np.load(io.BytesIO(b"".join(open(p, "rb").read() for p in parts)))
    # vectors are L2-normalised again; "p" arrays (genre probabilities) are kept as they are
    return {k: ((z[k].astype(np.float32) / 255.0) ** 2) if k.endswith("p")
            else l2((z[k].astype(np.float32) / 255.0) ** 2) for k in z.files}


def options(int8, base, seed, dec, v2):
    """name -> (seeded-split features or None, 2010s->1970s features or None)."""
    o = {"mobilenet-v2 int8 (baseline)": (int8, int8)}
    if base is not None:
        o["float dequantised, not fine-tuned"] = (base, base)
    o["int8 + multi-crop (whole+top+bottom, frozen)"] = (None, None)  # filled by caller if given
    for key, label in (("cf", "fine-tuned, cross-fit"), ("cf_flip", "fine-tuned, cross-fit, + test-time flip"),
                       ("cf_mc", "fine-tuned, cross-fit, multi-crop whole+top+bottom"),
                       ("cf_int8", "fine-tuned (cross-fit) ++ int8 concatenated"),
                       ("full", "fine-tuned on the whole training side (NOT cross-fit: optimistic tuning)"),
                       ("hybrid", "train rows cross-fit, test rows from the whole-side network")):
        a, b = seed.get(key), dec.get(key)
        if a is not None or b is not None:
            o[label] = (a, b)
    if v2 is not None:
        o["fine-tuned, cross-fit, lr 3e-4"] = (v2, None)
    return {k: v for k, v in o.items() if v[0] is not None or v[1] is not None}


def score(X, Y, dec, tr, te, setup):
    kw = dict(methods=("heads", "vote", "blend"), cross_decade=False)
    if setup == "seed":
        r = evaluate(X[tr], Y[tr], dec[tr], X_test=X[te], Y_test=Y[te], test_years_or_decades=dec[te], **kw)
    else:
        r = evaluate(X, Y, dec, train_decades=[2010], test_decades=[1970], **kw)
    return {m: {k: round(v, 4) for k, v in res.averages.items()} for m, res in r.methods.items()} | \
        {"n_train": r.setup["n_train"], "n_test": r.setup["n_test"]}


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("--meta", default="/work/cache/ft/meta.npz")
    ap.add_argument("--int8", default="/work/cache/ft/int8.npy")
    ap.add_argument("--float", default="/work/cache/ft/float.npy")
    ap.add_argument("--int8-reenc", default="/work/cache/ft/int8_reenc.npy",
                    help="int8 vectors of the re-encoded posters the GPU run saw (same-input baseline)")
    ap.add_argument("--int8-squares", default="/work/cache/ft/int8_squares.npz")
    ap.add_argument("--only", default="")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    m = np.load(a.meta)
    Y, dec, tr, te = m["Y"], m["dec"], m["tr"], m["te"]
    int8 = l2(np.load(a.int8))
    base = l2(np.load(a.float)) if os.path.exists(a.float) else None
    seed, dd = load_setup(a.results, "seed"), load_setup(a.results, "dec")
    for s in (seed, dd):
        if "cf" in s:
            s["cf_int8"] = l2(np.hstack([s["cf"], int8]))
        if {"cf", "cf_top", "cf_bot"} <= set(s):
            s["cf_mc"] = l2(np.hstack([s["cf"], s["cf_top"], s["cf_bot"]]))
    if "cf" in seed and "full" in seed:
        h = seed["cf"].copy()
        h[te] = seed["full"][te]
        seed["hybrid"] = h
    v2 = load_setup(a.results, "seed_v2").get("cf")
    opts = options(int8, base, seed, dd, v2)
    if os.path.exists(a.int8_squares):
        sq = np.load(a.int8_squares)
        mc = l2(np.hstack([int8, l2(sq["top"]), l2(sq["bot"])]))
        opts["int8 + multi-crop (whole+top+bottom, frozen)"] = (mc, mc)
    else:
        opts.pop("int8 + multi-crop (whole+top+bottom, frozen)", None)
    if os.path.exists(a.int8_reenc):
        r = l2(np.load(a.int8_reenc))
        opts = {"mobilenet-v2 int8 on the re-encoded posters (same input as the GPU run)": (r, r)} | opts
    for vfile in sorted(glob.glob(os.path.join(a.results, "*.npz.part0"))):
        vname = os.path.basename(vfile).split(".npz")[0]
        if vname in ("seed", "dec", "seed_v2"):
            continue
        v = load_setup(a.results, vname)
        if "seed_cf" not in v or "dec_cf" not in v:
            continue
        opts[f"fine-tuned {vname}, cross-fit"] = (v["seed_cf"], v["dec_cf"])
        opts[f"fine-tuned {vname}, cross-fit ++ int8"] = (l2(np.hstack([v["seed_cf"], int8])),
                                                         l2(np.hstack([v["dec_cf"], int8])))
        # stacking: the network's own out-of-fold genre probabilities appended to the features
        # (stored L2-normalised by save_arrays; undo nothing: only their direction matters here)
        for w in (0.5, 1.0):
            opts[f"int8 ++ {w} x fine-tuned {vname} genre probabilities (OOF)"] = (
                l2(np.hstack([int8, w * v["seed_p"]])), l2(np.hstack([int8, w * v["dec_p"]])))
            opts[f"fine-tuned {vname} ++ {w} x its genre probabilities (OOF)"] = (
                l2(np.hstack([v["seed_cf"], w * v["seed_p"]])), l2(np.hstack([v["dec_cf"], w * v["dec_p"]])))
    only = [s for s in a.only.split(",") if s]
    out = {}
    for label, (xs, xd) in opts.items():
        if only and not any(s in label for s in only):
            continue
        row = {}
        for setup, X in (("seed", xs), ("dec", xd)):
            if X is None:
                continue
            t = time.perf_counter()
            row[setup] = score(X, Y, dec, tr, te, setup)
            b = row[setup]["blend"]
            print(f"{label:70s} {setup:4s} blend w {b['weighted']:.3f} m {b['macro']:.3f} "
                  f"({time.perf_counter() - t:.0f}s)", flush=True)
        out[label] = row
    if a.out:
        with open(a.out, "w") as f:
            json.dump(out, f, indent=1)
    return out


if __name__ == "__main__":
    main()
