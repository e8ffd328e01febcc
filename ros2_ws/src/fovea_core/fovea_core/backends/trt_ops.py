"""Static check: does every op in an ONNX file appear in TensorRT's supported-operator list?

Run it right after export, long before anyone has a GPU at hand: an op TensorRT's ONNX parser lacks
(``Unique``, ``AffineGrid``, sequence ops, a custom-domain op) otherwise surfaces only when a robot
first builds its engine.

Data source: the operator support matrix ``docs/operators.md`` of github.com/onnx/onnx-tensorrt as
published for TensorRT 10.15 (opset 9 to 24). Op names below are that matrix's "Y" and "N" rows;
the restriction notes are short paraphrases of its "Restrictions" column. Ops in neither list (newer
ONNX ops, custom domains) are reported as unsupported, since the parser would reject them too.
Restrictions the graph alone decides (pooling rank, Resize modes, constant axes, Q/DQ zero points, TopK
K, GridSample rank via shape inference, ...) are checked; the others are listed for a human to confirm.
When moving to another TensorRT release, refresh the three tables from that release's matrix.
"""
from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper

from .onnx_graph import STANDARD_DOMAINS, constant_values, default_opset, iter_nodes, load_model

SOURCE = "onnx/onnx-tensorrt docs/operators.md (TensorRT 10.15 support matrix)"
TENSORRT_LIST_VERSION = "10.15"
SUPPORTED_OPSET_RANGE = (9, 24)

SUPPORTED_OPS = frozenset("""
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh Attention AveragePool BatchNormalization
BlackmanWindow Cast CastLike Ceil Celu Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh
CumSum DeformConv DepthToSpace DequantizeLinear Div Dropout Einsum Elu Equal Erf Exp Expand EyeLike
Flatten Floor Gather GatherElements GatherND Gelu Gemm GlobalAveragePool GlobalLpPool GlobalMaxPool
Greater GreaterOrEqual GridSample GroupNormalization GRU HammingWindow HannWindow HardSigmoid HardSwish
Hardmax Identity If ImageScaler InstanceNormalization IsInf IsNaN LayerNormalization LeakyRelu Less
LessOrEqual Log LogSoftmax Loop LRN LSTM LpNormalization LpPool MatMul Max MaxPool Mean
MeanVarianceNormalization Min Mish Mod Mul Neg NonMaxSuppression NonZero Not OneHot Or Pad
ParametricSoftplus Pow PRelu QuantizeLinear RandomNormal RandomNormalLike RandomUniform RandomUniformLike
Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd
ReduceSum ReduceSumSquare Relu Reshape Resize ReverseSequence RMSNormalization RNN RoiAlign
RotaryEmbedding Round STFT ScaledTanh Scan Scatter ScatterElements ScatterND Selu Shape Shrink Sigmoid
Sign Sin Sinh Size Slice Softmax Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh
TensorScatter ThresholdedRelu Tile TopK Transpose Trilu Unsqueeze Upsample Where Xor
""".split())

UNSUPPORTED_OPS = frozenset("""
AffineGrid Bernoulli BitShift BitwiseAnd BitwiseNot BitwiseOr BitwiseXor Col2Im CenterCropPad Compress
ConcatFromSequence ConvInteger DFT Det DynamicQuantizeLinear ImageDecoder MatMulInteger MaxRoiPool
MaxUnpool MelWeightMatrix Multinomial NegativeLogLikelihoodLoss Optional OptionalGetElement
OptionalHasElement QLinearConv QLinearMatMul RegexFullMatch SequenceAt SequenceConstruct SequenceEmpty
SequenceErase SequenceInsert SequenceLength SequenceMap SoftmaxCrossEntropyLoss SplitToSequence
StringConcat StringNormalizer StringSplit TfIdfVectorizer Unique
""".split())

