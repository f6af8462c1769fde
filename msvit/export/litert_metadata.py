"""Standard TFLite metadata (the ``TFLITE_METADATA`` entry, schema ``metadata_schema.fbs``,
identifier ``M001``) for image-input LiteRT artifacts, so MediaPipe Tasks' ``ImageClassifier``
(Android, iOS, web, Python) and Android Studio's model binding load them without glue code.

What is written (``--input image`` artifacts: uint8 RGB NHWC in, ``prob`` and ``logit`` out):

- input ``image``: ImageProperties (RGB, 224x224), NormalizationOptions mean 0 / std 1 (the
  graph itself casts and applies ImageNet's mean/std: pixels go in as they are), stats 0..255;
- output ``prob``: a score in [0, 1] (a sigmoid, no calibration) with the label file
  ``labels.txt`` = ``fake`` (TENSOR_AXIS_LABELS): MediaPipe reports it as category ``fake``
  with score P(fake); output ``logit``: a feature, no label;
- ``labels.txt`` packed as a zip appended to the flatbuffer, as the TFLite metadata populator
  does (readers find it through the zip's end-of-central-directory record); entry timestamps
  come from SOURCE_DATE_EPOCH (default 1980-01-01), so the bytes are reproducible.

The flatbuffer is built with ``flatbuffers.Builder`` from the published schema's field slots
(no mediapipe / tflite-support dependency at export time). Float-tensor (NCHW) artifacts get
none: MediaPipe's image tasks take NHWC images only.
"""
from __future__ import annotations

import io
import os
import time
import zipfile
from typing import Any

from ..errors import ExportError

STANDARD_METADATA_NAME = "TFLITE_METADATA"
IDENTIFIER = b"M001"
MIN_PARSER_VERSION = "1.0.0"
LABELS_FILE = "labels.txt"
LABELS = ("fake",)
# union / enum values of metadata_schema.fbs
_FEATURE_PROPERTIES, _IMAGE_PROPERTIES = 1, 2
_NORMALIZATION_OPTIONS = 1
_RGB = 1
_TENSOR_AXIS_LABELS = 2


class _Fb:
    """A thin helper over ``flatbuffers.Builder`` for tables given as {slot: value}."""

    def __init__(self) -> None:
        import flatbuffers

        self.b = flatbuffers.Builder(1024)

    def s(self, text: str) -> int:
        return self.b.CreateString(text)

    def offsets(self, offs: list[int]) -> int:
        self.b.StartVector(4, len(offs), 4)
        for o in reversed(offs):
            self.b.PrependUOffsetTRelative(o)
        return self.b.EndVector()

    def floats(self, vals: list[float]) -> int:
        self.b.StartVector(4, len(vals), 4)
        for v in reversed(vals):
            self.b.PrependFloat32(float(v))
        return self.b.EndVector()

    def table(self, n: int, offsets: dict[int, int] | None = None, u8: dict[int, int] | None = None,
              u32: dict[int, int] | None = None) -> int:
        b = self.b
        b.StartObject(n)
        for slot, v in (u32 or {}).items():
            b.PrependUint32Slot(slot, v, 0)
        for slot, v in (offsets or {}).items():
            b.PrependUOffsetTRelativeSlot(slot, v, 0)
        for slot, v in (u8 or {}).items():
            b.PrependUint8Slot(slot, v, 0)
        return b.EndObject()


def metadata_buffer(size: int, output_names: list[str], model_name: str, description: str, version: str,
                    author: str = "msvit", license_: str = "") -> bytes:
    """The ``M001`` metadata flatbuffer for an image classifier with ``output_names`` in the
    subgraph's output order (``prob`` gets the label file, every other output is a feature)."""
    fb = _Fb()
    # input tensor
    in_name, in_desc = fb.s("image"), fb.s(f"Face crop letterboxed to {size}x{size} (longest side to {size}, "
                                          "centred on black), uint8 RGB; the model applies ImageNet mean/std itself")
    img_size = fb.table(2, u32={0: size, 1: size})
    img_props = fb.table(2, offsets={1: img_size}, u8={0: _RGB})
    in_content = fb.table(3, offsets={1: img_props}, u8={0: _IMAGE_PROPERTIES})
    norm = fb.table(2, offsets={0: fb.floats([0.0]), 1: fb.floats([1.0])})
    in_units = fb.offsets([fb.table(2, offsets={1: norm}, u8={0: _NORMALIZATION_OPTIONS})])
    in_stats = fb.table(2, offsets={0: fb.floats([255.0]), 1: fb.floats([0.0])})
    in_meta = fb.table(7, offsets={0: in_name, 1: in_desc, 3: in_content, 4: in_units, 5: in_stats})
    # output tensors
    outs = []
    for name in output_names:
        feat = fb.table(0)
        content = fb.table(3, offsets={1: feat}, u8={0: _FEATURE_PROPERTIES})
        if name == "prob":
            lab = fb.table(5, offsets={0: fb.s(LABELS_FILE), 1: fb.s("Labels for the score: P(fake)")},
                           u8={2: _TENSOR_AXIS_LABELS})
            files = fb.offsets([lab])
            stats = fb.table(2, offsets={0: fb.floats([1.0]), 1: fb.floats([0.0])})
            outs.append(fb.table(7, offsets={0: fb.s("prob"), 1: fb.s("P(fake) = sigmoid(logit), in [0, 1]"),
                                             3: content, 5: stats, 6: files}))
        else:
            outs.append(fb.table(7, offsets={0: fb.s(name), 1: fb.s("logit: P(fake) = sigmoid(logit)"
                                                                    if name == "logit" else name), 3: content}))
    sub = fb.table(10, offsets={0: fb.s("image_classifier"), 2: fb.offsets([in_meta]), 3: fb.offsets(outs)})
    fields = {0: fb.s(model_name), 1: fb.s(description), 2: fb.s(version), 3: fb.offsets([sub]),
              4: fb.s(author), 7: fb.s(MIN_PARSER_VERSION)}
    if license_:
        fields[5] = fb.s(license_)
    root = fb.table(8, offsets=fields)
    fb.b.Finish(root, file_identifier=IDENTIFIER)
    return bytes(fb.b.Output())


