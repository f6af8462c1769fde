"""The input/output card: a short Markdown file beside each artifact (``<artifact>.md``),
generated from the metadata embedded in it, that tells an app developer exactly what to feed
it and what comes back, with a usage snippet for its runtime."""
from __future__ import annotations

from typing import Any

from ..runtime.meta import ArtifactMeta
from ..runtime.precision import OV_HINTS, exec_precision_of as exec_of

EXEC_NOTES = {
    "fp32": "every float op in fp32 (OpenVINO: `INFERENCE_PRECISION_HINT` f32, as its bf16 default on "
            "AVX512-BF16/AMX CPUs would change the numerics; Core ML: CPU only, the GPU and Neural Engine "
            "compute in fp16; onnxruntime, ExecuTorch and LiteRT on the CPU run the graph's own types).",
    "fp16": "float ops in fp16.",
    "bf16": "float ops in bf16 (OpenVINO `INFERENCE_PRECISION_HINT` bf16: AVX512-BF16/AMX CPUs).",
}

SNIPPETS = {
    "onnx": ("Python (onnxruntime)", """import onnxruntime as ort
s = ort.InferenceSession("{file}")  # CPU: the graph's own {exec} types, no precision option to set
out = s.run(None, {{"{name}": x}})  # x: {dtype} {shape}
""", "Android: `OrtSession.run(mapOf(\"{name}\" to OnnxTensor.createTensor(env, buffer, shape)))`; "
     "iOS: `ORTSession.run(withInputs: [\"{name}\": tensor], outputNames: [...])`"),
    "ort": ("Python (onnxruntime)", """import onnxruntime as ort
s = ort.InferenceSession("{file}")  # CPU: the graph's own {exec} types, no precision option to set
out = s.run(None, {{"{name}": x}})  # x: {dtype} {shape}
""", "ONNX Runtime Mobile (Android AAR / iOS pod, or a reduced build from the .config beside it): "
     "`OrtSession.run(...)` as for ONNX"),
    "openvino": ("Python (OpenVINO)", """import openvino as ov
m = ov.Core().compile_model("{file}", "CPU", {{"INFERENCE_PRECISION_HINT": "{ov_hint}"}})
out = m({{0: x}})  # x: {dtype} {shape}
""", "C++: `ov::Core().compile_model(\"{file}\", \"CPU\", ov::hint::inference_precision(ov::element::{ov_hint}))"
     ".create_infer_request()`"),
    "executorch": ("Python (executorch.runtime)", """from executorch.runtime import Runtime
m = Runtime.get().load_program("{file}").load_method("forward")  # XNNPACK: the program's {exec} types
out = m.execute([torch.from_numpy(x)])  # x: {dtype} {shape}
""", "Android: `Module.load(path).forward(EValue.from(tensor))`; iOS: `Module(filePath:).forward(...)`"),
    "torchscript": ("Python (lite interpreter)", """from torch.jit.mobile import _load_for_lite_interpreter
m = _load_for_lite_interpreter("{file}")
out = m(torch.from_numpy(x))  # x: {dtype} {shape}
""", "Android: `LiteModuleLoader.load(path).forward(IValue.from(tensor))` (deprecated: prefer ExecuTorch)"),
    "litert": ("Python (ai-edge-litert)", """from ai_edge_litert.interpreter import Interpreter
it = Interpreter("{file}"); run = it.get_signature_runner("serving_default")
out = run({name}=x)  # x: {dtype} {shape}
""", "Android: `Interpreter(file, Interpreter.Options())` (CPU/XNNPACK: {exec}; a GPU delegate needs "
     "`GpuDelegateFactory.Options().setPrecisionLossAllowed({gpu_loss})`) + `runSignature(mapOf(\"{name}\" to x), "
     "outputs)`; iOS: `Interpreter(modelPath:)` + `copy(_:toInputAt:)` / `invoke()`"),
    "trt": ("Python (msvit)", """from msvit.runtime import load
out = load("{file}").run(x)  # x: {dtype} {shape}
""", "C++: `IRuntime::deserializeCudaEngine` after skipping msvit's JSON header (msvit's docs: Export and targets, TensorRT)"),
    "coreml": ("Swift (Core ML)", """let url = Bundle.main.url(forResource: "{file}", withExtension: nil)!  // compiled to .mlmodelc by Xcode
let config = MLModelConfiguration(); config.computeUnits = {compute_units}  // {exec}: what msvit verified
let model = try MLModel(contentsOf: url, configuration: config)
let out = try model.prediction(from: input)  // input "{name}": CVPixelBuffer {shape}
""", "Vision: `VNCoreMLRequest(model: VNCoreMLModel(for: model))`"),
}


def _get(meta: dict[str, str], key: str, default: str = "-") -> str:
    v = meta.get(key)
    return default if v in (None, "") else str(v)