_REDUCE_NOTE = "axes must be a constant initializer"
# Supported, but only under conditions this check cannot see statically; printed so a human looks.
RESTRICTIONS = {
    "AveragePool": "2-D or 3-D pooling only; no dilations",
    "MaxPool": "2-D or 3-D pooling only; no dilations; the Indices output is not supported",
    "LpPool": "no dilations",
    "CumSum": "axis must be known at build time",
    "Dropout": "is_training must be a constant false",
    "GridSample": "4-D input only",
    "LayerNormalization": "only the first output (Y) is supported",
    "Loop": "scan outputs need a fixed length; loop-carried shapes may not change between iterations",
    "If": "both branches must return outputs of equal rank",
    "LSTM": "input_forget and layout must be 0; bidirectional needs equal activations both ways",
    "GRU": "bidirectional needs equal activations both ways",
    "RNN": "bidirectional needs equal activations both ways",
    "Resize": "modes nearest/linear only, a subset of coordinate transforms, no antialiasing",
    "TopK": "sorted must be 1 and K below 3840",
    "ScatterND": "reduction must be none",
    "Squeeze": "axes must resolve to a constant",
    "Unsqueeze": "axes must resolve to a constant",
    "QuantizeLinear": "zero point must be 0",
    "DequantizeLinear": "zero point must be 0",
    "EyeLike": "input needs static dimensions",
    "OneHot": "depth must be known at build time",
    "Hardmax": "the reduced axis must have a build-time size",
    "STFT": "frame_step and window must be initializers; real input only",
    "NonZero": "output shape depends on data (needs an output allocator at run time)",
    "NonMaxSuppression": "output shape depends on data (needs an output allocator at run time)",
    "Constant": "sparse and string values are not supported",
    **{op: _REDUCE_NOTE for op in (
        "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax", "ReduceMean",
        "ReduceMin", "ReduceProd", "ReduceSum", "ReduceSumSquare")},
}


@dataclass(frozen=True)
class OpFinding:
    domain: str
    op_type: str
    count: int
    note: str

    def label(self) -> str:
        return f"{self.domain}::{self.op_type}" if self.domain not in STANDARD_DOMAINS else self.op_type


@dataclass
class TrtOpReport:
    """Result of ``check_tensorrt_ops``; ``ok`` is False when TensorRT's parser would reject the file."""

    opset: int | None
    op_counts: dict[tuple[str, str], int]
    unsupported: list[OpFinding] = field(default_factory=list)
    restricted: list[OpFinding] = field(default_factory=list)
    opset_problem: str | None = None
    source: str = SOURCE

    @property
    def ok(self) -> bool:
        return not self.unsupported and self.opset_problem is None

    def format(self) -> str:
        lines = [f"ONNX opset {self.opset}; {sum(self.op_counts.values())} nodes, "
                 f"{len(self.op_counts)} distinct ops; checked against {self.source}"]
        if self.opset_problem:
            lines.append(f"  OPSET: {self.opset_problem}")
        for f in self.unsupported:
            lines.append(f"  UNSUPPORTED {f.label()} x{f.count}: {f.note}")
        for f in self.restricted:
            lines.append(f"  check       {f.label()} x{f.count}: {f.note}")
        lines.append("TensorRT op check: " + ("passed" if self.ok else "FAILED"))
        return "\n".join(lines)


def list_ops(model: onnx.ModelProto | str | os.PathLike) -> Counter:
    """Counter of (domain, op_type) over every node, If/Loop/Scan bodies and local functions included.
    The default domain is reported as ""."""
    model = load_model(model)
    return Counter(("" if n.domain == "ai.onnx" else n.domain, n.op_type) for n in iter_nodes(model))


_RESIZE_COORDINATE_MODES = {"half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric", "align_corners"}
_RESIZE_NEAREST_MODES = {"floor", "ceil", "round_prefer_floor", "round_prefer_ceil"}
_REDUCE_OPS = {op for op, note in RESTRICTIONS.items() if note == _REDUCE_NOTE}

# Verdicts of the per-node checks below.
OK, CHECK, UNSUPPORTED = "ok", "check", "unsupported"


def _attr(node: onnx.NodeProto, name: str, default=None):
    for a in node.attribute:
        if a.name == name:
            value = helper.get_attribute_value(a)
            return value.decode() if isinstance(value, bytes) else value
    return default


def _input_known(node: onnx.NodeProto, index: int, facts: "GraphFacts") -> bool:
    """Optional input absent, or fed by an initializer / Constant (known at build time)."""
    return index >= len(node.input) or node.input[index] == "" or node.input[index] in facts.constants


