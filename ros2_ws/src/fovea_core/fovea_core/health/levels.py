"""Health levels and a judgement (a level with the reasons for it)."""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum


class Level(IntEnum):
    """The values of fovea_msgs/msg/Health. ``severity`` orders them: UNKNOWN (not verified) ranks between
    DEGRADED (verified, usable with care) and UNRELIABLE (known bad)."""
    OK = 0
    DEGRADED = 1
    UNRELIABLE = 2
    UNKNOWN = 3

    @property
    def severity(self) -> int:
        return _SEVERITY[self]

    @classmethod
    def parse(cls, name: str) -> "Level":
        try:
            return cls[str(name).upper()]
        except KeyError:
            raise ValueError(f"{name!r} is not a health level ({', '.join(m.name.lower() for m in cls)})") from None


_SEVERITY = {Level.OK: 0, Level.DEGRADED: 1, Level.UNKNOWN: 2, Level.UNRELIABLE: 3}


def worse(a: Level, b: Level) -> Level:
    return a if a.severity >= b.severity else b


@dataclass
class Judgement:
    """A level and why; ``flag`` only ever makes it worse. ``reasons`` lists the worst reasons first."""
    flags: list[tuple[Level, str]] = field(default_factory=list)

    def flag(self, level: Level, reason: str) -> None:
        self.flags.append((level, reason))

    @property
    def level(self) -> Level:
        level = Level.OK
        for flagged, _ in self.flags:
            level = worse(level, flagged)
        return level

    @property
    def reasons(self) -> list[str]:
        ranked = sorted(self.flags, key=lambda f: -f[0].severity)  # stable: same-level reasons keep their order
        return [reason for level, reason in ranked if level != Level.OK]
