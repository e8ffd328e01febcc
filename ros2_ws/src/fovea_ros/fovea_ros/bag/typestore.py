"""Message definitions for decoding bags and for writing self-describing ones.

Three sources feed one ``rosbags`` typestore, later sources winning on conflict because they describe the bag
at hand more precisely:

1. the ROS 2 Jazzy standard types bundled with rosbags,
2. ``.msg`` files from compat folders laid out as ``<folder>/<package>/msg/<Type>.msg`` (types we need before
   their Python message packages exist, e.g. ``event_camera_msgs/msg/EventPacket``),
3. the definitions stored in the bag itself (MCAP schemas, sqlite3 bags from version 8 on).

Types that only exist as installed Python message classes (``fovea_msgs`` and friends) are described from the
classes' own field tables, so the recorder can store their definitions without any ``.msg`` file at hand.
"""
from __future__ import annotations

import importlib
import os
import re
from collections.abc import Iterable
from pathlib import Path

from rosbags.interfaces import MessageDefinitionFormat
from rosbags.typesys import Stores, get_types_from_idl, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

# Environment variable with extra compat folders (os.pathsep separated), searched before the repository one.
COMPAT_MSGS_ENV = "FOVEA_COMPAT_MSGS"
_IDL_SEPARATOR = "=" * 80 + "\n"


def default_compat_dirs() -> list[Path]:
    """Compat folders: ``$FOVEA_COMPAT_MSGS`` entries, ``$FOVEA_ROOT/compat_msgs``, the first ``compat_msgs/``
    above this package (the repository's, when running from a checkout or a colcon build of it)."""
    dirs = [Path(p) for p in os.environ.get(COMPAT_MSGS_ENV, "").split(os.pathsep) if p]
    if os.environ.get("FOVEA_ROOT"):  # set by env.sh
        dirs.append(Path(os.environ["FOVEA_ROOT"]) / "compat_msgs")
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "compat_msgs"
        if candidate.is_dir():
            dirs.append(candidate)
            break
    unique = dict.fromkeys(d.resolve() for d in dirs if d.is_dir())
    return list(unique)


def load_msg_folder(folder: str | Path) -> dict:
    """Parse every ``<package>/msg/<Type>.msg`` under ``folder`` into a rosbags types dict."""
    types: dict = {}
    for msg_file in sorted(Path(folder).glob("*/msg/*.msg")):
        typename = f"{msg_file.parent.parent.name}/msg/{msg_file.stem}"
        types.update(get_types_from_msg(msg_file.read_text(), typename))
    return types


def types_from_bag_definition(msgtype: str, fmt: MessageDefinitionFormat, text: str) -> dict:
    """Parse one connection's stored definition (``.msg`` with its dependencies, or IDL)."""
    if fmt == MessageDefinitionFormat.MSG:
        return get_types_from_msg(text, msgtype)
    if fmt == MessageDefinitionFormat.IDL:
        types: dict = {}
        if text.startswith(_IDL_SEPARATOR + "IDL: "):
            for section in text.split(_IDL_SEPARATOR)[1:]:
                types.update(get_types_from_idl(section.split("\n", 1)[1]))
        else:
            types.update(get_types_from_idl(text))
        return types
    return {}


def build_typestore(*type_dicts: dict) -> Typestore:
    """Jazzy standard types overlaid with ``type_dicts`` in order (a later definition of a name wins)."""
    merged = dict(get_typestore(Stores.ROS2_JAZZY).fielddefs)
    for types in type_dicts:
        merged.update(types)
    store = get_typestore(Stores.EMPTY)
    store.register(merged)
    return store


def compat_types(dirs: Iterable[str | Path] | None = None) -> dict:
    """All types from the given compat folders (default: :func:`default_compat_dirs`)."""
    types: dict = {}
    for folder in default_compat_dirs() if dirs is None else dirs:
        types.update(load_msg_folder(folder))
    return types


# --- definitions from installed Python message classes -------------------------------------------------------

_SEQUENCE = re.compile(r"^sequence<(?P<item>.+?)(?:,\s*(?P<bound>\d+))?>$")
_BOUNDED_STRING = re.compile(r"^(w?string)<(\d+)>$")
_PRIMITIVE_RENAMES = {"boolean": "bool", "octet": "byte", "double": "float64", "float": "float32"}


def import_message_class(msgtype: str):
    """The Python class for ``pkg/msg/Name`` (or ``pkg/Name``), or None when its package is not importable."""
    try:
        from rosidl_runtime_py.utilities import get_message  # type: ignore[import-not-found]
    except ImportError:
        get_message = None
    if get_message is not None:
        try:
            return get_message(msgtype)
        except (AttributeError, ModuleNotFoundError, ValueError):
            return None
    package, _, name = msgtype.replace("/msg/", "/").partition("/")
    try:
        return getattr(importlib.import_module(f"{package}.msg"), name)
    except (ImportError, AttributeError):
        return None


def _msg_field_type(rosidl_type: str) -> tuple[str, str | None]:
    """Translate a rosidl field type string to ``.msg`` syntax; also return the nested message type, if any."""
    match = _SEQUENCE.match(rosidl_type)
    suffix = ""
    if match:
        rosidl_type = match["item"].strip()
        suffix = f"[<={match['bound']}]" if match["bound"] else "[]"
    elif (array := re.match(r"^(.*)\[(\d+)\]$", rosidl_type)):
        rosidl_type, suffix = array[1], f"[{array[2]}]"
    base = _BOUNDED_STRING.sub(r"\1<=\2", _PRIMITIVE_RENAMES.get(rosidl_type, rosidl_type))
    nested = None
    if "/" in base:
        package, name = base.split("/")[0], base.split("/")[-1]
        nested = f"{package}/msg/{name}"
        base = f"{package}/{name}"
    return base + suffix, nested


def types_from_python_class(msgtype: str) -> dict:
    """Describe ``msgtype`` and every message it nests from the installed Python classes (empty if unknown).

    The classes keep no constants and report ``char`` as ``uint8``; both leave the wire format unchanged.
    """
    types: dict = {}
    pending = [msgtype]
    while pending:
        current = pending.pop()
        if current in types:
            continue
        cls = import_message_class(current)
        if cls is None:
            return {}
        lines = []
        for field, rosidl_type in cls.get_fields_and_field_types().items():
            msg_type, nested = _msg_field_type(rosidl_type)
            lines.append(f"{msg_type} {field}")
            if nested:
                pending.append(nested)
        types.update(get_types_from_msg("\n".join(lines) + "\n", current))
    return types