def _pool(node, facts):
    kernel = _attr(node, "kernel_shape", [])
    if len(kernel) not in (2, 3):
        return UNSUPPORTED, f"{len(kernel)}-D pooling (TensorRT pools in 2-D or 3-D only)"
    if any(d != 1 for d in _attr(node, "dilations", [])):
        return UNSUPPORTED, "dilated pooling"
    if node.op_type == "MaxPool" and len(node.output) > 1 and node.output[1]:
        return UNSUPPORTED, "the Indices output is used"
    return OK, ""


def _axes_known(node, facts):
    if _attr(node, "axes") is not None or _input_known(node, 1, facts):
        return OK, ""
    return CHECK, "axes come from a tensor computed at run time; " + RESTRICTIONS[node.op_type]


def _resize(node, facts):
    mode = _attr(node, "mode", "nearest")
    if mode not in ("nearest", "linear"):
        return UNSUPPORTED, f"mode '{mode}' (nearest or linear only)"
    if _attr(node, "antialias", 0):
        return UNSUPPORTED, "antialiasing"
    transform = _attr(node, "coordinate_transformation_mode", "half_pixel")
    if transform not in _RESIZE_COORDINATE_MODES:
        return UNSUPPORTED, f"coordinate_transformation_mode '{transform}'"
    if mode == "nearest" and _attr(node, "nearest_mode", "round_prefer_floor") not in _RESIZE_NEAREST_MODES:
        return UNSUPPORTED, f"nearest_mode '{_attr(node, 'nearest_mode')}'"
    if _attr(node, "keep_aspect_ratio_policy", "stretch") != "stretch":
        return UNSUPPORTED, "keep_aspect_ratio_policy other than stretch"
    return OK, ""


def _zero_point(node, facts):
    if len(node.input) < 3 or node.input[2] == "":
        return OK, ""
    value = facts.constants.get(node.input[2])
    if value is not None and not np.any(value):
        return OK, ""
    if value is not None:
        return UNSUPPORTED, "non-zero zero point (TensorRT quantises symmetrically)"
    return CHECK, RESTRICTIONS[node.op_type]


def _topk(node, facts):
    if _attr(node, "sorted", 1) != 1:
        return UNSUPPORTED, "sorted=0"
    k = facts.constants.get(node.input[1]) if len(node.input) > 1 else None
    if k is not None and int(np.max(k)) >= 3840:
        return UNSUPPORTED, f"K={int(np.max(k))} (must stay below 3840)"
    return (OK, "") if k is not None else (CHECK, RESTRICTIONS["TopK"])


def _single_output(node, facts):
    if any(node.output[1:]):
        return UNSUPPORTED, "outputs other than the first (Mean/InvStdDev) are used"
    return OK, ""


def _constant(node, facts):
    if any(a.name in ("sparse_value", "value_string", "value_strings") for a in node.attribute):
        return UNSUPPORTED, "sparse or string constant"
    return OK, ""


def _scatter_nd(node, facts):
    reduction = _attr(node, "reduction", "none")
    return (OK, "") if reduction == "none" else (UNSUPPORTED, f"reduction '{reduction}'")


def _lstm(node, facts):
    if _attr(node, "input_forget", 0) or _attr(node, "layout", 0):
        return UNSUPPORTED, "input_forget or layout set"
    if _attr(node, "direction", "forward") == "bidirectional":
        return CHECK, RESTRICTIONS["LSTM"]
    return OK, ""


def _recurrent(node, facts):
    if _attr(node, "direction", "forward") == "bidirectional":
        return CHECK, RESTRICTIONS[node.op_type]
    return OK, ""


def _known_input(index):
    def verify(node, facts):
        return (OK, "") if _input_known(node, index, facts) else (CHECK, RESTRICTIONS[node.op_type])
    return verify


def _grid_sample(node, facts):
    rank = facts.ranks.get(node.input[0])
    if rank is None:
        return CHECK, RESTRICTIONS["GridSample"] + " (rank not inferable here)"
    return (OK, "") if rank == 4 else (UNSUPPORTED, f"{rank}-D input (4-D only)")


@dataclass(frozen=True)
class GraphFacts:
    """What the checks may know without running the model: constant tensors and inferred ranks."""

    constants: dict
    ranks: dict


