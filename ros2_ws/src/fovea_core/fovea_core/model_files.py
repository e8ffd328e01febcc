"""Opening trained model files: one checked path for every node, one clear line when a file is bad.

A model file reaches a robot by copying, syncing or an interrupted download, so it can be missing, empty,
cut short, the wrong file, or something planted. Each loader below checks, in this order, and stops at the
first problem with a :class:`ModelFileError` whose text is one line naming the parameter (when the caller
gives it), the file and what is wrong:

1. the path exists and is a regular file, readable, not empty and at least as large as the smallest valid file
   of its format;
2. format magic: a torch state file is a zip archive (``PK\\x03\\x04`` and an end-of-archive record, so a cut
   short copy is caught before torch reads it); a plain pickle is refused outright (model files are data and
   Fovea never unpickles); an ONNX file is a protobuf ``ModelProto`` that parses, passes ``onnx.checker`` and
   has a graph with inputs and outputs;
3. ``sha256`` against ``<file>.sha256`` beside it, when one is there (``sha256sum`` format, as the exporter
   writes it);
4. contents: torch files are read with ``torch.load(..., weights_only=True)`` (a file that holds anything but
   tensors and plain containers is refused: nothing in it runs); required top-level keys; a state dict's keys
   and tensor shapes against the module it is loaded into (:func:`check_state_dict`); ONNX input names.

The text never suggests loading with ``weights_only=False``: a file that needs it is not a model file.

API (``fovea_core.model_files``)::

    check_model_file(path, fmt, parameter=None) -> Path            # steps 1-3 only
    load_torch_file(path, parameter=None, required_keys=()) -> dict
    check_state_dict(state, module, path, parameter=None, key=None) # then module.load_state_dict(state)
    load_onnx_file(path, parameter=None, input_names=None) -> onnx.ModelProto
    load_json_file(path, parameter=None, required_keys=()) -> dict
    write_sha256(path) -> Path                                      # for exporters, after the last write
"""
from __future__ import annotations

import json
import os
import re
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

FORMATS = ("torch", "onnx", "json")
# Below these sizes no valid file of the format exists (an empty zip archive alone is 22 bytes; the smallest
# ONNX model with a graph, an input and an output is a few dozen bytes).
MIN_BYTES = {"torch": 22, "onnx": 16, "json": 2}
_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTOCOL = 0x80  # first byte of a pickle written with protocol 2 or later (torch's legacy format too)
_MAX_PROBLEM_CHARS = 240


class ModelFileError(ValueError):
    """A model file that cannot be used; ``str()`` is one line: parameter, file, what is wrong."""

    def __init__(self, path: str | os.PathLike, problem: str, parameter: str | None = None) -> None:
        self.path = Path(path)
        self.problem = _one_line(problem)
        self.parameter = parameter
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"parameter '{self.parameter}': " if self.parameter else ""
        return f"{where}model file {self.path}: {self.problem}"


class ModelFileMissingError(ModelFileError, FileNotFoundError):
    """The path does not exist (also a ``FileNotFoundError``, for callers that ask "is it there?")."""


def _one_line(text: str) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= _MAX_PROBLEM_CHARS else line[:_MAX_PROBLEM_CHARS - 1] + "…"


def _size(n: int) -> str:
    return f"{n} bytes" if n < 10_000 else f"{n / 1e6:.1f} MB"


def check_model_file(path: str | os.PathLike, fmt: str, parameter: str | None = None) -> Path:
    """Existence, type, size, format magic and the ``.sha256`` beside it; returns the path."""
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {FORMATS}, got {fmt!r}")
    path = Path(path)

    def fail(problem: str) -> ModelFileError:
        return ModelFileError(path, problem, parameter)

    if not path.exists():
        parent = path.parent
        raise ModelFileMissingError(path, "does not exist" + ("" if parent.is_dir() else
                                                           f" (nor does its folder {parent})"), parameter)
    if not path.is_file():
        raise fail("is a directory, not a file" if path.is_dir() else "is not a regular file")
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as exc:
        raise fail(f"cannot be read ({exc.strerror or exc})") from None
    if size == 0:
        raise fail("is empty (0 bytes)")
    if size < MIN_BYTES[fmt]:
        raise fail(f"is {_size(size)}, too small for a {fmt} model file")
    if fmt == "torch":
        _check_torch_magic(path, head, fail)
    elif fmt == "onnx":
        if head.startswith(_ZIP_MAGIC):
            raise fail("is a zip archive (a torch state file?), not an ONNX model")
        if head[0] == _PICKLE_PROTOCOL:
            raise fail("is a Python pickle, not an ONNX model")
    _check_sha256(path, fail)
    return path


def _check_torch_magic(path: Path, head: bytes, fail) -> None:
    if head[0] == _PICKLE_PROTOCOL:
        raise fail("is a Python pickle, not a torch zip archive; Fovea never unpickles model files "
                   "(save a state dict with torch.save, which writes a zip archive)")
    if not head.startswith(_ZIP_MAGIC):
        raise fail(f"is not a torch state file (a torch file is a zip archive starting with PK\\x03\\x04; "
                   f"this one starts with {head[:4].hex(' ')})")
    if not zipfile.is_zipfile(path):
        raise fail(f"is a damaged zip archive (no end-of-archive record: cut short? {_size(path.stat().st_size)})")


def write_sha256(path: str | os.PathLike) -> Path:
    """Write ``<file>.sha256`` (``sha256sum -c`` format) beside ``path``; call it after the file's last change."""
    from fovea_core.backends.engine_cache import sha256_file

    path = Path(path)
    sidecar = path.with_name(path.name + ".sha256")
    sidecar.write_text(f"{sha256_file(path)}  {path.name}\n")
    return sidecar


