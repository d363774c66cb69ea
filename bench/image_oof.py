"""Out-of-fold image genre probabilities for every shared poster (GenreClassifier.oof_proba_,
fitted once on all of them), the genre feature of identification's calibration.

    python -m bench.image_oof --features FEATS.npy --files FILES.json --out P.npz
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from bench.identify_eval import LABELS, load_truth
from posterdb.classify.blend import GenreClassifier
from posterdb.core.genres import to_multi_hot


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--features", type=Path, required=True)
    ap.add_argument("--files", type=Path, required=True)
    ap.add_argument("--labels", type=Path, default=LABELS)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    X = np.load(a.features).astype(np.float32)
    files = [str(f) for f in json.loads(a.files.read_text())]
    truth = load_truth(a.labels)
    Y = to_multi_hot([truth[f]["genres"] for f in files])
    dec = np.array([truth[f]["year"] // 10 * 10 for f in files])
    clf = GenreClassifier().fit(X, Y, dec)
    np.savez(a.out, files=np.array(files), P=clf.oof_proba_.astype(np.float32))
    print(f"saved {a.out}: {clf.oof_proba_.shape}")


if __name__ == "__main__":
    main()
