"""INT8 coverage (msvit.runtime.coverage): MACs and layers counted off toy graphs with known
answers (ONNX QDQ, depthwise, LiteRT, OpenVINO+NNCF, PT2E), and the facts a real INT8 export
records in its manifest and embedded metadata."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from msvit.runtime.coverage import (Coverage, onnx_coverage, openvino_coverage, program_coverage,
                                    tflite_coverage)

CONV_MACS = 4 * 8 * 8 * 3 * 3 * 3  # 1x3x8x8 -> 4 channels, 3x3 kernel, pad 1: 6912
MM_MACS = 16 * 10  # 1x16 @ 16x10


def _toy_onnx(qdq_conv: bool, batch: int = 1):
    """x (B,3,8,8) -> Conv 4x3x3x3 pad 1 -> MaxPool 4 -> (B,16) -> MatMul 16x10 (float).
    ``qdq_conv``: the conv's activation and weight come from DequantizeLinear (int8 weight)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = rng.normal(size=(4, 3, 3, 3)).astype(np.float32)
    inits = [numpy_helper.from_array(rng.normal(size=(16, 10)).astype(np.float32), "fc_w"),
             numpy_helper.from_array(np.array([batch, 16], np.int64), "flat")]
    nodes = []
    if qdq_conv:
        inits += [numpy_helper.from_array(np.clip(np.round(w * 40), -127, 127).astype(np.int8), "w_q"),
                  numpy_helper.from_array(np.array(1 / 40, np.float32), "w_s"),
                  numpy_helper.from_array(np.array(0.02, np.float32), "x_s"),
                  numpy_helper.from_array(np.array(128, np.uint8), "x_z")]
        nodes += [helper.make_node("QuantizeLinear", ["x", "x_s", "x_z"], ["x_q"], name="q_x"),
                  helper.make_node("DequantizeLinear", ["x_q", "x_s", "x_z"], ["x_dq"], name="dq_x"),
                  helper.make_node("DequantizeLinear", ["w_q", "w_s"], ["w"], name="dq_w")]
    else:
        inits.append(numpy_helper.from_array(w, "w"))
    nodes += [helper.make_node("Conv", ["x_dq" if qdq_conv else "x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
              helper.make_node("MaxPool", ["c"], ["p"], name="pool", kernel_shape=[4, 4], strides=[4, 4]),
              helper.make_node("Reshape", ["p", "flat"], ["f"], name="flatten"),
              helper.make_node("MatMul", ["f", "fc_w"], ["y"], name="fc")]
    g = helper.make_graph(nodes, "toy", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 10])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])


def test_onnx_qdq_conv_is_int8_float_matmul_is_not(tmp_path):
    import onnx

    path = tmp_path / "toy.onnx"
    onnx.save(_toy_onnx(qdq_conv=True), str(path))
    cov = onnx_coverage(path)
    assert (cov.macs_int8, cov.macs_total, cov.layers_int8, cov.layers_total) == (CONV_MACS, CONV_MACS + MM_MACS, 1, 2)
    assert cov.mac_share == CONV_MACS / (CONV_MACS + MM_MACS) and cov.layer_share == 0.5
    assert cov.by_layer == [("conv", CONV_MACS, True), ("fc", MM_MACS, False)]
    assert cov.summary() == "INT8 97.7% of MACs (1/2 layers)"
    assert cov.info() == {"int8_mac_share": 0.9774, "int8_macs": 6912, "macs_total": 7072,
                          "int8_layers": 1, "layers_total": 2}
    assert "by_layer" not in cov.to_dict() and cov.to_dict(by_layer=True)["by_layer"][0] == ["conv", 6912, True]
    # a static batch is divided out: MACs are per image
    assert onnx_coverage(_toy_onnx(qdq_conv=False, batch=4)).macs_total == CONV_MACS + MM_MACS


def test_onnx_weight_only_or_activation_only_qdq_is_not_int8():
    proto = _toy_onnx(qdq_conv=True)
    conv = next(n for n in proto.graph.node if n.op_type == "Conv")
    conv.input[0] = "x"  # weight still from DequantizeLinear, activation float
    assert onnx_coverage(proto).macs_int8 == 0


