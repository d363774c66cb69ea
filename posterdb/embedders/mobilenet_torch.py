"""A float PyTorch MobileNetV2 rebuilt from the int8 TFLite file, so the backbone can be fine-tuned.

The TFLite graph is walked op by op: every CONV_2D / DEPTHWISE_CONV_2D weight is dequantised with
its own scale and zero point (per channel when the file has them), the int32 bias (batch-norm
folded in by the converter) becomes a float conv bias with scale = input scale x weight scale, the
fused activation stays (ReLU6 or none), ADD marks a residual block. TensorFlow's 'SAME' padding is
asymmetric on stride 2 (the extra row/column goes bottom/right); `TFConv` pads the same way, so the
float network sees exactly the pixels the int8 one sees. Input: uint8 RGB, (x - 128) / 128, the
int8 model's own input quantisation.

Only torch is needed to *run* the model (the device script ships it without ai-edge-litert);
`from_tflite` imports the flatbuffer schema lazily.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

FORMAT = "posterdb-mobilenet-v2-float/1"
INPUT_ZERO, INPUT_SCALE = 128.0, 1.0 / 128.0
DIM = 1280


def _same_pad(size: int, k: int, s: int) -> tuple[int, int]:
    out = math.ceil(size / s)
    total = max((out - 1) * s + k - size, 0)
    return total // 2, total - total // 2


class TFConv(nn.Module):
    """Conv2d with a bias, TensorFlow 'SAME' padding and an optional ReLU6."""

    def __init__(self, cin: int, cout: int, k: int, stride: int, depthwise: bool, relu6: bool):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, padding=0, groups=cout if depthwise else 1, bias=True)
        self.k, self.stride, self.relu6 = k, stride, relu6

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.k > 1:
            top, bottom = _same_pad(x.shape[-2], self.k, self.stride)
            left, right = _same_pad(x.shape[-1], self.k, self.stride)
            x = F.pad(x, (left, right, top, bottom))
        x = self.conv(x)
        return F.relu6(x) if self.relu6 else x


class Block(nn.Module):
    """A run of convs (stem, inverted residual: [expand] -> depthwise -> project, or last 1x1)."""

    def __init__(self, convs: list[TFConv], residual: bool):
        super().__init__()
        self.convs = nn.Sequential(*convs)
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.convs(x)
        return x + y if self.residual else y


class FloatMobileNetV2(nn.Module):
    """`features[i]` are the blocks (0 = stem, 1..17 inverted residuals, 18 = the 1x1 to 1280), as
    in torchvision's layout, so `--unfreeze-from BLOCK` counts the same way. forward() returns the
    pooled 1280-d features (before L2 normalisation)."""

    def __init__(self, spec: list[dict]):
        super().__init__()
        self.spec = spec
        self.features = nn.ModuleList(
            Block([TFConv(c["cin"], c["cout"], c["k"], c["stride"], c["depthwise"], c["relu6"])
                   for c in b["convs"]], b["residual"]) for b in spec)

    @staticmethod
    def normalise(x_uint8_nchw: torch.Tensor) -> torch.Tensor:
        """uint8 (n,3,H,W) -> the int8 model's real-valued input range."""
        return (x_uint8_nchw.float() - INPUT_ZERO) * INPUT_SCALE

    def forward_map(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.features:
            x = block(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_map(x).mean(dim=(2, 3))

    def to_checkpoint(self, **meta) -> dict:
        """A dict torch.save can write and torch.load(weights_only=True) can read back."""
        return {"format": FORMAT, "spec": self.spec, "meta": {k: str(v) for k, v in meta.items()},
                "state_dict": {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}}

    @classmethod
    def from_checkpoint(cls, ckpt: dict) -> "FloatMobileNetV2":
        if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} checkpoint")
        model = cls(ckpt["spec"])
        model.load_state_dict(ckpt["state_dict"], strict=True)
        return model


# ---- TFLite -> float --------------------------------------------------------------------------

def _dequant(tensor, buffers, dtype) -> np.ndarray:
    raw = np.frombuffer(bytes(bytearray(buffers[tensor.buffer].data)), dtype=dtype).reshape(tensor.shape)
    q = tensor.quantization
    scale = np.asarray(q.scale, np.float64)
    zero = np.asarray(q.zeroPoint if q.zeroPoint is not None else [0], np.float64)
    if scale.size > 1:  # per-channel along quantizedDimension
        shape = [1] * raw.ndim
        shape[q.quantizedDimension] = scale.size
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    return ((raw.astype(np.float64) - zero) * scale).astype(np.float32)


def from_tflite(path: str | Path) -> FloatMobileNetV2:
    """Dequantise the MobileNetV2 TFLite file at `path` into a FloatMobileNetV2 (up to the 1280-d
    pooled features; the ImageNet classifier is dropped)."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(Path(path).read_bytes()), 0)
    sg, buffers = model.subgraphs[0], model.buffers
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if isinstance(v, int)}
    opnames = [names[max(c.builtinCode, c.deprecatedBuiltinCode)] for c in model.operatorCodes]
    dtypes = {schema.TensorType.UINT8: np.uint8, schema.TensorType.INT8: np.int8,
              schema.TensorType.INT32: np.int32, schema.TensorType.FLOAT32: np.float32}

    convs, weights = [], {}
    producer_block: dict[int, int] = {}  # tensor index -> index of the conv producing it
    for op in sg.operators:
        kind = opnames[op.opcodeIndex]
        if kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            x_i, w_i, b_i = (int(i) for i in op.inputs)
            opt = op.builtinOptions
            if opt.padding != schema.Padding.SAME or opt.strideH != opt.strideW:
                raise ValueError(f"{path}: unsupported conv options {vars(opt)}")
            wt, bt, xt = sg.tensors[w_i], sg.tensors[b_i], sg.tensors[x_i]
            w = _dequant(wt, buffers, dtypes[wt.type])
            if kind == "CONV_2D":
                w = w.transpose(0, 3, 1, 2)                 # [out, kh, kw, in] -> [out, in, kh, kw]
                depthwise = False
            else:
                w = w.transpose(3, 0, 1, 2)                 # [1, kh, kw, out] -> [out, 1, kh, kw]
                depthwise = True
            wscale = np.asarray(wt.quantization.scale, np.float64)
            bscale = np.asarray(bt.quantization.scale, np.float64)
            expected = float(xt.quantization.scale[0]) * wscale
            if not np.allclose(bscale, expected, rtol=1e-3):
                raise ValueError(f"{path}: bias scale {bscale[:3]} != input x weight scale {expected[:3]}")
            b = np.frombuffer(bytes(bytearray(buffers[bt.buffer].data)), np.int32).astype(np.float64) * bscale
            if w.shape[0] == 1001:  # the ImageNet logits conv: not part of the features
                break
            relu6 = opt.fusedActivationFunction == schema.ActivationFunctionType.RELU6
            if opt.fusedActivationFunction not in (schema.ActivationFunctionType.NONE,
                                                   schema.ActivationFunctionType.RELU6):
                raise ValueError(f"{path}: unsupported activation {opt.fusedActivationFunction}")
            convs.append({"cin": int(w.shape[0] if depthwise else w.shape[1]), "cout": int(w.shape[0]),
                          "k": int(w.shape[2]), "stride": int(opt.strideH), "depthwise": depthwise,
                          "relu6": bool(relu6), "in": x_i, "out": int(op.outputs[0])})
            weights[len(convs) - 1] = (w, b.astype(np.float32))
        elif kind == "ADD":
            a, c = (int(i) for i in op.inputs)
            producer_block[int(op.outputs[0])] = -1
            # mark: the last conv run is a residual block whose input is the other operand
            convs.append({"add": (a, c), "out": int(op.outputs[0])})
        elif kind in ("AVERAGE_POOL_2D", "RESHAPE", "SOFTMAX"):
            continue
        else:
            raise ValueError(f"{path}: unexpected op {kind} in a MobileNetV2 graph")

    # Group convs into blocks: stem = first conv; a block ends at each linear (no-ReLU) projection
    # (plus its ADD when residual); the last conv (1x1 -> 1280) is its own block.
    spec, state, current, conv_idx = [], {}, [], []
    i = 0
    items = convs
    while i < len(items):
        c = items[i]
        if "add" in c:
            raise ValueError(f"{path}: ADD without a preceding block")
        current.append(c)
        conv_idx.append(i)
        is_stem = not spec and len(current) == 1
        ends = is_stem or not c["relu6"] or i == len(items) - 1
        residual = False
        if ends and i + 1 < len(items) and "add" in items[i + 1]:
            a, b = items[i + 1]["add"]
            block_in = current[0]["in"]
            if {a, b} != {c["out"], block_in}:
                raise ValueError(f"{path}: residual ADD does not join its block's input and output")
            residual = True
            i += 1
        if ends:
            spec.append({"residual": residual,
                         "convs": [{k: v for k, v in cc.items() if k not in ("in", "out")} for cc in current]})
            bi = len(spec) - 1
            for j, ci in enumerate(conv_idx):
                w, b = weights[ci]
                state[f"features.{bi}.convs.{j}.conv.weight"] = torch.from_numpy(np.ascontiguousarray(w))
                state[f"features.{bi}.convs.{j}.conv.bias"] = torch.from_numpy(b)
            current, conv_idx = [], []
        i += 1
    if current:
        raise ValueError(f"{path}: graph ended inside a block")
    net = FloatMobileNetV2(spec)
    net.load_state_dict(state, strict=True)
    out_dim = spec[-1]["convs"][-1]["cout"]
    if out_dim != DIM:
        raise ValueError(f"{path}: features end with {out_dim} channels, expected {DIM}")
    return net.eval()
