"""ONNX Runtime Mobile: .ort + reduced-operator config from onnxruntime's converter, parity of
the .ort against its source ONNX (and PyTorch), the mobile-usability report as a dict,
metadata carried over, truncated files. One ONNX export for the module."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from msvit.errors import ArtifactError, ExportError  # noqa: E402

META = {"model": "ms_eff_vit_b0", "threshold": "0.5", "weights_sha256": "abc"}


@pytest.fixture(scope="module")
def onnx_path(demo_model, tmp_path_factory) -> Path:
    """A plain FP32 ONNX of the demo model (torch.onnx dynamo export) with metadata_props."""
    import io
    import warnings
    from contextlib import redirect_stdout

    import onnx
    import torch

    path = tmp_path_factory.mktemp("ort-src") / "b0.onnx"
    with warnings.catch_warnings(), redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        prog = torch.onnx.export(demo_model.eval(), (torch.zeros(1, 3, 224, 224),), None, input_names=["image"],
                                 output_names=["logit"], opset_version=18, dynamo=True, verbose=False)
    proto = prog.model_proto
    for k, v in META.items():
        e = proto.metadata_props.add()
        e.key, e.value = k, v
    onnx.save(proto, str(path))
    return path


@pytest.fixture(scope="module")
def converted(onnx_path, eval_set, tmp_path_factory):
    from msvit.export.ort import to_ort_format

    out = tmp_path_factory.mktemp("ort-out")
    return out, to_ort_format(onnx_path, out, verify_x=eval_set.x[:8])


def test_ort_and_config_written(converted):
    from msvit.runtime.ort_format import ORT_IDENTIFIER

    out, info = converted
    ort_path, cfg = Path(info["ort_path"]), Path(info["config_path"])
    assert ort_path.parent == out and ort_path.suffix == ".ort" and ort_path.read_bytes()[4:8] == ORT_IDENTIFIER
    assert cfg.name == "b0.required_operators.config" and cfg.read_text().strip()
    assert sorted(p.name for p in out.iterdir()) == sorted([ort_path.name, cfg.name])  # no temp leftovers
    ops = info["operators"]
    assert "Conv" in {op for opset in ops["ai.onnx"].values() for op in opset}
    assert info["operator_count"] >= 5
    assert info["target_platform"] == "arm" and info["optimization_style"] == "Fixed"
    assert info["size_bytes"] == ort_path.stat().st_size


def test_ort_parity(converted, demo_model, eval_set):
    import torch

    from msvit.runtime.ort_format import ort_session

    _, info = converted
    par = info["parity"]
    assert par["n"] == 8 and par["max_abs"] <= 1e-5  # .ort vs its ONNX, both in onnxruntime
    s = ort_session(info["ort_path"], threads=2)
    x = eval_set.x[:4]
    got = np.concatenate([s.run(["logit"], {"image": x[i:i + 1]})[0] for i in range(len(x))])
    with torch.no_grad():
        ref = demo_model(torch.from_numpy(x)).numpy()
    assert np.abs(got - ref).max() <= 1e-4  # and vs PyTorch


def test_mobile_usability_dict(converted):
    _, info = converted
    u = info["mobile_usability"]
    for ep in ("nnapi", "coreml_neuralnetwork", "coreml_mlprogram"):
        d = u[ep]
        assert d["nodes"] > 100 and 0 <= d["supported_nodes"] <= d["nodes"]
        assert 0.0 <= d["supported_pct"] <= 100.0
        assert d["partitions"] == len(d["partition_sizes"]) and sum(d["partition_sizes"]) == d["supported_nodes"]
        assert d["suitability"] in ("YES", "MAYBE", "NO")
    assert isinstance(u["try_nnapi_or_coreml"], bool) and u["recommendation"]
    assert u["dynamic_inputs"] == []  # static batch-1 export
    assert any("NNAPI" in line for line in u["log"]) and any("MLProgram" in line for line in u["log"])


def test_metadata_carried_into_ort(converted):
    from msvit.runtime.ort_format import read_metadata

    assert read_metadata(converted[1]["ort_path"]) == META


def test_truncated_ort(converted, tmp_path, refuses_truncations):
    from msvit.runtime.ort_format import check_ort_file, ort_session

    data = Path(converted[1]["ort_path"]).read_bytes()
    refuses_truncations(data, ".ort", (0, 7, 100, len(data) // 2, len(data) - 4096), check_ort_file, ort_session)
    onnx_named_ort = tmp_path / "renamed.ort"
    onnx_named_ort.write_bytes(Path(converted[1]["source_onnx"]).read_bytes())
    with pytest.raises(ArtifactError, match="ORTM"):
        check_ort_file(onnx_named_ort)


def test_bad_input(tmp_path):
    from msvit.export.ort import to_ort_format

    with pytest.raises(ExportError, match="expected an existing .onnx"):
        to_ort_format(tmp_path / "missing.onnx", tmp_path)