def test_onnx_16bit_activation_is_not_int8():
    """W8A16 (onnxruntime's 16-bit Q/DQ, as mixed precision uses it) counts as float."""
    from onnx import TensorProto, numpy_helper

    proto = _toy_onnx(qdq_conv=True)
    assert onnx_coverage(proto).layers_int8 == 1
    zp = next(i for i in proto.graph.initializer if i.name == "x_z")
    zp.CopyFrom(numpy_helper.from_array(np.array(0, np.int16), "x_z"))
    assert zp.data_type == TensorProto.INT16
    cov = onnx_coverage(proto)
    assert (cov.macs_int8, cov.layers_int8) == (0, 0)


def test_onnx_depthwise_and_integer_ops():
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(np.ones((8, 1, 3, 3), np.float32), "dw"),
             numpy_helper.from_array(np.ones((8, 1, 3, 3), np.int8), "dw_q"),
             numpy_helper.from_array(np.array(0.1, np.float32), "s"),
             numpy_helper.from_array(np.array(0, np.int8), "z")]
    nodes = [helper.make_node("Conv", ["x", "dw"], ["a"], name="dw", group=8, pads=[1, 1, 1, 1]),
             helper.make_node("QuantizeLinear", ["a", "s", "z"], ["a_q"], name="q"),
             helper.make_node("QLinearConv", ["a_q", "s", "z", "dw_q", "s", "z", "s", "z"], ["b_q"], name="qdw",
                              group=8, pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("DequantizeLinear", ["b_q", "s", "z"], ["y"], name="dq")]
    g = helper.make_graph(nodes, "dw", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8, 16, 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    cov = onnx_coverage(helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)]))
    # depthwise: one input channel per output: 8 x 16x16 x 3x3; the stride-2 QLinearConv: 8 x 8x8 x 3x3
    assert cov.by_layer == [("dw", 8 * 16 * 16 * 9, False), ("qdw", 8 * 8 * 8 * 9, True)]


def _toy_tflite(path):
    """int8 CONV_2D -> int8 DEPTHWISE_CONV_2D, and a FULLY_CONNECTED with int8 weights on float
    activations (weight-only: not int8), built with the LiteRT schema's object API."""
    pytest.importorskip("ai_edge_litert")
    import flatbuffers
    from ai_edge_litert import schema_py_generated as s

    def tensor(name, shape, typ):
        t = s.TensorT()
        t.name, t.shape, t.type, t.buffer = name.encode(), shape, typ, 0
        return t

    def code(op):
        c = s.OperatorCodeT()
        c.builtinCode, c.deprecatedBuiltinCode, c.version = op, op, 1
        return c

    def op(idx, ins, outs):
        o = s.OperatorT()
        o.opcodeIndex, o.inputs, o.outputs = idx, ins, outs
        return o

    i8, f32 = s.TensorType.INT8, s.TensorType.FLOAT32
    sg = s.SubGraphT()
    sg.tensors = [tensor("x", [1, 8, 8, 3], i8), tensor("w", [4, 3, 3, 3], i8), tensor("conv", [1, 8, 8, 4], i8),
                  tensor("dw_w", [1, 3, 3, 4], i8), tensor("dw", [1, 8, 8, 4], i8),
                  tensor("f", [1, 16], f32), tensor("fc_w", [10, 16], i8), tensor("fc", [1, 10], f32)]
    sg.inputs, sg.outputs = [0, 5], [4, 7]
    sg.operators = [op(0, [0, 1], [2]), op(1, [2, 3], [4]), op(2, [5, 6], [7])]
    m = s.ModelT()
    m.version, m.subgraphs, m.buffers = 3, [sg], [s.BufferT()]
    m.operatorCodes = [code(s.BuiltinOperator.CONV_2D), code(s.BuiltinOperator.DEPTHWISE_CONV_2D),
                       code(s.BuiltinOperator.FULLY_CONNECTED)]
    b = flatbuffers.Builder(1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    path.write_bytes(bytes(b.Output()))
    return path


def test_tflite_conv_depthwise_and_weight_only_fc(tmp_path):
    cov = tflite_coverage(_toy_tflite(tmp_path / "toy.tflite"))
    assert cov.by_layer == [("conv", CONV_MACS, True), ("dw", 4 * 8 * 8 * 9, True), ("fc", MM_MACS, False)]
    assert (cov.layers_int8, cov.layers_total) == (2, 3)


def test_openvino_nncf_quantized_conv_counts_int8(tmp_path):
    """NNCF on the toy IR with the MatMul ignored: the conv is int8 in memory (FakeQuantize
    weights) and once saved (int8 Constant -> Convert -> Multiply), the MatMul is not."""
    nncf = pytest.importorskip("nncf")
    ov = pytest.importorskip("openvino")
    import onnx

    src = tmp_path / "toy.onnx"
    onnx.save(_toy_onnx(qdq_conv=False), str(src))
    fp32 = ov.convert_model(str(src))
    assert openvino_coverage(fp32).macs_int8 == 0
    rng = np.random.default_rng(0)
    data = nncf.Dataset([rng.normal(size=(1, 3, 8, 8)).astype(np.float32) for _ in range(4)])
    qm = nncf.quantize(fp32, data, subset_size=4, ignored_scope=nncf.IgnoredScope(types=["MatMul"]))
    ov.save_model(qm, str(tmp_path / "int8.xml"), compress_to_fp16=False)
    for m in (qm, tmp_path / "int8.xml"):
        cov = openvino_coverage(m)
        assert (cov.macs_int8, cov.macs_total, cov.layers_int8, cov.layers_total) == (
            CONV_MACS, CONV_MACS + MM_MACS, 1, 2), cov.by_layer


class _ConvFC(torch.nn.Module):
    img_size = 8

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.fc = torch.nn.Linear(4 * 8 * 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.conv(x), 1))