def _graph_facts(model: onnx.ModelProto) -> GraphFacts:
    ranks: dict[str, int] = {}
    try:
        # Shape inference only to learn ranks; a model it cannot handle just leaves ranks unknown.
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001
        inferred = model
    g = inferred.graph
    for value in (*g.input, *g.value_info, *g.output):
        if value.type.HasField("tensor_type") and value.type.tensor_type.HasField("shape"):
            ranks[value.name] = len(value.type.tensor_type.shape.dim)
    return GraphFacts(constant_values(model), ranks)


# Restrictions that can be decided from the graph alone; the rest are reported as "check".
_VERIFIERS = {
    "AveragePool": _pool, "MaxPool": _pool, "Resize": _resize, "TopK": _topk, "Constant": _constant,
    "LayerNormalization": _single_output, "ScatterND": _scatter_nd, "LSTM": _lstm, "GRU": _recurrent,
    "RNN": _recurrent, "QuantizeLinear": _zero_point, "DequantizeLinear": _zero_point,
    "Squeeze": _axes_known, "Unsqueeze": _axes_known, "CumSum": _known_input(1), "OneHot": _known_input(1),
    "Dropout": _known_input(2), "GridSample": _grid_sample, **{op: _axes_known for op in _REDUCE_OPS},
}


def _verdict(node: onnx.NodeProto, facts: GraphFacts, plugin_ops) -> tuple[str, str]:
    domain = "" if node.domain == "ai.onnx" else node.domain
    op = node.op_type
    if (domain, op) in plugin_ops:
        return OK, ""
    if domain not in STANDARD_DOMAINS:
        return UNSUPPORTED, f"custom domain '{domain}' (needs a TensorRT plugin)"
    if op in UNSUPPORTED_OPS:
        return UNSUPPORTED, "marked unsupported in TensorRT's ONNX matrix"
    if op not in SUPPORTED_OPS:
        return UNSUPPORTED, "not in TensorRT's ONNX matrix"
    if op in _VERIFIERS:
        return _VERIFIERS[op](node, facts)
    if op in RESTRICTIONS:
        return CHECK, RESTRICTIONS[op]
    return OK, ""


def check_tensorrt_ops(
    model: onnx.ModelProto | str | os.PathLike,
    plugin_ops: set[tuple[str, str]] | frozenset = frozenset(),
) -> TrtOpReport:
    """Compare every op in ``model`` with TensorRT's supported list and, where the graph alone can tell,
    with the list's restrictions (pool rank, Resize modes, constant axes, ...).

    ``unsupported``: ops or uses TensorRT rejects. ``restricted``: supported ops with a condition this
    check cannot decide statically (e.g. GridSample's 4-D input), for a human to confirm.
    ``plugin_ops``: (domain, op_type) pairs you provide as TensorRT plugins; they are not flagged.
    """
    model = load_model(model)
    opset = default_opset(model)
    facts = _graph_facts(model)
    counts: Counter = Counter()
    findings: Counter = Counter()
    for node in iter_nodes(model):
        domain = "" if node.domain == "ai.onnx" else node.domain
        counts[(domain, node.op_type)] += 1
        verdict, note = _verdict(node, facts, plugin_ops)
        if verdict != OK:
            findings[(verdict, domain, node.op_type, note)] += 1
    report = TrtOpReport(opset=opset, op_counts=dict(counts))
    lo, hi = SUPPORTED_OPSET_RANGE
    if opset is not None and not lo <= opset <= hi:
        report.opset_problem = f"opset {opset} is outside TensorRT {TENSORRT_LIST_VERSION}'s range {lo}..{hi}"
    for (verdict, domain, op, note), count in sorted(findings.items()):
        target = report.unsupported if verdict == UNSUPPORTED else report.restricted
        target.append(OpFinding(domain, op, count, note))
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fovea-trt-ops", description=__doc__.splitlines()[0])
    parser.add_argument("onnx", nargs="+", help="ONNX file(s) to check")
    args = parser.parse_args(argv)
    ok = True
    for path in args.onnx:
        report = check_tensorrt_ops(path)
        print(f"{path}:\n{report.format()}")
        ok &= report.ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
