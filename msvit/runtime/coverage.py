"""INT8 coverage: the share of multiply-adds (MACs) and of weighted layers an artifact runs in
int8, read off the exported graph itself (not off the plan that asked for it).

A layer is a Conv/ConvTranspose/MatMul/Gemm (ONNX), Convolution/GroupConvolution/MatMul
(OpenVINO), CONV_2D/DEPTHWISE_CONV_2D/FULLY_CONNECTED/BATCH_MATMUL (LiteRT) or
conv/linear/matmul (a torch.export program). It counts as int8 when both its activation and
its weight arrive quantized: what a backend needs to pick an integer kernel. MACs are per
image (batch 1): a static batch is divided out, a dynamic one counts as 1. Dimensions a graph
leaves unknown count as 1, so a graph without static shapes under-counts its MACs.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Iterable

from ..errors import TargetUnavailableError


@dataclass
class Coverage:
    macs_int8: int
    macs_total: int
    layers_int8: int
    layers_total: int
    by_layer: list[tuple[str, int, bool]] = field(default_factory=list, repr=False)  # (name, MACs, int8?)

    @classmethod
    def of(cls, layers: Iterable[tuple[str, int, bool]]) -> Coverage:
        by_layer = [(str(n), int(m), bool(q)) for n, m, q in layers]
        return cls(sum(m for _, m, q in by_layer if q), sum(m for _, m, _ in by_layer),
                   sum(q for _, _, q in by_layer), len(by_layer), by_layer)

    @property
    def mac_share(self) -> float:
        return self.macs_int8 / self.macs_total if self.macs_total else 0.0

    @property
    def layer_share(self) -> float:
        return self.layers_int8 / self.layers_total if self.layers_total else 0.0

    def to_dict(self, by_layer: bool = False) -> dict[str, Any]:
        d: dict[str, Any] = {"macs_int8": self.macs_int8, "macs_total": self.macs_total,
                             "layers_int8": self.layers_int8, "layers_total": self.layers_total,
                             "mac_share": self.mac_share, "layer_share": self.layer_share}
        if by_layer:
            d["by_layer"] = [list(t) for t in self.by_layer]
        return d

    def info(self) -> dict[str, Any]:
        """The facts an INT8 artifact records (manifest and embedded metadata)."""
        return {"int8_mac_share": round(self.mac_share, 4), "int8_macs": self.macs_int8,
                "macs_total": self.macs_total, "int8_layers": self.layers_int8, "layers_total": self.layers_total}

    def summary(self) -> str:
        return f"INT8 {100 * self.mac_share:.1f}% of MACs ({self.layers_int8}/{self.layers_total} layers)"


def _known(dims: Iterable[Any]) -> list[int]:
    """Static dims as ints; dynamic or unknown ones as 1 (batch-1 counting)."""
    return [d if isinstance(d, int) and d > 0 else 1 for d in dims]


def _per_image(layers: list[tuple[str, int, bool]], batch: Any) -> list[tuple[str, int, bool]]:
    b = batch if isinstance(batch, int) and batch > 1 else 1
    return [(n, m // b, q) for n, m, q in layers]


# ------------------------------------------------------------------ ONNX

_ONNX_FLOAT = ("Conv", "ConvTranspose", "MatMul", "Gemm")
#: integer ops: index of (activation, weight) input
_ONNX_INT = {"QLinearConv": (0, 3), "QLinearMatMul": (0, 3), "ConvInteger": (0, 1), "MatMulInteger": (0, 1)}


def onnx_coverage(model: str | os.PathLike | Any) -> Coverage:
    """Coverage of an ONNX model (path or ModelProto): QDQ (both inputs from an 8-bit
    DequantizeLinear) or integer-op (QLinearConv, QLinearMatMul, ConvInteger, MatMulInteger)
    layers are int8; a 16-bit activation (W8A16) is not."""
    import onnx

    proto = model if isinstance(model, onnx.ModelProto) else onnx.load(str(model))
    g = onnx.shape_inference.infer_shapes(proto).graph
    shapes: dict[str, list[int]] = {i.name: list(i.dims) for i in g.initializer}
    for vi in [*g.input, *g.value_info, *g.output]:
        if vi.type.HasField("tensor_type") and vi.type.tensor_type.HasField("shape"):
            shapes[vi.name] = _known(d.dim_value if d.HasField("dim_value") else None
                                     for d in vi.type.tensor_type.shape.dim)
    producer = {o: n for n in g.node for o in n.output}
    # element type of each tensor: a DequantizeLinear is 8-bit when its quantized input is
    # int8/uint8 (type unknown: its zero point's, which has the same type; none: uint8)
    elem = {i.name: i.data_type for i in g.initializer}
    elem.update({vi.name: vi.type.tensor_type.elem_type for vi in [*g.input, *g.value_info, *g.output]
                 if vi.type.HasField("tensor_type")})

    def dq8(name: str) -> bool:
        dq = producer.get(name)
        if dq is None or dq.op_type != "DequantizeLinear":
            return False
        zp = dq.input[2] if len(dq.input) > 2 else ""
        t = elem.get(dq.input[0]) or (elem.get(zp) if zp else onnx.TensorProto.UINT8)
        return t in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8)

    layers = []
    for n in g.node:
        op = n.op_type
        if op not in _ONNX_FLOAT and op not in _ONNX_INT:
            continue
        ia, iw = _ONNX_INT.get(op, (0, 1))
        x, w, y = (shapes.get(n.input[ia], []), shapes.get(n.input[iw], []), shapes.get(n.output[0], []))
        if op == "ConvTranspose":  # every input element meets Cout/group x kernel weights
            macs = math.prod(x) * math.prod(w[1:]) if x and w else 0
        elif "Conv" in op:  # weight (Cout, Cin/group, *kernel)
            macs = math.prod(y) * math.prod(w[1:]) if y and w else 0
        else:  # MatMul/Gemm: K from the activation's last (Gemm transA: first) axis
            trans_a = op == "Gemm" and any(a.name == "transA" and a.i for a in n.attribute)
            k = (x[0] if trans_a else x[-1]) if x else 0
            macs = math.prod(y) * k if y else 0
        int8 = op in _ONNX_INT or all(dq8(n.input[i]) for i in (ia, iw))
        layers.append((n.name or n.output[0], macs, int8))
    batch = shapes.get(g.input[0].name, [1])[0] if g.input else 1
    return Coverage.of(_per_image(layers, batch))


# ------------------------------------------------------------------ OpenVINO

_OV_OPS = ("Convolution", "GroupConvolution", "MatMul")
_OV_PASS_ACT = ("Convert",)
_OV_PASS_WEIGHT = ("Convert", "Reshape", "Transpose", "Squeeze", "Unsqueeze")


def _ov_src(node: Any, i: int = 0) -> Any:
    return node.input_value(i).get_node()


def _ov_skip(node: Any, kinds: tuple[str, ...]) -> Any:
    while node.get_type_name() in kinds and node.get_input_size():
        node = _ov_src(node)
    return node


def _ov_int8_weight(node: Any) -> bool:
    """FakeQuantize on the weight, or NNCF's compressed form once saved:
    int8/uint8 Constant -> Convert -> (Subtract zero point) -> Multiply scale."""
    import openvino as ov

    node = _ov_skip(node, _OV_PASS_WEIGHT)
    if node.get_type_name() == "FakeQuantize":
        return True
    if node.get_type_name() != "Multiply":
        return False
    for i in range(node.get_input_size()):
        src = _ov_src(node, i)
        if src.get_type_name() == "Subtract":
            src = _ov_src(src)
        if src.get_type_name() == "Convert":
            src = _ov_src(src)
            if src.get_type_name() == "Constant" and src.get_output_element_type(0) in (ov.Type.i8, ov.Type.u8):
                return True
    return False


def openvino_coverage(model: str | os.PathLike | Any) -> Coverage:
    """Coverage of an OpenVINO model (``.xml`` path or ``ov.Model``): a layer is int8 when its
    activation comes from a FakeQuantize and its weight is quantized (see :func:`_ov_int8_weight`)."""
    import openvino as ov

    if not isinstance(model, ov.Model):
        from .ov_core import core

        model = core().read_model(str(model))

    def dims(ps: Any) -> list[int]:
        return _known(d.get_length() if d.is_static else None for d in ps)

    layers = []
    for op in model.get_ordered_ops():
        t = op.get_type_name()
        if t not in _OV_OPS:
            continue
        y, x, w = (dims(op.get_output_partial_shape(0)), dims(op.get_input_partial_shape(0)),
                   dims(op.get_input_partial_shape(1)))
        if t == "Convolution":  # weight (Cout, Cin, *kernel)
            k = math.prod(w[1:])
        elif t == "GroupConvolution":  # weight (groups, Cout/groups, Cin/groups, *kernel)
            k = math.prod(w[2:])
        else:
            k = (x[-2] if op.get_attributes().get("transpose_a") else x[-1]) if len(x) >= 2 else (x or [0])[0]
        int8 = (_ov_skip(_ov_src(op, 0), _OV_PASS_ACT).get_type_name() == "FakeQuantize"
                and _ov_int8_weight(_ov_src(op, 1)))
        layers.append((op.get_friendly_name(), math.prod(y) * k, int8))
    b = model.inputs[0].get_partial_shape()[0] if model.inputs else None
    return Coverage.of(_per_image(layers, b.get_length() if b is not None and b.is_static else 1))


# ------------------------------------------------------------------ LiteRT

def tflite_coverage(path: str | os.PathLike) -> Coverage:
    """Coverage of a LiteRT flatbuffer: a layer is int8 when its input and weight tensors are
    INT8/UINT8 (float-activation layers with int8 weights are weight-only, not int8)."""
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:
        raise TargetUnavailableError("LiteRT coverage reads the flatbuffer with ai-edge-litert's schema: "
                                     "pip install 'msvit[litert]'") from None
    from .litert import check_tflite_file

    data = check_tflite_file(path)
    m = schema.Model.GetRootAs(data, 0)
    ops, int8_types = schema.BuiltinOperator, (schema.TensorType.INT8, schema.TensorType.UINT8)
    wanted = (ops.CONV_2D, ops.DEPTHWISE_CONV_2D, ops.FULLY_CONNECTED, ops.BATCH_MATMUL)
    layers, batch = [], 1
    for s in range(m.SubgraphsLength()):
        sg = m.Subgraphs(s)

        def shape(i: int, sg: Any = sg) -> list[int]:
            return _known(sg.Tensors(i).ShapeAsNumpy().tolist()) if sg.Tensors(i).ShapeLength() else []

        if s == 0 and sg.InputsLength():
            t = sg.Tensors(int(sg.Inputs(0)))  # shape_signature says -1 for a dynamic batch
            dims = t.ShapeSignatureAsNumpy().tolist() if t.ShapeSignatureLength() else shape(int(sg.Inputs(0)))
            batch = dims[0] if dims else 1
        for j in range(sg.OperatorsLength()):
            op = sg.Operators(j)
            oc = m.OperatorCodes(op.OpcodeIndex())
            code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
            if code not in wanted or op.InputsLength() < 2:
                continue
            a, w, o = int(op.Inputs(0)), int(op.Inputs(1)), int(op.Outputs(0))
            x, k, y = shape(a), shape(w), shape(o)
            if code == ops.CONV_2D:  # filter (Cout, kh, kw, Cin/groups)
                macs = math.prod(y) * math.prod(k[1:])
            elif code == ops.DEPTHWISE_CONV_2D:  # filter (1, kh, kw, Cout): one input channel per output
                macs = math.prod(y) * math.prod(k[1:3])
            elif code == ops.FULLY_CONNECTED:  # weight (Cout, K)
                macs = math.prod(y) * (k[-1] if k else 0)
            else:
                opt = schema.BatchMatMulOptions()
                tab = op.BuiltinOptions()
                adj_x = False
                if tab is not None:
                    opt.Init(tab.Bytes, tab.Pos)
                    adj_x = bool(opt.AdjX())
                macs = math.prod(y) * ((x[-2] if adj_x else x[-1]) if len(x) >= 2 else 0)
            int8 = sg.Tensors(a).Type() in int8_types and sg.Tensors(w).Type() in int8_types
            layers.append(((sg.Tensors(o).Name() or b"").decode("utf-8", "replace"), macs, int8))
    return Coverage.of(_per_image(layers, batch))


# ------------------------------------------------------------------ torch.export (ExecuTorch PT2E)

_PT_CONV = ("aten.conv1d.default", "aten.conv2d.default", "aten.conv3d.default", "aten.convolution.default")
_PT_MM = ("aten.linear.default", "aten.matmul.default", "aten.mm.default", "aten.bmm.default")


def _is_dequant(n: Any) -> bool:
    # quantized_decomposed.dequantize_per_tensor/_per_channel (PT2E), torchao.dequantize_affine, ...
    return getattr(n, "op", None) == "call_function" and "dequantize" in str(n.target)


def program_coverage(program: Any) -> Coverage:
    """Coverage of a torch.export program (``ExportedProgram`` or its ``GraphModule``) after PT2E
    ``convert_pt2e``, before lowering: a layer is int8 when its activation and weight come from
    dequantize nodes (what XNNPACK's partitioner turns into an int8 kernel)."""
    gm = getattr(program, "graph_module", program)
    user = set(getattr(getattr(program, "graph_signature", None), "user_inputs", None) or [])

    def shape(n: Any) -> list[int]:
        v = n.meta.get("val") if hasattr(n, "meta") else None
        if v is None and getattr(n, "op", None) == "get_attr":
            v = gm
            for part in str(n.target).split("."):  # a frozen weight: read its shape off the module
                v = getattr(v, part, None)
        if v is None and getattr(n, "op", None) == "call_function" and "quantize" in str(n.target):
            return shape(n.args[0])  # convert_pt2e's (de)quantize nodes carry no meta: the shape of what they wrap
        return _known(getattr(v, "shape", []))

    layers, batch = [], None
    for n in gm.graph.nodes:
        if batch is None and n.op == "placeholder" and (not user or n.name in user):
            batch = (shape(n) or [1])[0]  # the first user input
        t = str(n.target)
        if n.op != "call_function" or (t not in _PT_CONV and t not in _PT_MM):
            continue
        x, w, y = shape(n.args[0]), shape(n.args[1]), shape(n)
        if t in _PT_CONV:
            transposed = t == "aten.convolution.default" and len(n.args) > 6 and n.args[6]
            macs = math.prod(x) * math.prod(w[1:]) if transposed else math.prod(y) * math.prod(w[1:])
        elif t == "aten.linear.default":  # weight (Cout, K)
            macs = math.prod(y) * (w[-1] if w else 0)
        else:
            macs = math.prod(y) * (x[-1] if x else 0)
        stack = n.meta.get("nn_module_stack") or {}
        name = next(reversed(stack.values()))[0] if stack else n.name
        layers.append((name or n.name, macs, _is_dequant(n.args[0]) and _is_dequant(n.args[1])))
    return Coverage.of(_per_image(layers, batch))
