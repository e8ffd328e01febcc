"""Point cloud files (PLY, PCD) ⇄ numpy structured arrays with named fields (x, y, z, intensity, ...).

Only the vertex element of a PLY and the unorganised/organised point data of a PCD are read; list
properties and compressed PCD (``binary_compressed``) are refused with a clear error rather than guessed.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
    "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}


class CloudFileError(ValueError):
    """The file is not a point cloud this reader understands; the message says why."""


def read_cloud(path: str | Path) -> np.ndarray:
    """Read a .ply or .pcd file by its extension."""
    suffix = Path(path).suffix.lower()
    if suffix == ".ply":
        return read_ply(path)
    if suffix == ".pcd":
        return read_pcd(path)
    raise CloudFileError(f"{path}: unknown point cloud extension {suffix!r} (expected .ply or .pcd)")


def read_ply(path: str | Path) -> np.ndarray:
    with open(path, "rb") as f:
        if f.readline().strip() != b"ply":
            raise CloudFileError(f"{path}: not a PLY file")
        fmt, count, fields, in_vertex = None, None, [], False
        while True:
            line = f.readline()
            if not line:
                raise CloudFileError(f"{path}: header has no end_header")
            words = line.decode("ascii", "replace").split()
            if not words or words[0] in ("comment", "obj_info"):
                continue
            if words[0] == "end_header":
                break
            if words[0] == "format":
                fmt = words[1]
            elif words[0] == "element":
                in_vertex = words[1] == "vertex"
                if in_vertex:
                    count = int(words[2])
                elif count is not None and not fields:
                    raise CloudFileError(f"{path}: vertex element has no properties")
            elif words[0] == "property" and in_vertex:
                if words[1] == "list":
                    raise CloudFileError(f"{path}: list properties in the vertex element are not supported")
                if words[1] not in _PLY_TYPES:
                    raise CloudFileError(f"{path}: unknown PLY type {words[1]!r}")
                fields.append((words[2], _PLY_TYPES[words[1]]))
        if count is None or not fields:
            raise CloudFileError(f"{path}: no vertex element")
        if fmt == "ascii":
            values = np.loadtxt(f, max_rows=count, ndmin=2)
            out = np.zeros(count, dtype=[(n, t) for n, t in fields])
            for i, (name, _) in enumerate(fields):
                out[name] = values[:, i]
            return out
        order = {"binary_little_endian": "<", "binary_big_endian": ">"}.get(fmt)
        if order is None:
            raise CloudFileError(f"{path}: unknown PLY format {fmt!r}")
        dtype = np.dtype([(n, order + t) for n, t in fields])
        data = f.read(dtype.itemsize * count)
        if len(data) < dtype.itemsize * count:
            raise CloudFileError(f"{path}: truncated: {len(data)} bytes for {count} vertices of {dtype.itemsize}")
        return np.frombuffer(data, dtype=dtype).astype(dtype.newbyteorder("="))


def read_pcd(path: str | Path) -> np.ndarray:
    header: dict[str, list[str]] = {}
    with open(path, "rb") as f:
        while True:
            line = f.readline()
            if not line:
                raise CloudFileError(f"{path}: header has no DATA line")
            words = line.decode("ascii", "replace").split()
            if not words or words[0].startswith("#"):
                continue
            header[words[0].upper()] = words[1:]
            if words[0].upper() == "DATA":
                break
        try:
            names, sizes, types = header["FIELDS"], header["SIZE"], header["TYPE"]
            counts = header.get("COUNT", ["1"] * len(names))
            points = int(header["POINTS"][0])
        except KeyError as exc:
            raise CloudFileError(f"{path}: PCD header lacks {exc}") from exc
        kinds = {"F": "f", "I": "i", "U": "u"}
        dtype = np.dtype([(n, f"<{kinds[t]}{s}", (int(c),)) if int(c) > 1 else (n, f"<{kinds[t]}{s}")
                          for n, s, t, c in zip(names, sizes, types, counts)])
        mode = header["DATA"][0]
        if mode == "ascii":
            values = np.loadtxt(f, max_rows=points, ndmin=2)
            if any(int(c) > 1 for c in counts):
                raise CloudFileError(f"{path}: ascii PCD with COUNT > 1 is not supported")
            out = np.zeros(points, dtype=dtype)
            for i, name in enumerate(names):
                out[name] = values[:, i]
            return out
        if mode == "binary":
            data = f.read(dtype.itemsize * points)
            if len(data) < dtype.itemsize * points:
                raise CloudFileError(f"{path}: truncated binary PCD")
            return np.frombuffer(data, dtype=dtype).copy()
        raise CloudFileError(f"{path}: PCD DATA {mode!r} is not supported (use ascii or binary)")


def write_ply(path: str | Path, points: np.ndarray) -> None:
    """Binary little-endian PLY with one property per (scalar) field."""
    reverse = {v: k for k, v in _PLY_TYPES.items() if k in ("char", "uchar", "short", "ushort", "int", "uint",
                                                           "float", "double")}
    names = points.dtype.names or ()
    lines = ["ply", "format binary_little_endian 1.0", f"element vertex {len(points)}"]
    for name in names:
        code = points.dtype[name].str.lstrip("<>=|")
        if code not in reverse:
            raise CloudFileError(f"field {name!r} of dtype {points.dtype[name]} has no PLY type")
        lines.append(f"property {reverse[code]} {name}")
    lines.append("end_header")
    packed = points.astype(np.dtype([(n, "<" + points.dtype[n].str.lstrip("<>=|")) for n in names]))
    with open(path, "wb") as f:
        f.write(("\n".join(lines) + "\n").encode("ascii"))
        f.write(packed.tobytes())
