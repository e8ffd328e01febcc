"""Static TensorRT op check on hand-made ONNX graphs."""
from onnx import TensorProto, checker, helper

from fovea_core.backends import check_tensorrt_ops
from fovea_core.backends.trt_ops import SUPPORTED_OPS, UNSUPPORTED_OPS, list_ops
from fovea_core.backends.trt_ops import main as trt_ops_main


def _value(name, shape=(1, 4)):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))


def _model(nodes, inputs, outputs, opset=17, functions=(), extra_opsets=()):
    graph = helper.make_graph(nodes, "g", inputs, outputs)
    opsets = [helper.make_opsetid("", opset), *extra_opsets]
    return helper.make_model(graph, opset_imports=opsets, functions=list(functions))


def test_supported_graph_passes(tmp_path):
    weight = helper.make_tensor("w", TensorProto.FLOAT, [2, 1, 3, 3], [0.1] * 18)
    model = _model(
        [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["c"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 8, 8])],
    )
    model.graph.initializer.append(weight)
    checker.check_model(model)
    path = tmp_path / "ok.onnx"
    path.write_bytes(model.SerializeToString())
    report = check_tensorrt_ops(path)
    assert report.ok and report.unsupported == [] and report.opset == 17
    assert report.op_counts == {("", "Conv"): 1, ("", "Relu"): 1}
    assert "TensorRT op check: passed" in report.format()
    assert trt_ops_main([str(path)]) == 0


