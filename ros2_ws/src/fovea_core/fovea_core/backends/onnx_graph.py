"""Reading what an ONNX file contains: its real inputs and every node, subgraphs included."""
from __future__ import annotations

import os
from typing import Iterator

import onnx

STANDARD_DOMAINS = ("", "ai.onnx")


def load_model(model: onnx.ModelProto | str | os.PathLike, with_weights: bool = False) -> onnx.ModelProto:
    """``model`` itself, or the file loaded; weights stay on disk unless asked for (only the graph matters here)."""
    if isinstance(model, onnx.ModelProto):
        return model
    return onnx.load(os.fspath(model), load_external_data=with_weights)


def _subgraphs(node: onnx.NodeProto) -> Iterator[onnx.GraphProto]:
    for attr in node.attribute:
        if attr.type == onnx.AttributeProto.GRAPH:
            yield attr.g
        elif attr.type == onnx.AttributeProto.GRAPHS:
            yield from attr.graphs


def iter_nodes(model: onnx.ModelProto) -> Iterator[onnx.NodeProto]:
    """Every node that will execute: the main graph, If/Loop/Scan bodies at any depth, and the bodies of
    model-local functions in place of their call sites (a parser inlines those; the call itself is no op)."""
    functions = {(f.domain, f.name): f for f in model.functions}

    def walk(nodes, seen_functions: tuple) -> Iterator[onnx.NodeProto]:
        for node in nodes:
            fn_key = (node.domain, node.op_type)
            if fn_key in functions and fn_key not in seen_functions:
                yield from walk(functions[fn_key].node, seen_functions + (fn_key,))
                continue
            yield node
            for graph in _subgraphs(node):
                yield from walk(graph.node, seen_functions)

    yield from walk(model.graph.node, ())


def graph_inputs(model: onnx.ModelProto) -> dict[str, tuple[int | None, ...]]:
    """Model inputs (not initializers listed as inputs, as old exporters did) -> shape, ``None`` = dynamic."""
    initializers = {init.name for init in model.graph.initializer}
    shapes: dict[str, tuple[int | None, ...]] = {}
    for value in model.graph.input:
        if value.name in initializers:
            continue
        dims = value.type.tensor_type.shape.dim
        shapes[value.name] = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in dims)
    return shapes


def default_opset(model: onnx.ModelProto) -> int | None:
    for entry in model.opset_import:
        if entry.domain in STANDARD_DOMAINS:
            return int(entry.version)
    return None


def is_explicitly_quantized(model: onnx.ModelProto) -> bool:
    """True when the graph carries Q/DQ pairs, i.e. INT8 scales are already in the file."""
    return any(n.op_type in ("QuantizeLinear", "DequantizeLinear") and n.domain in STANDARD_DOMAINS
               for n in iter_nodes(model))


def constant_values(model: onnx.ModelProto) -> dict[str, "object"]:
    """Tensor name -> numpy value for everything known before run time: initializers of every graph
    (subgraphs included) and outputs of Constant nodes. Weights stored as external data are listed
    with value ``None`` (their presence is what matters when a restriction says "must be an initializer")."""
    from onnx import numpy_helper

    values: dict[str, object] = {}

    def add_initializers(graph: onnx.GraphProto) -> None:
        for init in graph.initializer:
            external = init.data_location == onnx.TensorProto.EXTERNAL
            values[init.name] = None if external else numpy_helper.to_array(init)
        for node in graph.node:
            for sub in _subgraphs(node):
                add_initializers(sub)

    add_initializers(model.graph)
    for node in iter_nodes(model):
        if node.op_type == "Constant" and node.domain in STANDARD_DOMAINS and node.output:
            value = next((a for a in node.attribute if a.name == "value"), None)
            values[node.output[0]] = numpy_helper.to_array(value.t) if value is not None else None
    return values
