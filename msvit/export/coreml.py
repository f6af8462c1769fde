"""Core ML ``.mlpackage`` (ML Program) for iOS/macOS.

The package takes an **RGB image** (``ImageType``, 224x224) and returns ``prob_fake``
= P(fake) (plus ``logit``), so Vision/``MLModel`` callers need no preprocessing code:
``/255`` is the ImageType scale, ``(x - mean) / std`` is folded into one mul + add at
the top of the graph, and the sigmoid is the last op. Conversion goes through
``torch.export`` (``ct.convert(exported_program)``).

Precisions: ``fp16`` / ``fp32`` compute precision; ``int8-weights`` compresses the
weights after conversion with ``coremltools.optimize.coreml`` (per-channel symmetric
int8, or 6-bit k-means palettization with ``ExportOptions(coreml_weights="palettize")``),
activations stay fp16; ``int8`` (W8A8) lives in :mod:`msvit.quantize.coreml`.

Core ML models run only on Apple platforms: on Linux the package is verified
structurally (``ct.utils.load_spec``: I/O, metadata, ops, weight dtypes) and the
result says ``verified="structure"``; on macOS a runner feeds the images through
``MLModel.predict`` and the wrapper checks parity as for every other target.
"""
from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from ..errors import ExportError, MsvitError, ValidationError
from ..model.info import model_info
from ..quantize import run_int8
from ..quantize.coreml import CoreMLInt8
from ..runtime.coreml import INPUT, LOGIT, OUTPUT, annotate, import_ct, inspect, quiet
from ..runtime.meta import ArtifactMeta
from .core import ExportContext, TargetOutput

DEFAULT_DEPLOYMENT_TARGET = "iOS16"
WEIGHT_MODES = ("linear", "palettize")
#: ops that decompress weights at load time (iOS16/17 and iOS18 spellings)
CONSTEXPR_LINEAR = ("constexpr_affine_dequantize", "constexpr_blockwise_shift_scale")
CONSTEXPR_LUT = ("constexpr_lut_to_dense",)