def _check_sha256(path: Path, fail) -> None:
    sidecar = path.with_name(path.name + ".sha256")
    if not sidecar.is_file():
        return
    from fovea_core.backends.engine_cache import sha256_file

    fields = sidecar.read_text(encoding="utf-8", errors="replace").split()
    expected = fields[0].lower() if fields else ""
    if not re.fullmatch(r"[0-9a-f]{64}", expected):
        raise fail(f"{sidecar.name} beside it holds no sha256 digest")
    actual = sha256_file(path)
    if actual != expected:
        raise fail(f"sha256 {actual[:16]}… does not match {sidecar.name} ({expected[:16]}…): the file was changed "
                   "or damaged after it was exported")


# ------------------------------------------------------------------------------------------------------- torch


def _refusal(exc: BaseException) -> str:
    """What torch's weights-only unpickler refused, without its advice to turn the protection off."""
    text = str(exc)
    found = re.search(r"(Unsupported (?:global|operand)[^.\n]*)", text)
    if found:
        return found.group(1).strip().rstrip(":")
    first = next((line.strip() for line in text.splitlines() if line.strip() and "weights_only" not in line), "")
    return first or type(exc).__name__


def load_torch_file(path: str | os.PathLike, parameter: str | None = None,
                    required_keys: Iterable[str] = ()) -> dict:
    """The dict saved by ``torch.save`` in a checked file, read with ``weights_only=True``."""
    import pickle

    import torch

    path = check_model_file(path, "torch", parameter)
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ModelFileError(path, "refused: it holds Python objects, not only tensors and plain containers "
                             f"({_refusal(exc)}); a model file must be data", parameter) from None
    except Exception as exc:  # torch's archive reader raises RuntimeError/EOFError/KeyError... for damaged files
        raise ModelFileError(path, f"is a damaged torch archive ({type(exc).__name__}: {_refusal(exc)})",
                             parameter) from None
    if not isinstance(blob, Mapping):
        raise ModelFileError(path, f"holds a {type(blob).__name__}, not a dict of tensors", parameter)
    missing = [k for k in required_keys if k not in blob]
    if missing:
        raise ModelFileError(path, f"has no key(s) {missing} (it has {sorted(map(str, blob))[:8]}): not a file "
                             "this loader wrote", parameter)
    return dict(blob)


def check_state_dict(state: Any, module: Any, path: str | os.PathLike, parameter: str | None = None,
                     key: str | None = None) -> None:
    """``state`` has exactly ``module``'s parameter/buffer names, each a tensor of the same shape.

    ``key`` names where the state dict sits inside the file (for the message), e.g. ``"state_dict"``.
    """
    import torch

    where = f"'{key}' " if key else ""
    if not isinstance(state, Mapping):
        raise ModelFileError(path, f"{where}is a {type(state).__name__}, not a state dict", parameter)
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[:2]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[:2]})")
        raise ModelFileError(path, f"state dict {where}does not match {type(module).__name__}: "
                             f"{'; '.join(parts)} of {len(expected)} tensors", parameter)
    for name, want in expected.items():
        got = state[name]
        if not isinstance(got, torch.Tensor):
            raise ModelFileError(path, f"state dict {where}entry {name!r} is a {type(got).__name__}, not a tensor",
                                 parameter)
        if tuple(got.shape) != tuple(want.shape):
            raise ModelFileError(path, f"state dict {where}entry {name!r} has shape {tuple(got.shape)}, "
                                 f"{type(module).__name__} needs {tuple(want.shape)} (trained with another "
                                 "configuration?)", parameter)


# -------------------------------------------------------------------------------------------------------- onnx


def load_onnx_file(path: str | os.PathLike, parameter: str | None = None,
                   input_names: Iterable[str] | None = None):
    """The parsed and checked ``onnx.ModelProto`` of a checked file (weights not loaded from external data)."""
    import onnx
    from google.protobuf.message import DecodeError

    path = check_model_file(path, "onnx", parameter)
    try:
        model = onnx.load(os.fspath(path), load_external_data=False)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise ModelFileError(path, f"is not a readable ONNX model (protobuf: {_one_line(exc) or 'parse error'})",
                             parameter) from None
    graph = model.graph
    if model.ir_version <= 0 or not model.opset_import or not graph.node or not graph.input or not graph.output:
        raise ModelFileError(path, "is not an ONNX model (no IR version, opset, nodes, inputs or outputs; cut short "
                             "or another file?)", parameter)
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise ModelFileError(path, f"is an invalid ONNX model ({_one_line(exc).split(' ==> ')[0]})",
                             parameter) from None
    if input_names is not None:
        have = [i.name for i in graph.input]
        missing = [n for n in input_names if n not in have]
        if missing:
            raise ModelFileError(path, f"has no input(s) {missing} (its inputs are {have}): another model?", parameter)
    return model


# -------------------------------------------------------------------------------------------------------- json


def load_json_file(path: str | os.PathLike, parameter: str | None = None,
                   required_keys: Iterable[str] = ()) -> dict:
    """A checked JSON object (a model's configuration file)."""
    path = check_model_file(path, "json", parameter)
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(path, f"is not valid JSON ({_one_line(exc)})", parameter) from None
    if not isinstance(value, dict):
        raise ModelFileError(path, f"holds a JSON {type(value).__name__}, not an object", parameter)
    missing = [k for k in required_keys if k not in value]
    if missing:
        raise ModelFileError(path, f"has no key(s) {missing}", parameter)
    return value
