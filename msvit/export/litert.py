"""LiteRT (``.tflite``, formerly TensorFlow Lite) for Android/iOS/embedded, via ``litert-torch``.

``litert_torch.convert`` (torch.export -> StableHLO/TFL MLIR -> flatbuffer) writes the FP32
model; the reduced precisions come from Google's own post-training quantizer,
``ai-edge-quantizer``, applied to that flatbuffer:

- **fp16**: weight-only float16 (``FLOAT_CASTING``, 16 bit) on every op with weights: half the
  size; the CPU (XNNPACK) computes in FP32, the GPU delegate in FP16.
- **int8**: static int8 (``static_wi8_ai8``: per-channel symmetric int8 weights, per-tensor
  asymmetric int8 activations, min/max calibrated in the LiteRT interpreter on ``calib_x``)
  on the Conv/DepthwiseConv/FullyConnected ops of the chosen layer groups only; float I/O.
  Quantizing every op (the stock recipe) breaks decisions on MS-Eff-ViT (agreement 0.88,
  max |dP| 0.31 on the face crops), and so does quantizing the early backbone: see
  ``DEFAULT_INT8_GROUPS`` and ``research/litert_int8.py``.

Op scopes: litert-torch names every tensor after the module path that produced it
(``.../EfficientNetFeatures_backbone/torch.nn.modules.container.Sequential_6/...``), which is
how layer groups (msvit's sensitivity-group names) map onto flatbuffer ops
(:func:`scope_regex`). The final 1-output FullyConnected writes the graph output, whose name
carries no scope: it stays float.

I/O: signature ``serving_default``, input ``image``; ``input_kind="tensor"`` takes float32 NCHW
(ImageNet-normalised, like every other target) and returns ``logit`` (N, 1);
``input_kind="image"`` takes letterboxed uint8 RGB NHWC (N, S, S, 3) - cast, layout change and
normalisation are in the graph - and returns ``prob`` and ``logit``. Shapes are static
(``batch``). Metadata: :func:`embed_metadata` / :func:`read_metadata` (the flatbuffer's
``metadata`` list, entry ``msvit`` = JSON of the flat dict).
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import re
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.nn as nn

from ..errors import CalibrationError, ExportError, TargetUnavailableError
from ..fileio import atomic_write
from ..model.info import model_info
from ..runtime.base import graph_feed
from ..runtime.litert import METADATA_NAME, SIGNATURE, check_tflite_bytes, read_metadata
from ..version import package_versions
from .graph import ImageInput

PRECISIONS = ("fp32", "fp16", "int8")
INPUT_KINDS = ("tensor", "image")
INT8_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
# Measured on the demo checkpoint (calib/ -> eval/, one group int8 at a time, max |dP|): stem 0.08,
# blocks.0-2 0.14-0.20, blocks.3 0.07, blocks.4 0.08, blocks.5 0.12, blocks.6 0.015, L-ViT 0.0002,
# H-ViT 0.002, head 0.006. These four together: agreement 1.000, max |dP| 0.014.
DEFAULT_INT8_GROUPS = ("backbone.blocks.6", "l_vit", "h_vit", "head")

_BB = r"EfficientNetFeatures_backbone/[^/;]*"
_ANY = r"[^/;]*"


def _pe(branch: str) -> str:  # a branch's patch-embedding projection (Sequential proj)
    return rf"ViTLayer_{branch}/" + _ANY + r"PatchEmbed_patch_embed/" + _ANY + r"Sequential_proj/" + _ANY


#: msvit layer group (regex over the name) -> litert-torch op-scope regex
_GROUP_SCOPES: tuple[tuple[str, Callable[[re.Match], str]], ...] = (
    (r"backbone", lambda m: r"EfficientNetFeatures_backbone/"),
    (r"backbone\.stem", lambda m: _BB + r"\.(Conv2dSame_conv_stem|BatchNormAct2d_bn1|Conv2d_conv_stem)(;|/|$)"),
    (r"backbone\.blocks\.(\d+)", lambda m: _BB + rf"Sequential_{m[1]}/"),
    (r"([lh]_vit)", lambda m: rf"ViTLayer_{m[1]}/"),
    (r"([lh]_vit)\.blocks", lambda m: rf"ViTLayer_{m[1]}/" + _ANY + r"ViTBlock_"),
    (r"([lh]_vit)\.patch_embed", lambda m: rf"ViTLayer_{m[1]}/" + _ANY + r"PatchEmbed_patch_embed/"),
    (r"([lh]_vit)\.patch_embed\.proj", lambda m: _pe(m[1]) + r"_0(;|$)"),
    (r"([lh]_vit)\.patch_embed\.mbconv(\d+)", lambda m: _pe(m[1]) + rf"_{m[2]}/"),
    (r"([lh]_vit)\.patch_embed\.proj(\d+)", lambda m: _pe(m[1]) + rf"_{m[2]}(;|$)"),
    # called as a Sequential, or layer by layer (head[1](x): the scope then has no "head")
    (r"head", lambda m: r"Sequential_head/|MultiScaleEffViT_[^/;]*/[^/;]*\.(Linear|LayerNorm|GELU|Dropout)_\d+(;|/|$)"),
)


def scope_regex(group: str) -> str:
    """The op-scope regex (over litert-torch tensor names) of an msvit layer group.

    Accepts msvit's sensitivity-group names (``backbone.stem``, ``backbone.blocks.N``,
    ``l_vit.blocks``, ``l_vit.patch_embed.proj``, ``l_vit.patch_embed.mbconvN``, ``head``),
    whole branches (``l_vit``, ``h_vit``, ``backbone``), or a raw regex prefixed ``re:``.
    """
    g = group.strip()
    if g.startswith("re:"):
        return g[3:]
    for pattern, build in _GROUP_SCOPES:
        m = re.fullmatch(pattern, g)
        if m:
            return build(m)
    raise ExportError(f"unknown layer group {group!r} for LiteRT INT8: use msvit group names "
                      "(backbone.stem, backbone.blocks.N, l_vit, h_vit, l_vit.blocks, head, ...) or 're:REGEX'")


class _Named(nn.Module):
    """Named outputs: the LiteRT signature then has ``logit`` (and ``prob``), not ``output_0``."""

    def __init__(self, model: nn.Module, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.inner = ImageInput(model) if kind == "image" else model

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.kind == "image":
            prob, logit = self.inner(image)
            return {"prob": prob, "logit": logit}
        return {"logit": self.inner(image)}


def tool_versions() -> dict[str, str]:
    return package_versions(("litert-torch", "ai-edge-litert", "ai-edge-quantizer", "litert-converter", "torch"),
                            python=False)


def _require() -> None:
    missing = []
    for mod, dist in (("litert_torch", "litert-torch"), ("ai_edge_litert", "ai-edge-litert")):
        try:
            __import__(mod)
        except ImportError as e:
            missing.append(f"{dist} ({str(e).splitlines()[0][:120]})")
    if missing:
        raise TargetUnavailableError("LiteRT export needs " + ", ".join(missing) + ": pip install 'msvit[litert]'")


@contextlib.contextmanager
def quiet_converter() -> Iterator[io.StringIO]:
    """litert-torch prints progress to stdout, the MLIR/absl C++ side logs to fd 2 and tqdm bars
    to stderr: all of it goes to a buffer (kept for error messages)."""
    buf = io.StringIO()
    saved = []
    tmp = tempfile.TemporaryFile(mode="w+b")
    try:
        for fd in (1, 2):
            try:
                saved.append((fd, os.dup(fd)))
            except OSError:
                continue
        for s in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                s.flush()
        for fd, _ in saved:
            os.dup2(tmp.fileno(), fd)
        with warnings.catch_warnings(), contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
            warnings.simplefilter("ignore")
            yield buf
    finally:
        for s in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                s.flush()
        for fd, old in saved:
            os.dup2(old, fd)
            os.close(old)
        with contextlib.suppress(Exception):
            tmp.seek(0)
            buf.write(tmp.read().decode("utf-8", "replace"))
        tmp.close()


def _first(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return (lines[0] if lines else type(e).__name__)[:300]


def _tail(buf: io.StringIO, n: int = 3) -> str:
    lines = [ln for ln in buf.getvalue().splitlines() if ln.strip() and "Warning" not in ln]
    return " | ".join(lines[-n:])[-400:]


def _convert_float(model: nn.Module, kind: str, batch: int) -> bytes:
    import litert_torch

    size = model_info(model).img_size
    example = (torch.zeros(batch, size, size, 3, dtype=torch.uint8) if kind == "image"
               else torch.zeros(batch, 3, size, size))
    module = _Named(model, kind).eval()
    err: BaseException | None = None
    with tempfile.TemporaryDirectory(prefix="msvit-litert-") as tmp:
        out = Path(tmp) / "model.tflite"
        with quiet_converter() as log:
            try:
                litert_torch.convert(module, sample_kwargs={"image": example}).export(str(out))
            except Exception as e:  # the conversion stack raises many types; keep the first line
                err = e
        if err is None:
            return out.read_bytes()
    raise ExportError(f"litert-torch conversion failed: {_first(err)}"
                      + (f" (log: {_tail(log)})" if _tail(log) else ""))


def quantize_bytes(float_bytes: bytes, recipe: list[dict[str, Any]], calib: list[dict[str, np.ndarray]] | None,
              threads: int) -> bytes:
    from ai_edge_quantizer import quantizer

    err: BaseException | None = None
    with quiet_converter() as log:
        try:
            q = quantizer.Quantizer(bytearray(float_bytes))
            q.load_quantization_recipe(recipe)
            cal = q.calibrate({SIGNATURE: calib}, num_threads=threads) if calib is not None else None
            res = q.quantize(cal, enable_progress_report=False)
        except Exception as e:
            err = e
    if err is not None:
        raise ExportError(f"ai-edge-quantizer failed: {_first(err)}" + (f" (log: {_tail(log)})" if _tail(log) else ""))
    return bytes(res.quantized_model)


def fp16_recipe() -> list[dict[str, Any]]:
    """Weight-only float16 on every supported op (ai-edge-quantizer ``FLOAT_CASTING``)."""
    from ai_edge_quantizer import qtyping, recipe_manager
    from ai_edge_quantizer.algorithm_manager import AlgorithmName

    rm = recipe_manager.RecipeManager()
    rm.add_weight_only_config(regex=".*", operation_name=qtyping.TFLOperationName.ALL_SUPPORTED, num_bits=16,
                              algorithm_key=AlgorithmName.FLOAT_CASTING)
    return rm.get_quantization_recipe()


def int8_recipe(groups: list[str] | tuple[str, ...] | None = DEFAULT_INT8_GROUPS,
                ops: tuple[str, ...] = INT8_OPS, activation_bits: int = 8) -> list[dict[str, Any]]:
    """Static int8 (``static_wi8_ai8``, or ``static_wi8_ai16`` for ``activation_bits=16``) on ``ops`` in
    ``groups`` (``None``: the whole model, every supported op - the stock recipe). Float I/O."""
    from ai_edge_quantizer import recipe as aeq_recipe

    base = (aeq_recipe.static_wi8_ai16() if activation_bits == 16 else aeq_recipe.static_wi8_ai8())[0]
    if groups is None:
        return [dict(base)]
    return [{**base, "regex": scope_regex(g), "operation": op} for g in groups for op in ops]


def _calib_inputs(calib_x: np.ndarray, kind: str, batch: int, limit: int | None = None) -> list[dict[str, np.ndarray]]:
    x = np.ascontiguousarray(calib_x, np.float32)
    if x.ndim != 4 or x.shape[1] != 3:
        raise CalibrationError(f"calibration inputs must be float32 (N, 3, S, S) normalised images, got {x.shape}")
    if limit:
        x = x[:limit]
    n = (len(x) // batch) * batch
    if n == 0:
        raise CalibrationError(f"need at least {batch} calibration images for a batch-{batch} model, got {len(x)}")
    x = x[:n]
    feed = graph_feed(x, kind)
    return [{"image": feed[i:i + batch]} for i in range(0, n, batch)]


def embed_metadata(path: str | os.PathLike, metadata: dict[str, str]) -> Path:
    """Write ``metadata`` (flat str -> str) into the ``.tflite`` as the flatbuffer metadata entry
    ``msvit`` (JSON, sorted keys), replacing an earlier one; atomic (temp file + rename)."""
    p = Path(path)
    out = embed_metadata_bytes(p.read_bytes(), metadata)
    return atomic_write(p, lambda f: f.write(out))


def embed_metadata_bytes(data: bytes, metadata: dict[str, str]) -> bytes:
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    check_tflite_bytes(data)
    flat = {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()}
    blob = json.dumps(flat, sort_keys=True, ensure_ascii=False).encode("utf-8")
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(data))
    for b in model.buffers:  # offset/size buffers come back as bytearray slices: pack them as vectors, not byte by byte
        if b.data is not None and not isinstance(b.data, np.ndarray):
            b.data = np.frombuffer(bytes(b.data), np.uint8)
    buf = schema.BufferT()
    buf.data = np.frombuffer(blob, np.uint8).copy()
    keep = [m for m in (model.metadata or []) if (m.name.decode() if isinstance(m.name, bytes) else m.name)
            != METADATA_NAME]
    model.buffers.append(buf)
    md = schema.MetadataT()
    md.name = METADATA_NAME
    md.buffer = len(model.buffers) - 1
    model.metadata = keep + [md]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def convert_litert(model: nn.Module, path: Path, precision: str, metadata: dict[str, str], batch: int = 1,
                   calib_x: np.ndarray | None = None, input_kind: str = "tensor", *,
                   int8_groups: list[str] | tuple[str, ...] | None = DEFAULT_INT8_GROUPS,
                   int8_ops: tuple[str, ...] = INT8_OPS, calib_limit: int | None = 512, threads: int = 2,
                   float_bytes: bytes | None = None,
                   log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Convert ``model`` to a LiteRT flatbuffer at ``path`` (written atomically) and embed ``metadata``.

    ``precision``: fp32 | fp16 | int8 (int8 needs ``calib_x``, float32 NCHW normalised images;
    ``int8_groups=None`` quantizes every op). ``input_kind``: tensor | image (see module doc).
    ``float_bytes``: an FP32 flatbuffer of the same model/kind/batch already converted (skips the
    ~25 s conversion when several precisions are exported). Returns what was done: tool versions,
    I/O, the quantization scheme, sizes and timings (also merged into the embedded metadata).
    """
    if precision not in PRECISIONS:
        raise ExportError(f"LiteRT precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if input_kind not in INPUT_KINDS:
        raise ExportError(f"input_kind must be 'tensor' or 'image', got {input_kind!r}")
    if batch < 1:
        raise ExportError(f"batch must be >= 1, got {batch}")
    if precision == "int8" and calib_x is None:
        raise CalibrationError("LiteRT INT8 needs calibration images (calib_x / --calib-data)")
    _require()
    path = Path(path)
    size = model_info(model).img_size
    t0 = time.perf_counter()
    if float_bytes is None:
        float_bytes = _convert_float(model.eval(), input_kind, batch)
    t_conv = time.perf_counter() - t0
    info: dict[str, Any] = {
        "tool": "litert-torch", "tool_versions": tool_versions(), "precision": precision,
        "input_kind": input_kind, "signature": SIGNATURE, "input_name": "image",
        "input_shape": [batch, size, size, 3] if input_kind == "image" else [batch, 3, size, size],
        "input_dtype": "uint8" if input_kind == "image" else "float32",
        "input_layout": "NHWC" if input_kind == "image" else "NCHW",
        "outputs": ["prob", "logit"] if input_kind == "image" else ["logit"],
        "convert_seconds": round(t_conv, 2), "fp32_size_bytes": len(float_bytes),
    }
    if log:
        log(f"    litert-torch: FP32 flatbuffer {len(float_bytes) / 1e6:.1f} MB in {t_conv:.0f} s")
    t1 = time.perf_counter()
    if precision == "fp32":
        out = float_bytes
        info["quant_scheme"] = "none (float32)"
    elif precision == "fp16":
        out = quantize_bytes(float_bytes, fp16_recipe(), None, threads)
        info["quant_tool"] = f"ai-edge-quantizer {info['tool_versions'].get('ai-edge-quantizer', '?')}"
        info["quant_scheme"] = ("weight-only float16 (FLOAT_CASTING) on all ops with weights; "
                                "float32 activations and I/O (XNNPACK computes FP32, GPU delegate FP16)")
    else:
        calib = _calib_inputs(calib_x, input_kind, batch, calib_limit)
        recipe = int8_recipe(int8_groups, int8_ops)
        out = quantize_bytes(float_bytes, recipe, calib, threads)
        groups = "all ops (stock static_wi8_ai8)" if int8_groups is None else ", ".join(int8_groups)
        info.update({
            "quant_tool": f"ai-edge-quantizer {info['tool_versions'].get('ai-edge-quantizer', '?')}",
            "quant_scheme": ("static int8 (static_wi8_ai8): per-channel symmetric int8 weights, per-tensor "
                             "asymmetric int8 activations (min/max), float32 I/O"),
            "int8_groups": list(int8_groups) if int8_groups is not None else None,
            "int8_ops": list(int8_ops) if int8_groups is not None else ["*"],
            "calib_images": sum(len(c["image"]) for c in calib), "calib_method": "minmax",
        })
        if log:
            log(f"    ai-edge-quantizer: int8 on {groups} ({', '.join(int8_ops)}), "
                f"calibrated on {info['calib_images']} images")
    info["quantize_seconds"] = round(time.perf_counter() - t1, 2)
    meta = {**metadata}
    meta.update({
        "precision": precision, "input_name": "image", "litert_signature": SIGNATURE,
        "input_shape": "x".join(str(d) for d in info["input_shape"]),
        "input_format": ("uint8 NHWC RGB, letterboxed (normalisation is in the graph)" if input_kind == "image"
                         else "float32 NCHW RGB"),
        "input_kind": input_kind,
        "output": ("prob (N,1) = P(fake); logit (N,1)" if input_kind == "image"
                   else "logit (N,1); P(fake) = sigmoid(logit)"),
        "quant_scheme": info["quant_scheme"],
        **{f"{k.replace('-', '_')}_version": v for k, v in info["tool_versions"].items()},
    })
    if precision == "int8":
        meta.update({"int8_groups": json.dumps(info["int8_groups"]), "int8_ops": json.dumps(info["int8_ops"]),
                     "calib_images": str(info["calib_images"]), "calib_method": "minmax"})
    final = embed_metadata_bytes(out, meta)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: f.write(final))
    info["size_bytes"] = len(final)
    info["metadata"] = meta
    info["seconds"] = round(time.perf_counter() - t0, 2)
    return info