def _zip_time() -> tuple[int, int, int, int, int, int]:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    t = max(int(epoch), 315532800) if epoch and epoch.isdigit() else 315532800  # zip cannot go before 1980
    return time.gmtime(t)[:6]


def append_associated_files(model: bytes, files: dict[str, bytes]) -> bytes:
    """``model`` + a zip of ``files`` (stored, sorted names, fixed timestamps)."""
    buf = io.BytesIO()
    buf.write(model)
    with zipfile.ZipFile(buf, "a", compression=zipfile.ZIP_STORED) as z:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=_zip_time())
            info.external_attr = 0o644 << 16
            z.writestr(info, files[name])
    return buf.getvalue()


def _output_names(model: Any, schema: Any) -> list[str]:
    sg = model.subgraphs[0]
    names = []
    for t in sg.outputs:
        n = sg.tensors[int(t)].name
        n = n.decode() if isinstance(n, bytes) else str(n)
        names.append("prob" if "prob" in n else "logit" if "logit" in n else n)
    return names


def add_standard_metadata(data: bytes, meta: dict[str, str]) -> bytes:
    """``data`` (a LiteRT flatbuffer with msvit's own ``msvit`` entry, image input) with the
    standard ``TFLITE_METADATA`` entry (replacing an earlier one) and ``labels.txt`` appended.
    ``meta``: msvit's metadata (model, version, description of the artifact)."""
    import numpy as np
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    from ..runtime.litert import check_tflite_bytes

    check_tflite_bytes(data)
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(data))
    sg = model.subgraphs[0]
    inp = sg.tensors[int(sg.inputs[0])]
    shape = [int(d) for d in inp.shape]
    if len(shape) != 4 or shape[3] != 3 or shape[1] != shape[2]:
        raise ExportError(f"standard TFLite metadata is for image-input models (N, S, S, 3), got input {shape}")
    size = shape[1]
    outputs = _output_names(model, schema)
    desc = (f"MS-Eff-ViT deepfake detector ({meta.get('model', 'ms_eff_vit')}, {meta.get('precision', '?')}): "
            f"a face crop -> P(fake). Verdict fake when P >= {meta.get('threshold', '0.5')}. "
            "Face detection, the 20% margin and the letterbox happen before this model (see the msvit card).")
    md = metadata_buffer(size, outputs, f"msvit {meta.get('model', 'ms_eff_vit')}", desc,
                         str(meta.get("msvit_version", meta.get("version", ""))), license_=str(meta.get("license", "")))
    for b in model.buffers:
        if b.data is not None and not isinstance(b.data, np.ndarray):
            b.data = np.frombuffer(bytes(b.data), np.uint8)
    data_md = np.frombuffer(md, np.uint8).copy()
    old = [m for m in (model.metadata or [])
           if (m.name.decode() if isinstance(m.name, bytes) else m.name) == STANDARD_METADATA_NAME]
    if old:  # replace in place: adding again gives the same bytes
        model.buffers[old[0].buffer].data = data_md
    else:
        buf = schema.BufferT()
        buf.data = data_md
        model.buffers.append(buf)
        entry = schema.MetadataT()
        entry.name = STANDARD_METADATA_NAME
        entry.buffer = len(model.buffers) - 1
        model.metadata = list(model.metadata or []) + [entry]
    out = bytes(flatbuffer_utils.convert_object_to_bytearray(model))
    return append_associated_files(out, {LABELS_FILE: ("\n".join(LABELS) + "\n").encode()})


__all__ = ["IDENTIFIER", "LABELS", "LABELS_FILE", "STANDARD_METADATA_NAME", "add_standard_metadata",
           "append_associated_files", "metadata_buffer"]