def card_markdown(file: str, meta: dict[str, str], result: dict[str, Any] | None = None) -> str:
    """The card of one artifact: every fact comes from its metadata (and the export result)."""
    image = meta.get("input_kind") == "image" or meta.get("target") == "coreml"
    s = ArtifactMeta.from_flat(meta).image_size
    dtype = "uint8" if image else "float32"
    name = _get(meta, "input_name", "image")
    rng = "0..255 RGB pixels" if image else "(pixel / 255 - mean) / std, RGB"
    lines = [
        f"# {file}", "",
        f"{_get(meta, 'model')} ({_get(meta, 'family')}), {_get(meta, 'target')} {_get(meta, 'precision')}; "
        f"exported by msvit {_get(meta, 'msvit_version')} at {_get(meta, 'exported_at')} from weights "
        f"`{_get(meta, 'weights_file')}` (sha256 {_get(meta, 'weights_sha256')[:16]}…).", "",
        "## Input", "",
        "| name | dtype | shape | layout | values |", "|---|---|---|---|---|",
        f"| `{name}` | {dtype} | {_get(meta, 'input_shape')} | {'NHWC' if image and meta.get('target') != 'coreml' else 'NCHW'}"
        f" | {rng} |", "",
        f"- Format: {_get(meta, 'input_format')}.",
        f"- Letterbox (the app does this): resize the face crop so its longest side is {s} px (bilinear, "
        f"`round(side * {s} / longest)`), then pad it centred on a {s}×{s} black canvas "
        f"(top/left padding = floor of half the remainder). Crop the face first: detector box + 20% of its "
        "width/height on each side, clipped to the frame.",
        f"- mean {_get(meta, 'mean')}, std {_get(meta, 'std')} "
        + ("(applied inside the graph)." if image else "(apply them in the app)."), "",
        "## Output", "",
        f"- {_get(meta, 'output')}.",
        f"- Labels {_get(meta, 'labels')}; verdict fake when P(fake) >= threshold {_get(meta, 'threshold')}.",
        *_explain_lines(meta), "",
        "## Precision", "",
        f"- {_get(meta, 'precision')}" + (f"; {meta['quant_format']}" if meta.get("quant_format") else "")
        + (f"; calibrated on {meta['calib_size']} images ({meta.get('calib_method', '?')}, sha256 "
           f"{_get(meta, 'calib_sha256')[:16]}…)" if meta.get("calib_size") else "") + ".",
    ]
    ex = exec_of(meta)
    lines.append(f"- Execution precision: **{ex}** (`exec_precision`): {EXEC_NOTES.get(ex, '')} The snippets "
                 "below set it; other settings run numerics msvit did not verify.")
    if result and result.get("parity"):
        p = result["parity"]
        lines.append(f"- Verified against PyTorch FP32: max |Δlogit| {p['max_abs_dlogit']:.2e}, max |ΔP| "
                     f"{p['max_abs_dprob']:.2e}, agreement {p['agreement']:.3f} on {p['data']}.")
    title, code, other = SNIPPETS.get(meta.get("target", ""), SNIPPETS["onnx"])
    shape = "(" + ", ".join(_get(meta, "input_shape").split("x")) + ")"
    fill = {"exec": ex, "ov_hint": OV_HINTS.get(ex, "f32"), "gpu_loss": "true" if ex != "fp32" else "false",
            "compute_units": ".all" if ex == "fp16" else ".cpuOnly"}
    lines += ["", f"## Use ({title})", "", "```python" if "Swift" not in title else "```swift",
              code.format(file=file, name=name, dtype=dtype, shape=shape, **fill).rstrip(), "```", "",
              f"Other platforms: {other.format(file=file, name=name, **fill)}.", "",
              (f"P(fake) = sigmoid(logit / {meta['temperature']})" if meta.get("temperature", "1.0") not in ("1", "1.0")
               else "P(fake) = sigmoid(logit)") + (" (also returned as `prob`)." if image else "."), ""]
    return "\n".join(lines)


def _explain_lines(meta: dict[str, str]) -> list[str]:
    """``--explain-outputs``: what the extra token outputs are (for gradient-free maps on the device)."""
    import json

    if not meta.get("explain_outputs"):
        return []
    info = json.loads(meta["explain_outputs"])
    outs = ", ".join(f"`{n}` {i['branch']} branch, `{i['layer']}` tokens (N, 1 + {i['grid'][0]}×{i['grid'][1]}, C)"
                     for n, i in sorted(info.items()))
    return [f"- Explanation outputs (order {_get(meta, 'output_names')}): {outs}; drop the cls token, reshape "
            "to the grid, take the first principal component (EigenCAM): `msvit-explain --artifact` does it."]


def card_facts(meta: dict[str, str]) -> dict[str, str]:
    """The metadata keys a card states (tests compare them with the artifact's own metadata)."""
    keys = ("model", "target", "precision", "exec_precision", "input_name", "input_shape", "input_format", "mean", "std", "output",
            "threshold", "labels", "weights_sha256")
    return {k: meta[k] for k in keys if k in meta}


__all__ = ["card_facts", "card_markdown"]