def convert_float_bytes(model: nn.Module, input_kind: str = "tensor", batch: int = 1) -> bytes:
    """Just the FP32 flatbuffer (no metadata): pass it as ``float_bytes`` to several
    :func:`convert_litert` calls to convert once."""
    _require()
    return _convert_float(model.eval(), input_kind, batch)


__all__ = ["DEFAULT_INT8_GROUPS", "INT8_OPS", "ImageInput", "PRECISIONS", "convert_float_bytes", "convert_litert",
           "embed_metadata", "embed_metadata_bytes", "fp16_recipe", "int8_recipe", "read_metadata", "scope_regex",
           "tool_versions"]


def export(ctx) -> Any:
    """``--target litert``: FP32 / FP16 / INT8 (guarded) ``.tflite``; parity in the LiteRT interpreter."""
    from ..quantize import run_int8
    from ..quantize.litert import LiteRTInt8
    from .core import TargetOutput

    if ctx.dynamic_batch:
        raise ExportError("LiteRT export uses static shapes: --dynamic-batch is not supported for --target litert; "
                          "export with --batch N")
    path = ctx.work_dir / f"{ctx.stem}.tflite"
    float_bytes = convert_float_bytes(ctx.model, ctx.options.input, ctx.batch)
    if ctx.precision == "int8":
        res = run_int8(LiteRTInt8(ctx.int8_job(), convert_litert, float_bytes, embed_metadata), path)
        _standard_metadata(path, ctx.options.input)
        return TargetOutput.int8(path, res)
    info = convert_litert(ctx.model, path, ctx.precision, ctx.metadata, batch=ctx.batch, float_bytes=float_bytes,
                          input_kind=ctx.options.input, log=ctx.log)
    info.pop("metadata", None)
    ctx.metadata.update({k: v for k, v in read_metadata(path).items()})  # the manifest says what is embedded
    if _standard_metadata(path, ctx.options.input):
        info["standard_metadata"] = "TFLITE_METADATA: image input, output prob labelled 'fake' (labels.txt)"
    return TargetOutput(path, [path], extra={"litert": info})


def _standard_metadata(path: Path, input_kind: str) -> bool:
    """Image-input artifacts: add the standard TFLite metadata (MediaPipe ImageClassifier, Android
    Studio) last, after every ``msvit`` entry is embedded (re-serialising drops the label zip)."""
    from .litert_metadata import add_standard_metadata

    if input_kind != "image" or not path.is_file():
        return False
    out = add_standard_metadata(path.read_bytes(), read_metadata(path))
    atomic_write(path, lambda f: f.write(out))
    return True
