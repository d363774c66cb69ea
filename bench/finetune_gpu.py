"""The GPU run behind the "Which features see the genre" table: self-contained (torch, numpy, PIL).

Input folder (FT_IN, default .gpu): posters.npz (re-encoded JPEG bytes + offsets), meta.npz (Y,
decades, fold of each poster for the seeded split's training side and for the 2010s), float_mnv2.pt
(the dequantised backbone) and ftlib/ (posterdb/embedders/mobilenet_torch.py + posterdb/finetune.py).

Cross-fitting (honest evaluation): for each setup the training side is cut into K folds by
near-duplicate group; network k is fine-tuned on the other K-1 folds and embeds fold k, so every
training poster's vector (which the classifier's out-of-fold tuning of alpha / thresholds sees)
comes from a network that never saw it. Posters outside the training side (the test side) get the
mean of the K networks' vectors: none of them saw those posters either.

Outputs in $OUT: <setup>.npz.partN (uint8 sqrt-companded L2-normalised vectors: v = (q/255)^2),
all_labelled_fp16.pt (a backbone fine-tuned on every labelled poster), timings.json.
"""
from __future__ import annotations

import io
import json
import math
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

IN = os.environ.get("FT_IN", ".gpu")
sys.path.insert(0, os.path.join(IN, "ftlib"))
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from posterdb.embedders.mobilenet_torch import FloatMobileNetV2  # noqa: E402
from posterdb.finetune.train import (
    FinetuneConfig,
    embed,
    finetune,
    genre_probabilities,
    poster_inputs,
    square_inputs,
)

OUT = os.environ.get("OUT", "/tmp/ft_out")
BUDGET = float(os.environ.get("FT_BUDGET", 440))
LIMIT = int(os.environ.get("FT_LIMIT", 0))          # CPU smoke test: first N posters only
EPOCHS = int(os.environ.get("FT_EPOCHS", 12))
MAX_STEPS = int(os.environ.get("FT_MAX_STEPS", 0)) or None
# FT_VARIANTS='[{"name": "top14", "unfreeze_from": 14, "lr": 2e-4}, ...]': instead of the study, run
# each recipe cross-fit on both setups, saving whole-poster vectors and the network's own OOF
# genre probabilities (<name>.npz: seed_cf, dec_cf, seed_p, dec_p).
VARIANTS = json.loads(os.environ.get("FT_VARIANTS", "[]"))
PART = 16_700_000  # < 16 MiB
T0 = time.perf_counter()
log: dict = {"jobs": {}}


def now():
    return time.perf_counter() - T0


def save_log():
    log["elapsed_s"] = now()
    print(f"[{now():6.1f}s] jobs done: {[k for k in log['jobs'] if not k.endswith('_config')][-1:]}", flush=True)
    with open(os.path.join(OUT, "timings.json"), "w") as f:
        json.dump(log, f, indent=1)


def save_arrays(name: str, arrays: dict[str, np.ndarray]) -> None:
    """uint8 sqrt companding of L2-normalised vectors; one npz split into <= 16 MB parts."""
    buf = io.BytesIO()
    np.savez(buf, **{k: np.round(np.sqrt(np.clip(v, 0, 1)) * 255).astype(np.uint8) for k, v in arrays.items()})
    data = buf.getvalue()
    for i in range(0, len(data), PART):
        with open(os.path.join(OUT, f"{name}.npz.part{i // PART}"), "wb") as f:
            f.write(data[i:i + PART])
    log.setdefault("files", {})[name] = {"bytes": len(data), "arrays": list(arrays)}


