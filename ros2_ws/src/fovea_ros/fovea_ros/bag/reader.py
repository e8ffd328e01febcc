"""Read rosbag2 bags (sqlite3 versions 4..9, MCAP) as raw CDR messages, with a typestore to decode them.

Replay never decodes: it hands the raw bytes to the middleware. Decoding is for inspection and tests, and uses a
typestore that knows the Jazzy standard types, the compat ``.msg`` folders and whatever definitions the bag
stores itself (version 5 sqlite3 bags store none; their custom types need a compat folder).
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from rosbags.interfaces import Connection, Qos
import yaml
from rosbags.rosbag2 import Reader

from fovea_ros.bag.typestore import build_typestore, compat_types, types_from_bag_definition


class BagMessage(NamedTuple):
    topic: str
    msgtype: str
    log_time_ns: int
    data: bytes  # serialized CDR, encapsulation header included


@dataclass(frozen=True)
class BagTopic:
    name: str
    msgtype: str
    message_count: int
    serialization_format: str
    offered_qos: tuple[Qos, ...]


class BagReader:
    """A rosbag2 directory, or a bare ``.mcap`` / ``.db3`` file, opened for reading.

    Use as a context manager. ``compat_dirs`` overrides the default compat ``.msg`` folders (None: defaults).
    """

    def __init__(self, path: str | Path, compat_dirs: Iterable[str | Path] | None = None) -> None:
        self.path = Path(path)
        self._compat_dirs = compat_dirs
        self._reader = Reader(self.path)
        self._typestore = None

    def __enter__(self) -> BagReader:
        self._reader.open()
        return self

    def __exit__(self, *exc_info) -> None:
        self._reader.close()

    # --- metadata -----------------------------------------------------------------------------------------
    @property
    def storage_identifier(self) -> str:
        if self.path.is_dir():
            return str(self._metadata().get("storage_identifier", "unknown"))
        return {".mcap": "mcap", ".db3": "sqlite3"}.get(self.path.suffix, "unknown")

    @property
    def version(self) -> int | None:
        """rosbag2 metadata version (None for a bare storage file)."""
        return self._metadata().get("version") if self.path.is_dir() else None

    def _metadata(self) -> dict:
        document = yaml.safe_load((self.path / "metadata.yaml").read_text())
        return document["rosbag2_bagfile_information"]

    @property
    def message_count(self) -> int:
        return self._reader.message_count

    @property
    def start_ns(self) -> int:
        return self._reader.start_time if self._reader.message_count else 0

    @property
    def end_ns(self) -> int:
        """Log time of the last message (rosbags reports one past it)."""
        return self._reader.end_time - 1 if self._reader.message_count else 0

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns

    @property
    def topics(self) -> list[BagTopic]:
        """One entry per topic; several connections of one topic (e.g. several publishers) are merged."""
        merged: dict[str, BagTopic] = {}
        for conn in self._reader.connections:
            qos = tuple(getattr(conn.ext, "offered_qos_profiles", ()) or ())
            fmt = getattr(conn.ext, "serialization_format", "cdr")
            if conn.topic in merged:
                prev = merged[conn.topic]
                merged[conn.topic] = BagTopic(conn.topic, prev.msgtype, prev.message_count + conn.msgcount,
                                              fmt, prev.offered_qos + qos)
            else:
                merged[conn.topic] = BagTopic(conn.topic, conn.msgtype, conn.msgcount, fmt, qos)
        return sorted(merged.values(), key=lambda t: t.name)

    # --- messages -----------------------------------------------------------------------------------------
    def _connections(self, topics: Iterable[str] | None) -> list[Connection]:
        if topics is None:
            return list(self._reader.connections)
        wanted = set(topics)
        return [c for c in self._reader.connections if c.topic in wanted]

    def messages(self, topics: Iterable[str] | None = None, start_ns: int | None = None,
                 stop_ns: int | None = None) -> Iterator[BagMessage]:
        """Messages in log-time order; ``topics=None`` means all, ``[]`` means none."""
        connections = self._connections(topics)
        if not connections:
            return
        for conn, log_time, data in self._reader.messages(connections, start=start_ns, stop=stop_ns):
            yield BagMessage(conn.topic, conn.msgtype, log_time, bytes(data))

    # --- decoding -----------------------------------------------------------------------------------------
    @property
    def typestore(self):
        """Jazzy types + compat folders + the bag's own definitions (built on first use)."""
        if self._typestore is None:
            stored: dict = {}
            for conn in self._reader.connections:
                stored.update(types_from_bag_definition(conn.msgtype, conn.msgdef.format, conn.msgdef.data))
            self._typestore = build_typestore(compat_types(self._compat_dirs), stored)
        return self._typestore

    def can_decode(self, msgtype: str) -> bool:
        return msgtype in self.typestore.fielddefs

    def decode(self, message: BagMessage):
        """A rosbags dataclass instance of the message (raises KeyError-like errors for unknown types)."""
        return self.typestore.deserialize_cdr(message.data, message.msgtype)
