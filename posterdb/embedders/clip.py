"""clip: OpenCLIP image and text encoders; architecture and pretrained tag are options."""
from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import open_clip
import torch
from PIL import Image

from posterdb.core.settings import current as current_settings
from posterdb.embedders.base import Embedder
from posterdb.embedders.resnet import TorchRunner, resolve_device
from posterdb.embedders.weights import (
    Download, WeightsLoadError, describe_mismatch, load_torch_state_dict, resolve_weights,
    sha256_file)

DEFAULT_ARCH = "ViT-B-32"
DEFAULT_PRETRAINED = "laion2b_s34b_b79k"
EXTENSIONS = (".safetensors", ".bin", ".pt", ".pth")
HF_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


def weight_filenames(arch: str, pretrained: str) -> list[str]:
    """Names looked for in a model dir: '<arch>-<tag>' + .safetensors/.bin/.pt/.pth."""
    return [f"{arch}-{pretrained}{ext}" for ext in EXTENSIONS]


def _cache_and_download(cfg: dict) -> tuple[list[str], Download | None]:
    """open_clip's own cache locations (HF hub snapshots, ~/.cache/clip) and its download."""
    paths: list[str] = []
    source = host = None
    if cfg.get("hf_hub"):
        from huggingface_hub.constants import HF_HUB_CACHE

        repo, fn = os.path.split(cfg["hf_hub"])
        names = [fn] if fn and fn not in HF_FILES else list(HF_FILES)
        if fn.endswith((".bin", ".pth")):
            names.insert(0, fn[:-4] + ".safetensors")
        snap = Path(HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}" / "snapshots"
        paths += [str(snap / "*" / n) for n in names]
        source = f"Hugging Face hub repo {repo}"
        host = urlparse(current_settings().hf_endpoint).hostname
    elif cfg.get("url"):
        source, host = cfg["url"], urlparse(cfg["url"]).hostname
    if cfg.get("url") and "openaipublic" not in cfg["url"]:  # OpenAI's .pt files are TorchScript
        paths.append(str(Path("~/.cache/clip").expanduser() / os.path.basename(cfg["url"])))
    if not source:
        return paths, None
    return paths, Download(source, host, lambda: open_clip.download_pretrained(cfg))


@contextlib.contextmanager
def _quiet_random_init():
    """Hide open_clip's 'initialized randomly' warning: the weights are loaded right after."""
    flt = logging.Filter()
    flt.filter = lambda rec: "No pretrained weights loaded" not in rec.getMessage()
    root = logging.getLogger()
    root.addFilter(flt)
    try:
        yield
    finally:
        root.removeFilter(flt)


def load_clip_state(model: torch.nn.Module, path: Path, what: str) -> None:
    """Load a state dict into an open_clip model safely (weights_only), with open_clip's format
    conversions (mirrors open_clip.load_checkpoint without its unsafe torch.load fallback)."""
    from open_clip.convert import convert_state_dict
    from open_clip.model import (
        convert_to_custom_text_state_dict,
        resize_pos_embed,
        resize_text_pos_embed,
    )

    sd = load_torch_state_dict(path, what)
    try:
        sd = convert_state_dict(model, sd)
        if "positional_embedding" in sd and not hasattr(model, "positional_embedding"):
            sd = convert_to_custom_text_state_dict(sd)
        for key in ("logit_scale", "logit_bias"):
            param = getattr(model, key, None)
            if key in sd and param is not None and param.ndim != sd[key].ndim:
                sd[key] = sd[key].reshape(param.shape)
        if getattr(model, "logit_bias", None) is not None and "logit_bias" not in sd \
                and "logit_scale" in sd:
            sd["logit_bias"] = torch.zeros_like(sd["logit_scale"])
        pos_id = "text.transformer.embeddings.position_ids"
        if pos_id in sd and not hasattr(model, pos_id):
            del sd[pos_id]
        resize_pos_embed(sd, model)
        resize_text_pos_embed(sd, model)
        model.load_state_dict(sd, strict=True)
    except Exception as e:
        raise WeightsLoadError(
            f"{path}: not a {what} state dict: {describe_mismatch(model.state_dict(), sd)}") from e