class ImageModel(nn.Module):
    """[0,1] RGB NCHW -> (P(fake), logit); mean/std folded as ``x * (1/std) + (-mean/std)``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        from ..model.variants import IMAGENET_MEAN, IMAGENET_STD

        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        self.register_buffer("w", 1.0 / std)
        self.register_buffer("b", -mean / std)
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logit = self.model(x * self.w + self.b)
        return torch.sigmoid(logit), logit


def deployment_target(ct, name: str | None):
    name = name or DEFAULT_DEPLOYMENT_TARGET
    t = getattr(ct.target, str(name), None)
    if t is None:
        valid = [n for n in dir(ct.target) if n.startswith(("iOS", "macOS", "watchOS", "tvOS"))]
        raise ExportError(f"unknown Core ML minimum_deployment_target {name!r}; choose one of: {', '.join(valid)}")
    return t


def convert(model: nn.Module, precision: str = "fp16", target: str | None = None, batch: int = 1):
    """PyTorch -> in-memory ``MLModel`` (fp16/fp32 compute precision, image in, P(fake) out)."""
    ct = import_ct()
    size = model_info(model).img_size
    wrapped = ImageModel(model).eval()
    ex = torch.rand(batch, 3, size, size)
    try:
        with quiet():
            ep = torch.export.export(wrapped, (ex,)).run_decompositions({})
            return ct.convert(
                ep,
                inputs=[ct.ImageType(name=INPUT, shape=(batch, 3, size, size), scale=1 / 255.0, bias=[0.0, 0.0, 0.0],
                                     color_layout=ct.colorlayout.RGB)],
                outputs=[ct.TensorType(name=OUTPUT, dtype=np.float32), ct.TensorType(name=LOGIT, dtype=np.float32)],
                convert_to="mlprogram",
                compute_precision=ct.precision.FLOAT32 if precision == "fp32" else ct.precision.FLOAT16,
                minimum_deployment_target=deployment_target(ct, target),
            )
    except MsvitError:
        raise
    except Exception as e:  # the converter raises a zoo of types; keep the first line
        raise ExportError(f"Core ML conversion failed: {str(e).splitlines()[0][:300]}") from None


def compress_weights(ml, mode: str = "linear"):
    """int8 per-channel symmetric weights (``linear``) or 6-bit k-means LUT (``palettize``)."""
    import coremltools.optimize as cto

    if mode not in WEIGHT_MODES:
        raise ExportError(f"coreml_weights must be one of {WEIGHT_MODES}, got {mode!r}")
    with quiet():
        if mode == "palettize":
            cfg = cto.coreml.OptimizationConfig(global_config=cto.coreml.OpPalettizerConfig(
                mode="kmeans", nbits=6, weight_threshold=2048))
            return cto.coreml.palettize_weights(ml, config=cfg), "palettized 6-bit k-means LUT (weight_threshold 2048)"
        cfg = cto.coreml.OptimizationConfig(global_config=cto.coreml.OpLinearQuantizerConfig(
            mode="linear_symmetric", dtype="int8", granularity="per_channel", weight_threshold=2048))
        return (cto.coreml.linear_quantize_weights(ml, config=cfg),
                "int8 linear symmetric per-channel weights, fp16 activations (weight_threshold 2048)")


def verify_structure(info: dict[str, Any], metadata: dict[str, str], precision: str, size: int,
                     weights: str = "linear") -> None:
    """Raise :class:`ValidationError` when the package is not what we meant to build."""
    problems = []
    if info.get("inputs") != {INPUT: "imageType"}:
        problems.append(f"inputs {info.get('inputs')} != {{'{INPUT}': 'imageType'}}")
    img = info.get("image") or {}
    if (img.get("width"), img.get("height"), img.get("color_space")) != (size, size, "RGB"):
        problems.append(f"image input {img} is not {size}x{size} RGB")
    if OUTPUT not in info.get("outputs", {}):
        problems.append(f"output {OUTPUT!r} missing (outputs: {list(info.get('outputs', {}))})")
    md = info.get("user_defined_metadata", {})
    missing = [k for k in metadata if md.get(k) != str(metadata[k])]
    if missing:
        problems.append(f"user_defined_metadata missing/different: {', '.join(sorted(missing)[:8])}")
    if info.get("program") != "mlProgram":
        problems.append(f"not an ML Program ({info.get('program')})")
    else:
        dt, cx = info.get("const_tensor_dtypes", {}), info.get("constexpr_ops", {})
        if info.get("n_ops", 0) < 50:
            problems.append(f"only {info.get('n_ops')} ops: graph looks truncated")
        if precision == "fp32" and (dt.get("FLOAT16") or not dt.get("FLOAT32")):
            problems.append(f"fp32 package holds weights {dt}")
        if precision in ("fp16", "int8-weights", "int8") and dt.get("FLOAT32"):
            problems.append(f"{precision} package still holds {dt['FLOAT32']} FLOAT32 weight tensors")
        if precision in ("int8-weights", "int8"):
            want = CONSTEXPR_LUT if weights == "palettize" else CONSTEXPR_LINEAR
            if not any(cx.get(k) for k in want):
                problems.append(f"no compressed weights ({' / '.join(want)}) in {cx or 'the program'}")
    if problems:
        raise ValidationError("Core ML package structure check failed: " + "; ".join(problems))


def interface_metadata(size: int, batch: int = 1) -> dict[str, str]:
    """Core ML's interface differs from the tensor targets': say so in the embedded metadata."""
    return {
        "input_name": INPUT,
        "input_shape": f"{batch}x3x{size}x{size}",
        "input_format": f"RGB image {size}x{size} (Core ML ImageType); /255 and (x-mean)/std inside the model",
        "output": f"{OUTPUT} (1,1) = P(fake) = sigmoid(logit); also '{LOGIT}' (1,1)",
    }


def check_shape(ctx: ExportContext) -> None:
    if ctx.dynamic_batch or ctx.batch != 1:
        raise ExportError("Core ML export takes one image per prediction (ImageType input): --dynamic-batch and "
                          "--batch > 1 are not supported for --target coreml; batch on device with "
                          "MLModel.predictions(from:) / a list of inputs")


def save(ml, path: Path, metadata: dict[str, str]) -> Path:
    """Annotate with the metadata and write the package."""
    annotate(ml, metadata, ArtifactMeta.from_flat(metadata).image_size)
    with quiet():
        ml.save(str(path))
    return path


def finish(ctx: ExportContext, path: Path, meta: dict[str, str], weights: str = "linear",
           extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Verify the written package by its spec; the facts for the manifest."""
    info = inspect(path)
    verify_structure(info, meta, ctx.precision, ctx.img_size, weights)
    structure = {k: info[k] for k in ("inputs", "outputs", "image", "spec_version", "opset", "n_ops",
                                      "constexpr_ops", "const_tensor_dtypes") if k in info}
    structure["user_defined_metadata_keys"] = len(info["user_defined_metadata"])
    return {"structure": structure, "minimum_deployment_target": meta.get("coreml_deployment_target"), **(extra or {})}


def export(ctx: ExportContext) -> TargetOutput:
    check_shape(ctx)
    path = ctx.work_dir / f"{ctx.stem}.mlpackage"
    ctx.metadata.update(interface_metadata(ctx.img_size))  # the manifest describes this package's interface
    atol = 5e-2 if ctx.precision != "fp32" else 1e-3  # where it runs (macOS): ImageType rounding + fp16
    if ctx.precision == "int8":
        target = str(ctx.options.minimum_deployment_target or "iOS17")
        ct = import_ct()
        if deployment_target(ct, target) < ct.target.iOS17:
            target = "iOS17"  # activation quantization (int8 activations) needs iOS17 / macOS14
        meta = {**ctx.metadata, "coreml_deployment_target": target}
        adapter = CoreMLInt8(ctx.int8_job(meta), convert=lambda m: convert(m, "fp16", target),
                             compress=lambda ml: compress_weights(ml, "linear"), save=save)
        res = run_int8(adapter, path)
        return TargetOutput.int8(path, res, finish(ctx, path, meta))
    target = ctx.options.minimum_deployment_target or DEFAULT_DEPLOYMENT_TARGET
    meta = {**ctx.metadata, "coreml_deployment_target": str(target)}
    ml = convert(ctx.model, "fp32" if ctx.precision == "fp32" else "fp16", target)
    extra: dict[str, Any] = {}
    weights = "linear"
    if ctx.precision == "int8-weights":
        weights = ctx.options.coreml_weights
        ml, how = compress_weights(ml, weights)
        meta["weight_compression"] = how
        extra["weight_compression"] = how
    save(ml, path, meta)
    return TargetOutput(path, [path], extra=finish(ctx, path, meta, weights, extra), atol=atol,
                        note="" if platform.system() == "Darwin" else "structure verified (Core ML runs only on macOS/iOS)")
