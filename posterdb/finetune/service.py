"""FinetuneService: fine-tune the MobileNetV2 backbone on a store's labelled posters, keep the
weights inside the store (models/<sha256>.pt, hash recorded with the model in DuckDB) and re-embed
every stored poster with it as a second model, with its own vector table and FAISS index, so
`similar`, the vote and the evidence can use it (`--model mobilenet-v2-ft-<hash>`).

Training reads the store's own image copies, so it works without the original folders.
Honest evaluation note: a network fine-tuned on every labelled poster has *seen* the posters the
classifier's out-of-fold tuning then uses, so `posterdb eval` on its vectors is optimistic about
thresholds; the README's figures are cross-fitted (bench/finetune_gpu.py).
"""
from __future__ import annotations

import time
import uuid
from pathlib import Path

import numpy as np

from posterdb.core.errors import RefusedError, UsageError
from posterdb.core.genres import to_multi_hot
from posterdb.core.settings import Settings
from posterdb.embedders.base import Embedder
from posterdb.finetune.backbones import Backbones
from posterdb.media.images import open_poster
from posterdb.storage.catalog import Catalog, embedding_table
from posterdb.storage.image_store import ImageStore
from posterdb.vectors.cache import IndexCache

BASE_FILE = "mobilenet_v2_1.0_224_quant.tflite"


class FinetuneService:
    """Fine-tune, save and re-embed (see the module docstring)."""

    def __init__(self, catalog: Catalog, root: Path, images: ImageStore, indexes: IndexCache,
                 backbones: Backbones, settings: Settings):
        self.catalog, self.root, self.images, self.indexes = catalog, Path(root), images, indexes
        self.backbones, self.model_dir = backbones, settings.model_dir

    @property
    def folder(self) -> Path:
        return self.backbones.folder

    def labelled(self, limit: int | None = None):
        """(ids, image files, Y, decades) of the labelled posters (review labels win)."""
        with self.catalog.read() as con:
            labels = self.catalog.labels(con)
            rows = {r["id"]: r for r in self.catalog.poster_rows(con, sorted(labels))}
        ids = [i for i in sorted(labels) if i in rows and labels[i]]
        if limit:
            ids = [ids[int(j)] for j in np.unique(np.linspace(0, len(ids) - 1, limit).astype(int))]
        if len(ids) < 2:
            raise RefusedError(f"fine-tuning needs labelled posters; this store has {len(ids)}")
        files = [self.images.file(rows[i]["image_path"]) for i in ids]
        dec = np.asarray([rows[i]["decade"] if rows[i]["decade"] is not None else -1 for i in ids])
        return np.asarray(ids), files, to_multi_hot([labels[i] for i in ids]), dec

    def base_weights(self) -> Path:
        from posterdb.embedders.mobilenet import FILENAME
        from posterdb.embedders.weights import resolve_weights

        return resolve_weights("mobilenet-v2", [FILENAME], model_dir=self.model_dir,
                               allow_download=False)

    def run(self, *, epochs: int = 12, unfreeze_from: int = 0, device: str | None = None,
            batch_size: int = 64, limit: int | None = None, threads: int | None = None,
            progress=None) -> dict:
        """Fine-tune, save (hash), re-embed every stored poster; returns what was done."""
        import torch

        from posterdb.embedders.mobilenet_torch import from_tflite
        from posterdb.finetune.embedder import FineTunedEmbedder, save_backbone
        from posterdb.finetune.train import (
            FinetuneConfig,
            finetune,
            poster_inputs,
            resolve_device,
        )

        if epochs < 1:
            raise UsageError(f"--epochs must be >= 1, not {epochs}")
        if not 0 <= unfreeze_from <= 18:
            raise UsageError(f"--unfreeze-from must be a block 0..18, not {unfreeze_from}")
        dev = str(resolve_device(device))
        if threads:
            torch.set_num_threads(int(threads))
        say = progress or (lambda *_: None)
        t0 = time.perf_counter()
        ids, files, Y, dec = self.labelled(limit)
        say(f"reading {len(ids)} labelled posters")
        src = torch.from_numpy(np.stack([poster_inputs(open_poster(f).image)[0] for f in files]))
        net = from_tflite(self.base_weights())
        cfg = FinetuneConfig(epochs=epochs, unfreeze_from=unfreeze_from, batch_size=batch_size)
        say(f"fine-tuning on {len(ids)} posters, {epochs} epoch(s), device {dev}")
        hist = finetune(net, src, Y, dec, cfg, device=dev,
                        progress=lambda e, h: say(f"epoch {e + 1}/{epochs}: loss {h['loss']:.3f}, "
                                                  f"{h['seconds']:.1f} s"))
        hist.pop("head", None)
        run_id = uuid.uuid4().hex[:12]
        path, sha = save_backbone(net.cpu(), self.folder, base="mobilenet-v2/tflite-int8-1",
                                  run=run_id, epochs=epochs, unfreeze_from=unfreeze_from,
                                  n_train=len(ids))
        emb = FineTunedEmbedder(path, sha, device=dev)
        n = self.reembed(emb, progress=say)
        return {"model": emb.name, "version": emb.version, "sha256": sha, "weights": str(path),
                "run": run_id, "n_train": int(len(ids)), "reembedded": n, "device": dev,
                "epoch_seconds": [e["seconds"] for e in hist["epochs"]],
                "losses": [e["loss"] for e in hist["epochs"]],
                "seconds": time.perf_counter() - t0}

    def reembed(self, emb: Embedder, batch: int = 256, progress=None) -> int:
        """Embed every stored poster lacking a vector from `emb`, one transaction per batch (a
        crash keeps what was committed; a re-run continues). Returns how many were embedded."""
        say = progress or (lambda *_: None)
        table = embedding_table(emb.name)
        with self.catalog.write() as con:
            self.catalog.register_model(con, emb.spec)
            done = set(int(i) for i in self.catalog.vector_ids(con, table))
            rows = [r for r in self.catalog.poster_rows(con, None) if int(r["id"]) not in done]
        for s in range(0, len(rows), batch):
            chunk = rows[s:s + batch]
            vecs = emb.embed_images([open_poster(self.images.file(r["image_path"])).image for r in chunk])
            with self.catalog.write() as con:
                self.catalog.insert_vectors(con, table, np.asarray([r["id"] for r in chunk]), vecs)
            say(f"re-embedded {min(s + batch, len(rows))}/{len(rows)} posters with {emb.name}")
        self.indexes.reindex(emb.name)
        return len(rows)