def test_unsupported_standard_op_is_flagged():
    model = _model(
        [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Unique", ["r"], ["y"])],
        [_value("x")], [_value("y", (None,))],
    )
    report = check_tensorrt_ops(model)
    assert not report.ok
    assert [(f.op_type, f.count) for f in report.unsupported] == [("Unique", 1)]
    assert "UNSUPPORTED Unique x1" in report.format()


def test_custom_domain_op_is_flagged_unless_provided_as_plugin():
    model = _model([helper.make_node("VoxelScatter", ["x"], ["y"], domain="fovea.custom")],
                   [_value("x")], [_value("y")], extra_opsets=[helper.make_opsetid("fovea.custom", 1)])
    report = check_tensorrt_ops(model)
    assert [f.label() for f in report.unsupported] == ["fovea.custom::VoxelScatter"]
    assert "plugin" in report.unsupported[0].note
    assert check_tensorrt_ops(model, plugin_ops={("fovea.custom", "VoxelScatter")}).ok


def test_ops_inside_if_subgraphs_are_checked():
    then_branch = helper.make_graph([helper.make_node("AffineGrid", ["theta", "size"], ["t"])], "then", [],
                                    [_value("t")])
    else_branch = helper.make_graph([helper.make_node("Identity", ["x"], ["e"])], "else", [], [_value("e")])
    model = _model(
        [helper.make_node("If", ["cond"], ["y"], then_branch=then_branch, else_branch=else_branch)],
        [helper.make_tensor_value_info("cond", TensorProto.BOOL, []), _value("x"), _value("theta"),
         helper.make_tensor_value_info("size", TensorProto.INT64, [4])],
        [_value("y")],
    )
    counts = list_ops(model)
    assert counts[("", "If")] == 1 and counts[("", "AffineGrid")] == 1 and counts[("", "Identity")] == 1
    report = check_tensorrt_ops(model)
    assert [f.op_type for f in report.unsupported] == ["AffineGrid"]
    assert [f.op_type for f in report.restricted] == ["If"]  # supported, with a condition to verify


def test_local_function_bodies_are_checked_instead_of_the_call():
    body = helper.make_function("fovea.fn", "Block", ["a"], ["b"],
                                [helper.make_node("BitShift", ["a", "a"], ["b"], direction="LEFT")],
                                [helper.make_opsetid("", 17)])
    model = _model([helper.make_node("Block", ["x"], ["y"], domain="fovea.fn")], [_value("x")], [_value("y")],
                   functions=[body], extra_opsets=[helper.make_opsetid("fovea.fn", 1)])
    report = check_tensorrt_ops(model)
    assert [f.op_type for f in report.unsupported] == ["BitShift"]  # not the "Block" call site


def test_unknown_op_and_out_of_range_opset_are_flagged():
    report = check_tensorrt_ops(_model([helper.make_node("Relu", ["x"], ["y"])], [_value("x")], [_value("y")],
                                       opset=8))
    assert not report.ok and "outside" in report.opset_problem
    made_up = _model([helper.make_node("FancyNewOp", ["x"], ["y"])], [_value("x")], [_value("y")])
    assert [f.note for f in check_tensorrt_ops(made_up).unsupported] == ["not in TensorRT's ONNX matrix"]


def test_embedded_lists_are_consistent():
    assert not SUPPORTED_OPS & UNSUPPORTED_OPS
    assert {"Conv", "GridSample", "MatMul", "Resize", "ScatterND", "LayerNormalization"} <= SUPPORTED_OPS


def _findings(model):
    report = check_tensorrt_ops(model)
    return ({(f.op_type, f.note) for f in report.unsupported}, {(f.op_type, f.note) for f in report.restricted})


def _const(name, values, dtype=TensorProto.INT64):
    return helper.make_node("Constant", [], [name], value=helper.make_tensor(name + "_v", dtype, [len(values)], values))


def test_restrictions_decided_from_the_graph():
    x4 = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 8, 8])
    resize_ok = helper.make_node("Resize", ["x", "", "scales"], ["r1"], mode="linear",
                                 coordinate_transformation_mode="half_pixel")
    resize_cubic = helper.make_node("Resize", ["x", "", "scales"], ["r2"], mode="cubic")
    layer_norm = helper.make_node("LayerNormalization", ["x", "gamma"], ["ln", "ln_mean"], axis=-1)
    pool_1d = helper.make_node("MaxPool", ["seq"], ["p"], kernel_shape=[3])
    topk = helper.make_node("TopK", ["flat", "k"], ["values", "indices"])
    dq = helper.make_node("DequantizeLinear", ["q", "scale", "zp"], ["deq"])
    model = _model(
        [_const("scales", [1.0, 1.0, 2.0, 2.0], TensorProto.FLOAT), _const("k", [5000]),
         resize_ok, resize_cubic, layer_norm, pool_1d, topk, dq],
        [x4, helper.make_tensor_value_info("gamma", TensorProto.FLOAT, [8]),
         helper.make_tensor_value_info("seq", TensorProto.FLOAT, [1, 2, 16]),
         helper.make_tensor_value_info("flat", TensorProto.FLOAT, [1, 9000]),
         helper.make_tensor_value_info("q", TensorProto.INT8, [4])],
        [_value("r1"), _value("r2"), _value("ln"), _value("p"), _value("values"), _value("deq")],
    )
    model.graph.initializer.extend([helper.make_tensor("scale", TensorProto.FLOAT, [], [0.1]),
                                    helper.make_tensor("zp", TensorProto.INT8, [], [3])])
    unsupported, restricted = _findings(model)
    assert unsupported == {
        ("Resize", "mode 'cubic' (nearest or linear only)"),
        ("LayerNormalization", "outputs other than the first (Mean/InvStdDev) are used"),
        ("MaxPool", "1-D pooling (TensorRT pools in 2-D or 3-D only)"),
        ("TopK", "K=5000 (must stay below 3840)"),
        ("DequantizeLinear", "non-zero zero point (TensorRT quantises symmetrically)"),
    }
    assert restricted == set()  # the linear Resize and the Constants are fine as they are


def test_axes_from_a_runtime_tensor_are_left_for_a_human():
    fixed = _model([_const("axes", [0]), helper.make_node("Unsqueeze", ["x", "axes"], ["y"])],
                   [_value("x")], [_value("y", (1, 1, 4))])
    assert _findings(fixed) == (set(), set())
    runtime = _model([helper.make_node("Unsqueeze", ["x", "axes"], ["y"])],
                     [_value("x"), helper.make_tensor_value_info("axes", TensorProto.INT64, [1])],
                     [_value("y", (1, 1, 4))])
    unsupported, restricted = _findings(runtime)
    assert unsupported == set() and [op for op, _ in restricted] == ["Unsqueeze"]
    assert check_tensorrt_ops(runtime).ok  # a "check" does not fail the file


def test_grid_sample_rank_is_inferred():
    def grid_model(rank):
        spatial = [4] * (rank - 2)
        return _model([helper.make_node("GridSample", ["x", "grid"], ["y"])],
                      [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, *spatial]),
                       helper.make_tensor_value_info("grid", TensorProto.FLOAT, [1, *spatial, rank - 2])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], opset=20)

    assert check_tensorrt_ops(grid_model(4)).ok and not check_tensorrt_ops(grid_model(4)).restricted
    assert _findings(grid_model(5))[0] == {("GridSample", "5-D input (4-D only)")}
