"""Fine-tuning the float MobileNetV2 on labelled posters (torch + numpy only: runs on CPU or CUDA).

Why each piece is there:
  * loss: BCE with per-genre positive weights sqrt(neg/pos) (clipped): rare genres (Western, War,
    Music) would otherwise be learnt as "never";
  * sampling: posters drawn with weight 1/n(decade)^power, so the ~40 % of 2010s posters don't set
    the features alone;
  * augmentation, batched on the device: a crop that keeps the full width-wise title band (anchored
    at the top or the bottom, so one band is always whole), squashed to 224x224 like inference,
    horizontal flips, brightness / contrast / saturation jitter, some greyscale (old posters);
  * `unfreeze_from`: blocks before it stay frozen (0 = train everything).
Inference (`embed`) sees the poster exactly like the int8 embedder: whole poster squashed to 224.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from posterdb.embedders.mobilenet_torch import DIM, FloatMobileNetV2

SIZE = 224
SOURCE_HW = (336, 224)  # training source: poster squashed to 2:3, crops are taken from it


@dataclass
class FinetuneConfig:
    epochs: int = 12
    unfreeze_from: int = 0
    lr: float = 1e-4            # backbone
    head_lr: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 64
    warmup_epochs: float = 1.0
    decade_power: float = 0.5
    pos_weight_max: float = 10.0
    dropout: float = 0.2
    seed: int = 0
    max_steps: int | None = None  # cap (tests / quick timing)

    def to_dict(self) -> dict:
        return asdict(self)


# ---- inputs -------------------------------------------------------------------------------------

def poster_inputs(image: Image.Image) -> tuple[np.ndarray, np.ndarray]:
    """One poster -> (training source 336x224 CHW uint8, inference input 224x224 CHW uint8)."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    src = np.asarray(image.resize((SOURCE_HW[1], SOURCE_HW[0]), Image.BILINEAR), dtype=np.uint8)
    inf = np.asarray(image.resize((SIZE, SIZE), Image.BILINEAR), dtype=np.uint8)
    return src.transpose(2, 0, 1), inf.transpose(2, 0, 1)


def square_inputs(image: Image.Image) -> tuple[np.ndarray, np.ndarray]:
    """Top and bottom squares (side = the shorter edge) resized to 224, CHW uint8 (multi-crop)."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    w, h = image.size
    s = min(w, h)
    top = image.crop((0, 0, s, s)).resize((SIZE, SIZE), Image.BILINEAR)
    bottom = image.crop((w - s, h - s, w, h)).resize((SIZE, SIZE), Image.BILINEAR)
    return (np.asarray(top, np.uint8).transpose(2, 0, 1), np.asarray(bottom, np.uint8).transpose(2, 0, 1))


# ---- augmentation -------------------------------------------------------------------------------

def augment(src: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """uint8 (n,3,H,W) sources on any device -> augmented float inputs (n,3,224,224) in the
    model's input range. Random numbers come from `gen` (CPU) so runs are reproducible."""
    n, dev = len(src), src.device
    r = torch.rand(n, 9, generator=gen).to(dev)
    hfrac = 0.8 + 0.2 * r[:, 0]              # keep >= 80 % of the height
    wfrac = 0.7 + 0.3 * r[:, 1]
    anchor_top = r[:, 2] < 0.5               # top anchored: the top band is whole, else the bottom
    cy = torch.where(anchor_top, -1 + hfrac, 1 - hfrac)
    cx = (1 - wfrac) * (2 * r[:, 3] - 1)
    flip = torch.where(r[:, 4] < 0.5, -1.0, 1.0).to(dev)
    theta = torch.zeros(n, 2, 3, device=dev)
    theta[:, 0, 0], theta[:, 0, 2] = wfrac * flip, cx
    theta[:, 1, 1], theta[:, 1, 2] = hfrac, cy
    x = src.float()
    grid = F.affine_grid(theta, (n, 3, SIZE, SIZE), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    # colour: brightness, contrast, saturation, sometimes greyscale
    b = (0.75 + 0.5 * r[:, 5]).view(n, 1, 1, 1)
    c = (0.75 + 0.5 * r[:, 6]).view(n, 1, 1, 1)
    s = (0.7 + 0.6 * r[:, 7]).view(n, 1, 1, 1)
    s = torch.where(r[:, 8].view(n, 1, 1, 1) < 0.1, torch.zeros_like(s), s)
    x = x * b
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * c + mean
    grey = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
    x = (x - grey) * s + grey
    return FloatMobileNetV2.normalise(x.clamp(0, 255))


# ---- training -----------------------------------------------------------------------------------

class GenreNet(nn.Module):
    """Backbone + dropout + linear genre head (the head is only for training)."""

    def __init__(self, backbone: FloatMobileNetV2, n_genres: int, dropout: float):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(DIM, n_genres))

    def forward(self, x):
        return self.head(self.backbone(x))


def positive_weights(Y: np.ndarray, cap: float) -> torch.Tensor:
    pos = Y.sum(0).astype(np.float64)
    neg = len(Y) - pos
    w = np.sqrt(np.where(pos > 0, neg / np.maximum(pos, 1), 1.0))
    return torch.tensor(np.clip(w, 1.0, cap), dtype=torch.float32)