def main():
    os.makedirs(OUT, exist_ok=True)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    log["device"] = torch.cuda.get_device_name(0) if dev == "cuda" else "cpu"
    log["torch"] = torch.__version__
    torch.backends.cudnn.benchmark = True
    meta = np.load(os.path.join(IN, "meta.npz"))
    pk = np.load(os.path.join(IN, "posters.npz"))
    data, offs = pk["data"], pk["offs"]
    rows = np.arange(len(offs) - 1)
    if LIMIT:  # an evenly spaced subset (all decades)
        rows = np.unique(np.linspace(0, len(rows) - 1, LIMIT).astype(int))
    n = len(rows)
    Y, dec = meta["Y"][rows], meta["dec"][rows]
    seed_fold, dec_fold = meta["seed_fold"][rows], meta["dec_fold"][rows]

    def load(j):
        i = rows[j]
        im = Image.open(io.BytesIO(data[offs[i]:offs[i + 1]].tobytes())).convert("RGB")
        s, v = poster_inputs(im)
        t, b = square_inputs(im)
        return s, v, t, b

    with ThreadPoolExecutor(16) as ex:
        parts = list(ex.map(load, range(n)))
    src, inf, top, bot = (torch.from_numpy(np.stack(p)) for p in zip(*parts))
    del parts
    if dev == "cuda":
        src, inf, top, bot = (t.to(dev) for t in (src, inf, top, bot))
    log["decode_s"] = now()
    ckpt = torch.load(os.path.join(IN, "float_mnv2.pt"), map_location="cpu", weights_only=True)

    def fresh():
        return FloatMobileNetV2.from_checkpoint(ckpt)

    # -- raw forward figures (posters/s) --------------------------------------------------------
    net = fresh()
    embed(net, inf[:512], dev)
    if dev == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    base = embed(net, inf, dev)
    log["mobilenet_float_embed_posters_per_s"] = n / (time.perf_counter() - t)
    if dev == "cuda":
        import torchvision
        r50 = torchvision.models.resnet50(weights=None).eval().to(dev).to(memory_format=torch.channels_last)
        r50.fc = torch.nn.Identity()
        xb = inf[:256]
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
            def fwd():
                x = ((xb.float() / 255 - 0.45) / 0.225).contiguous(memory_format=torch.channels_last)
                return r50(x).float().cpu()
            for _ in range(3):
                fwd()
            torch.cuda.synchronize()
            t = time.perf_counter()
            reps = 20
            for _ in range(reps):
                fwd()
            torch.cuda.synchronize()
        log["resnet50_bf16_channels_last_posters_per_s"] = reps * len(xb) / (time.perf_counter() - t)
        log["resnet50_batch"] = len(xb)
        del r50
    save_log()

    def cfg(**kw):
        return FinetuneConfig(**({"epochs": EPOCHS, "max_steps": MAX_STEPS} | kw))

    def estimate(n_train, config=None):
        """Seconds a fine-tune of n_train posters should take, from the last run's time per step
        (the first run also pays the warm-up, so it overestimates) + the embeds."""
        runs = [v for v in log["jobs"].values() if isinstance(v, dict) and v.get("steps")]
        if not runs:
            return 0.0
        c = config or cfg()
        steps = math.ceil(n_train / c.batch_size) * c.epochs
        return runs[-1]["seconds"] / runs[-1]["steps"] * steps * 1.15 + 5.0

    def crossfit(name, fold_of, config, extra=True, probs=False):
        K = int(fold_of.max()) + 1
        outside = fold_of < 0
        acc = {k: np.zeros((n, 1280), np.float32) for k in (("cf", "cf_flip", "cf_top", "cf_bot") if extra else ("cf",))}
        if probs:
            acc["p"] = np.zeros((n, Y.shape[1]), np.float32)
        agree = []
        first_outside = None
        for k in range(K):
            if now() + estimate(int(((fold_of >= 0) & (fold_of != k)).sum()), config) > BUDGET:
                log["jobs"][name + "_skipped_from_fold"] = k
                return None
            tr = np.flatnonzero((fold_of >= 0) & (fold_of != k))
            net = fresh()
            h = finetune(net, src[tr], Y[tr], dec[tr], config, dev)
            head = h.pop("head")
            held = fold_of == k
            vecs = {"cf": embed(net, inf, dev)}
            if probs:
                vecs["p"] = genre_probabilities(net, head, inf, dev)
            if extra:
                vecs["cf_flip"] = embed(net, inf, dev, flip=True)
                vecs["cf_top"] = embed(net, top, dev)
                vecs["cf_bot"] = embed(net, bot, dev)
            for key, v in vecs.items():
                acc[key][held] = v[held]
                acc[key][outside] += v[outside] / K
            if first_outside is None:
                first_outside = vecs["cf"][outside]
            else:
                agree.append(float((first_outside * vecs["cf"][outside]).sum(1).mean()))
            log["jobs"][f"{name}_fold{k}"] = {k2: v2 for k2, v2 in h.items() if k2 != "config"}
            log["jobs"][f"{name}_fold{k}"]["drift_from_base_cos"] = float((vecs["cf"] * base).sum(1).mean())
            log["jobs"][name + "_config"] = h["config"]
            save_log()
        for key in acc:
            if key == "p":
                continue
            acc[key][outside] /= np.maximum(np.linalg.norm(acc[key][outside], axis=1, keepdims=True), 1e-12)
        log["jobs"][name + "_fold_agreement_cos_vs_fold0"] = agree
        return acc

    def full(name, train_mask, config):
        tr = np.flatnonzero(train_mask)
        if now() + estimate(len(tr), config) > BUDGET:
            log["jobs"][name + "_skipped"] = True
            return None, None
        net = fresh()
        h = finetune(net, src[tr], Y[tr], dec[tr], config, dev)
        h.pop("head")
        log["jobs"][name] = {k2: v2 for k2, v2 in h.items() if k2 != "config"}
        save_log()
        return net, embed(net, inf, dev)

    if VARIANTS:
        for v in VARIANTS:
            v = dict(v)
            name = v.pop("name")
            got = {}
            for setup, folds in (("seed", seed_fold), ("dec", dec_fold)):
                r = crossfit(f"{name}_{setup}", folds, cfg(**v), extra=False, probs=True)
                if r is None:
                    break
                got[f"{setup}_cf"], got[f"{setup}_p"] = r["cf"], r["p"]
            if got:
                save_arrays(name, got)
            save_log()
        return

    # 1. seeded split: cross-fit on the training side (+ the naive network trained on all of it)
    seed = crossfit("seed", seed_fold, cfg())
    if seed is not None:
        _, f = full("seed_full", seed_fold >= 0, cfg())
        if f is not None:
            seed["full"] = f
        save_arrays("seed", seed)
    save_log()
    # 2. 2010s -> 1970s
    d = crossfit("dec", dec_fold, cfg())
    if d is not None:
        save_arrays("dec", d)
    save_log()
    # 3. the store's network: all labelled posters
    net, _ = full("all_labelled", np.ones(n, bool), cfg())
    if net is not None:
        sd = net.to_checkpoint(run="all-labelled", epochs=EPOCHS)
        sd["state_dict"] = {k: v.half() for k, v in sd["state_dict"].items()}
        torch.save(sd, os.path.join(OUT, "all_labelled_fp16.pt"))
    # 4. a stronger recipe on the seeded split, if time is left
    if now() + 5 * estimate(int((seed_fold >= 0).sum() * 0.8)) < BUDGET:
        v = crossfit("seed_v2", seed_fold, cfg(lr=3e-4), extra=False)
        if v is not None:
            save_arrays("seed_v2", {"cf": v["cf"]})
    save_log()


if __name__ == "__main__":
    main()