@pytest.mark.slow
def test_pt2e_program_counts_only_the_quantized_conv():
    pytest.importorskip("executorch")
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (XNNPACKQuantizer,
                                                                         get_symmetric_quantization_config)
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    m = _ConvFC().eval()
    x = torch.randn(4, 3, 8, 8)
    assert program_coverage(torch.export.export(m, (x[:1],))).macs_int8 == 0
    q = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    # only the conv: weights are get_attr nodes without a module stack, so let them through
    q.set_filter_function(lambda n: n.op != "call_function"
                          or any(p == "conv" for p, _ in (n.meta.get("nn_module_stack") or {}).values()))
    prepared = prepare_pt2e(torch.export.export(m, (x,)).module(), q)
    prepared(x)
    converted = convert_pt2e(prepared)
    fc_macs = 10 * 4 * 8 * 8
    # GraphModule and ExportedProgram, batch 4 (MACs per image)
    for prog in (converted, torch.export.export(converted, (x,))):
        cov = program_coverage(prog)
        assert cov.by_layer == [("conv", CONV_MACS, True), ("fc", fc_macs, False)]
        assert cov.mac_share == CONV_MACS / (CONV_MACS + fc_macs)


@pytest.mark.slow
def test_executorch_selective_quantization_quantizes_the_planned_convs():
    pytest.importorskip("executorch")
    from msvit.quantize.executorch import quantized_program

    x = np.random.default_rng(0).normal(size=(4, 3, 8, 8)).astype(np.float32)
    assert program_coverage(quantized_program(_ConvFC(), x, ["fc"])).by_layer[1] == ("fc", 2560, True)
    assert program_coverage(quantized_program(_ConvFC(), x, ["conv"])).by_layer[0] == ("conv", CONV_MACS, True)


def test_coverage_of_nothing_is_zero():
    cov = Coverage.of([])
    assert cov.mac_share == cov.layer_share == 0.0 and cov.summary() == "INT8 0.0% of MACs (0/0 layers)"


@pytest.mark.slow
def test_int8_onnx_export_records_its_coverage(artifact_onnx_int8):
    """The default INT8 ONNX (MatMul/Gemm only: convs stay float for onnxruntime) records the
    coverage of its own graph in the manifest and in the embedded metadata."""
    from msvit.runtime import read_metadata

    res = artifact_onnx_int8
    cov = onnx_coverage(res.path)
    assert 0 < cov.mac_share < 1 and 0 < cov.layers_int8 < cov.layers_total
    manifest = json.loads(res.manifest.read_text())["result"]["extra"]
    md = read_metadata(res.path)
    for facts in (res.extra, manifest):
        assert facts["int8_mac_share"] == round(cov.mac_share, 4)
        assert (facts["int8_macs"], facts["macs_total"]) == (cov.macs_int8, cov.macs_total)
        assert (facts["int8_layers"], facts["layers_total"]) == (cov.layers_int8, cov.layers_total)
    assert md["int8_mac_share"] == str(round(cov.mac_share, 4)) and md["macs_total"] == str(cov.macs_total)
    assert md["int8_layers"] == str(cov.layers_int8) and md["layers_total"] == str(cov.layers_total)