def decade_sample_weights(decades: np.ndarray, power: float) -> np.ndarray:
    _, inv, counts = np.unique(np.asarray(decades), return_inverse=True, return_counts=True)
    w = 1.0 / counts[inv].astype(np.float64) ** power
    return w / w.sum()


def resolve_device(device: str | None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} requested but torch sees no CUDA device")
    return torch.device(device)


def finetune(backbone: FloatMobileNetV2, sources: torch.Tensor, Y: np.ndarray, decades: np.ndarray,
             config: FinetuneConfig | None = None, device: str | None = None, progress=None) -> dict:
    """Fine-tune `backbone` in place on uint8 sources (n,3,336,224) with multi-hot Y (n,g).
    Returns the run's history (per-epoch loss and seconds, images/s, steps; "head": the trained
    genre head, an nn.Module, for `genre_probabilities`)."""
    cfg = config or FinetuneConfig()
    dev = resolve_device(device)
    cuda = dev.type == "cuda"
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    Y = (np.asarray(Y) > 0).astype(np.float32)
    n = len(Y)
    if n == 0 or len(sources) != n:
        raise ValueError(f"need as many sources as label rows (got {len(sources)} and {n})")
    model = GenreNet(backbone, Y.shape[1], cfg.dropout).to(dev)
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    for i, block in enumerate(backbone.features):
        block.requires_grad_(i >= cfg.unfreeze_from)
    params = [{"params": [p for p in backbone.parameters() if p.requires_grad], "lr": cfg.lr},
              {"params": model.head.parameters(), "lr": cfg.head_lr}]
    params = [g for g in params if g["params"]]
    opt = torch.optim.AdamW(params, weight_decay=cfg.weight_decay)
    steps_per_epoch = max(1, math.ceil(n / cfg.batch_size))
    total = steps_per_epoch * cfg.epochs
    if cfg.max_steps is not None:
        total = min(total, cfg.max_steps)
    warm = max(1, int(cfg.warmup_epochs * steps_per_epoch))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / max(1, total)))))
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=positive_weights(Y, cfg.pos_weight_max).to(dev))
    probs = torch.tensor(decade_sample_weights(decades, cfg.decade_power))
    Yt = torch.from_numpy(Y)
    sources_on_dev = sources.device == dev
    history = {"epochs": [], "config": cfg.to_dict(), "device": str(dev), "n_train": n}
    model.train()
    step = 0
    t_start = time.perf_counter()
    for epoch in range(cfg.epochs):
        t0 = time.perf_counter()
        order = torch.multinomial(probs, n, replacement=True, generator=gen)
        losses = []
        for s in range(steps_per_epoch):
            if step >= total:
                break
            idx = order[s * cfg.batch_size:(s + 1) * cfg.batch_size]
            xb = sources[idx.to(sources.device)] if sources_on_dev else sources[idx].to(dev, non_blocking=cuda)
            x = augment(xb, gen)
            if cuda:
                x = x.contiguous(memory_format=torch.channels_last)
            yb = Yt[idx].to(dev, non_blocking=cuda)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cuda):
                logits = model(x)
            loss = loss_fn(logits.float(), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.detach())
            step += 1
        if cuda:
            torch.cuda.synchronize()
        if losses:
            history["epochs"].append({"loss": float(torch.stack(losses).mean()),
                                      "seconds": time.perf_counter() - t0, "steps": len(losses)})
            if progress:
                progress(epoch, history["epochs"][-1])
        if step >= total:
            break
    secs = time.perf_counter() - t_start
    history.update(steps=step, seconds=secs, images_per_s=step * cfg.batch_size / max(secs, 1e-9))
    backbone.requires_grad_(True)
    model.eval()
    history["head"] = model.head
    return history


@torch.inference_mode()
def embed(backbone: FloatMobileNetV2, inputs: torch.Tensor, device: str | None = None,
          batch_size: int = 256, flip: bool = False) -> np.ndarray:
    """uint8 (n,3,224,224) -> L2-normalised (n,1280) float32; flip=True averages in the mirror."""
    dev = resolve_device(device)
    cuda = dev.type == "cuda"
    backbone = backbone.eval().to(dev)
    out = []
    for i in range(0, len(inputs), batch_size):
        x = FloatMobileNetV2.normalise(inputs[i:i + batch_size].to(dev, non_blocking=cuda))
        if cuda:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cuda):
            f = backbone(x).float()
            if flip:
                f = f + backbone(torch.flip(x, dims=[3])).float()
        out.append(F.normalize(f, dim=1).cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, DIM), np.float32)


@torch.inference_mode()
def genre_probabilities(backbone: FloatMobileNetV2, head: nn.Module, inputs: torch.Tensor,
                        device: str | None = None, batch_size: int = 256) -> np.ndarray:
    """The fine-tuned network's own genre probabilities (n, g) for uint8 (n,3,224,224) inputs."""
    dev = resolve_device(device)
    backbone, head = backbone.eval().to(dev), head.eval().to(dev)
    out = []
    for i in range(0, len(inputs), batch_size):
        x = FloatMobileNetV2.normalise(inputs[i:i + batch_size].to(dev))
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            out.append(torch.sigmoid(head(backbone(x)).float()).cpu())
    return torch.cat(out).numpy()