class ClipEmbedder(Embedder):
    """OpenCLIP; preprocess = the model's own resize/crop as uint8 HWC (normalised on device)."""

    name = "clip"
    supports_text = True

    def __init__(self, *, arch: str = DEFAULT_ARCH, pretrained: str = DEFAULT_PRETRAINED,
                 model_dir: str | Path | None = None, weights: str | Path | None = None,
                 device: str | None = None, batch_size: int | None = None,
                 allow_download: bool | None = None):
        from open_clip.transform import PreprocessCfg, image_transform_v2
        from torchvision.transforms import Compose, Normalize, ToTensor

        if open_clip.get_model_config(arch) is None:
            raise ValueError(f"unknown open_clip architecture {arch!r}; see open_clip.list_models()")
        self.arch, self.pretrained = arch, pretrained
        self.version = f"open_clip-{arch}-{pretrained}-1"
        cfg = open_clip.get_pretrained_cfg(arch, pretrained)
        what = f"clip {arch}:{pretrained}"
        if not cfg:
            what += f" (not an open_clip pretrained tag; known: {open_clip.list_pretrained_tags_by_model(arch)})"
        cache, download = _cache_and_download(cfg)
        self.path = resolve_weights(what, weight_filenames(arch, pretrained), explicit=weights,
                                    model_dir=model_dir, cache_paths=cache, download=download,
                                    allow_download=allow_download)
        self.weights_sha256 = sha256_file(self.path)
        self.device = resolve_device(device)
        self.batch_size = batch_size or (256 if self.device.startswith("cuda") else 32)

        pp_override = {k: cfg[k] for k in ("mean", "std", "interpolation", "resize_mode") if k in cfg}
        with _quiet_random_init():
            model = open_clip.create_model(
                arch, pretrained=None, pretrained_image=False, pretrained_text=False,
                force_quick_gelu=bool(cfg.get("quick_gelu", False)),
                force_preprocess_cfg=pp_override, device="cpu")
        load_clip_state(model, self.path, f"open_clip {arch}")
        self.dim = int(open_clip.get_model_config(arch)["embed_dim"])
        self._tokenizer = open_clip.get_tokenizer(arch)

        # Split the model's own transform: PIL steps run in preprocess (thread-safe, uint8 out),
        # ToTensor + Normalize are done on the device in embed_batch (same numbers, 4x less copying).
        tf = image_transform_v2(PreprocessCfg(**open_clip.get_model_preprocess_cfg(model)), is_train=False)
        self.transform = tf  # the model's own PIL -> normalised float CHW tensor transform
        steps = list(tf.transforms)
        cut = next((i for i, s in enumerate(steps) if isinstance(s, ToTensor)), None)
        if cut is not None and cut + 2 == len(steps) and isinstance(steps[-1], Normalize):
            self._pil, self._full = Compose(steps[:cut]), None
            mean, std = steps[-1].mean, steps[-1].std
        else:
            self._pil, self._full = None, tf
            mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
        self._runner = TorchRunner(self.device, mean, std)
        self.model = self._runner.prepare(model)

    def preprocess(self, image: Image.Image) -> np.ndarray:
        if image.mode != "RGB":
            image = image.convert("RGB")
        if self._pil is not None:
            return np.asarray(self._pil(image), dtype=np.uint8)
        return self._full(image).numpy().astype(np.float32, copy=False)

    def embed_batch(self, batch: np.ndarray) -> np.ndarray:
        if len(batch) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self._runner.run(self.model.encode_image, batch)

    def embed_text(self, texts: list[str]) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = []
        for i in range(0, len(texts), self.batch_size):
            tokens = self._tokenizer(texts[i:i + self.batch_size]).to(self._runner.device)
            out.append(self._runner.run(self.model.encode_text, tokens))
        return np.concatenate(out)
