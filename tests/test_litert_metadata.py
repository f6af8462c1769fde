"""Standard TFLite metadata on image-input LiteRT artifacts: MediaPipe Tasks' ImageClassifier
loads the exported file as it is and gives msvit's P(fake) on the letterboxed crops; msvit's own
metadata and byte reproducibility are kept."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("litert_torch")
pytest.importorskip("ai_edge_litert")

P_BOUND = 0.05  # msvit's accuracy-guard bound on |ΔP| (Gate.max_dprob)


def _schema():
    return pytest.importorskip("mediapipe.tasks.metadata.metadata_schema_py_generated",
                               reason="pip install --no-deps mediapipe==1.2.3 (scripts/test.sh does)")


def _standard(path_or_bytes):
    from ai_edge_litert import schema_py_generated as schema

    data = Path(path_or_bytes).read_bytes() if not isinstance(path_or_bytes, bytes) else path_or_bytes
    m = schema.Model.GetRootAsModel(data, 0)
    for i in range(m.MetadataLength()):
        if m.Metadata(i).Name() == b"TFLITE_METADATA":
            return m.Buffers(m.Metadata(i).Buffer()).DataAsNumpy().tobytes()
    return None


def test_metadata_buffer_reads_back_with_the_published_schema():
    ms = _schema()
    from msvit.export.litert_metadata import metadata_buffer

    buf = metadata_buffer(224, ["logit", "prob"], "msvit b0", "desc", "0.1.0")
    assert ms.ModelMetadata.ModelMetadataBufferHasIdentifier(buf, 0)
    md = ms.ModelMetadata.GetRootAsModelMetadata(buf, 0)
    assert md.Name() == b"msvit b0" and md.MinParserVersion() == b"1.0.0" and md.SubgraphMetadataLength() == 1
    sg = md.SubgraphMetadata(0)
    inp = sg.InputTensorMetadata(0)
    assert inp.Content().ContentPropertiesType() == ms.ContentProperties.ImageProperties
    props = ms.ImageProperties()
    props.Init(inp.Content().ContentProperties().Bytes, inp.Content().ContentProperties().Pos)
    assert props.ColorSpace() == ms.ColorSpaceType.RGB
    assert (props.DefaultSize().Width(), props.DefaultSize().Height()) == (224, 224)
    unit = inp.ProcessUnits(0)
    assert unit.OptionsType() == ms.ProcessUnitOptions.NormalizationOptions
    norm = ms.NormalizationOptions()
    norm.Init(unit.Options().Bytes, unit.Options().Pos)
    assert norm.MeanAsNumpy().tolist() == [0.0] and norm.StdAsNumpy().tolist() == [1.0]
    outs = [sg.OutputTensorMetadata(i) for i in range(sg.OutputTensorMetadataLength())]
    assert [o.Name() for o in outs] == [b"logit", b"prob"]
    prob = outs[1]
    assert prob.AssociatedFiles(0).Name() == b"labels.txt"
    assert prob.AssociatedFiles(0).Type() == ms.AssociatedFileType.TENSOR_AXIS_LABELS
    assert prob.Stats().MinAsNumpy().tolist() == [0.0] and prob.Stats().MaxAsNumpy().tolist() == [1.0]
    assert outs[0].AssociatedFilesLength() == 0


@pytest.fixture(scope="module")
def converted(demo_weights, faces_dir, tmp_path_factory) -> Path:
    """msvit-export --target litert --input image (fp32), SOURCE_DATE_EPOCH=0."""
    out = tmp_path_factory.mktemp("litert-std")
    env = {**os.environ, "SOURCE_DATE_EPOCH": "0"}
    r = subprocess.run([sys.executable, "-m", "msvit.export.cli", "--target", "litert", "--input", "image",
                        "--weights", str(demo_weights), "--out", str(out), "--verify-data", str(faces_dir / "eval")],
                       env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return out / "ms_eff_vit_b0_fp32_img.tflite"


def test_exported_artifact_keeps_msvit_metadata_and_manifest(converted):
    import json
    import hashlib
    import zipfile

    from msvit.runtime.litert import LiteRTSession, metadata_names, read_metadata

    names = metadata_names(converted)
    assert names.count("msvit") == 1 and names.count("TFLITE_METADATA") == 1
    md = read_metadata(converted)
    assert md["input_kind"] == "image" and md["precision"] == "fp32"
    with zipfile.ZipFile(converted) as z:  # the label file rides in the appended zip
        assert z.read("labels.txt") == b"fake\n"
    man = json.loads(Path(str(converted) + ".json").read_text())
    sha = hashlib.sha256(converted.read_bytes()).hexdigest()
    assert sha in json.dumps(man)  # the manifest vouches for the file with its standard metadata
    s = LiteRTSession(converted)
    assert s.input_spec.kind == "image"


def test_adding_metadata_is_reproducible_and_idempotent(converted):
    from msvit.export.litert_metadata import add_standard_metadata
    from msvit.runtime.litert import read_metadata

    data = converted.read_bytes()
    again = add_standard_metadata(data, read_metadata(converted))
    assert again == data  # SOURCE_DATE_EPOCH=0: same bytes; the entry replaced, not added twice
    assert _standard(again) == _standard(data)


def test_tensor_input_models_are_refused(demo_model, tmp_path):
    from msvit.errors import ExportError
    from msvit.export.litert import convert_litert
    from msvit.export.litert_metadata import add_standard_metadata

    path = tmp_path / "t.tflite"
    convert_litert(demo_model, path, "fp32", {"model": "ms_eff_vit_b0"})
    with pytest.raises(ExportError, match="image-input"):
        add_standard_metadata(path.read_bytes(), {})


def test_mediapipe_image_classifier_gives_msvit_p(converted, faces_dir, demo_model):
    mp = pytest.importorskip("mediapipe", reason="pip install --no-deps mediapipe==1.2.3 (scripts/test.sh does)")
    from mediapipe.tasks.python import BaseOptions, vision

    from msvit.data import discover
    from msvit.preprocess import letterbox, load_image
    from msvit.runtime.litert import LiteRTSession

    files = discover(faces_dir / "eval")[0][:24]
    u8 = np.stack([letterbox(load_image(f), 224) for f in files])
    s = LiteRTSession(converted)
    ref = np.concatenate([s.run_image(u8[i])["prob"] for i in range(len(u8))]).reshape(-1)
    clf = vision.ImageClassifier.create_from_options(
        vision.ImageClassifierOptions(base_options=BaseOptions(model_asset_path=str(converted))))
    try:
        got = []
        for x in u8:
            r = clf.classify(mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(x)))
            head = next(h for h in r.classifications if h.head_name == "prob")
            assert [c.category_name for c in head.categories] == ["fake"]
            got.append(head.categories[0].score)
    finally:
        clf.close()
    import torch

    from msvit.preprocess import normalize

    with torch.no_grad():
        torch_p = torch.sigmoid(demo_model(torch.from_numpy(normalize(u8)))).numpy().reshape(-1)
    dp = np.abs(np.asarray(got) - ref)
    dt = np.abs(np.asarray(got) - torch_p)
    print(f"MediaPipe ImageClassifier on {len(u8)} letterboxed crops: max |ΔP| {dp.max():.2e} vs msvit's LiteRT "
          f"session, {dt.max():.2e} vs PyTorch")
    assert dt.max() <= P_BOUND
    assert dp.max() <= P_BOUND
    assert dp.max() <= 1e-5  # the same interpreter on the same bytes: equal in practice
