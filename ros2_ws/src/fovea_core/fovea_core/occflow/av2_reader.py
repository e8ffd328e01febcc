"""Reader of the Argoverse 2 files Fovea uses, with ``pyarrow`` (the ``av2`` package would pull OpenCV,
kornia, numba, polars and more into the environment for the few tables read here).

- Sensor log (``sensor/<split>/<log_id>/``): ego poses (``city_SE3_egovehicle.feather``), tracked 3D
  cuboids (``annotations.feather``, boxes in the ego frame of their timestamp), lidar sweeps
  (``sensors/lidar/<ns>.feather``, x/y/z in the ego frame), vector map (``map/log_map_archive_*.json``).
- Motion-forecasting scenario (``scenario_<id>.parquet`` + ``log_map_archive_<id>.json``): 10 Hz track
  states in the city frame, the ego as track ``AV``; no box sizes, so class-typical sizes are used
  (``SCENARIO_SIZES``, our choice).

Data: Argoverse 2, CC BY-NC-SA 4.0 (Argo AI); see ../shared/data/occflow/av2/PROVENANCE.md.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fovea_core.geometry.transforms import invert_rigid, quaternion_to_matrix
from fovea_core.paths import shared_data_dir

from .agents import AgentTracks
from .vector_map import VectorMap, read_av2_map

# AV2 sensor-dataset categories -> CLASS_NAMES index (vehicle 0, pedestrian 1, cyclist 2). Static objects
# (bollards, cones, signs, ...) are not agents and are left out.
AV2_CATEGORY_CLASS = {
    **dict.fromkeys(["REGULAR_VEHICLE", "LARGE_VEHICLE", "BUS", "BOX_TRUCK", "TRUCK", "TRUCK_CAB",
                     "VEHICULAR_TRAILER", "ARTICULATED_BUS", "SCHOOL_BUS", "RAILED_VEHICLE"], 0),
    **dict.fromkeys(["PEDESTRIAN", "STROLLER", "WHEELCHAIR", "OFFICIAL_SIGNALER"], 1),
    **dict.fromkeys(["BICYCLE", "BICYCLIST", "MOTORCYCLE", "MOTORCYCLIST", "WHEELED_RIDER"], 2),
}
SCENARIO_TYPE_CLASS = {"vehicle": 0, "bus": 0, "pedestrian": 1, "cyclist": 2, "motorcyclist": 2}
SCENARIO_SIZES = {"vehicle": (4.6, 1.9), "bus": (12.0, 2.6), "pedestrian": (0.7, 0.7), "cyclist": (1.9, 0.7),
                  "motorcyclist": (2.1, 0.8)}


def default_root() -> Path:
    return shared_data_dir() / "occflow" / "av2"


def default_log_dir() -> Path:
    return default_root() / "sensor" / "val" / "7fab2350-7eaf-3b7e-a39d-6937a4c1bede"


def default_scenario_dir() -> Path:
    return default_root() / "forecasting_scenarios" / "0a1e6f0a-1817-4a98-b02e-db8c9327d151"


def _table(path: Path) -> dict[str, np.ndarray]:
    import pyarrow.feather as feather
    import pyarrow.parquet as parquet

    table = parquet.read_table(path) if path.suffix == ".parquet" else feather.read_table(path)
    return {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names}


def _se3(qw, qx, qy, qz, tx, ty, tz) -> np.ndarray:
    """(n, 4, 4) from AV2's column layout (scalar-first quaternion)."""
    T = np.tile(np.eye(4), (len(qw), 1, 1))
    for i in range(len(qw)):
        T[i, :3, :3] = quaternion_to_matrix([qx[i], qy[i], qz[i], qw[i]])
    T[:, :3, 3] = np.stack([tx, ty, tz], 1)
    return T


def yaw_of(R: np.ndarray) -> np.ndarray:
    return np.arctan2(R[..., 1, 0], R[..., 0, 0])


@dataclass
class Av2SensorLog:
    root: Path
    pose_stamps: np.ndarray       # (P,) int64 ns
    city_from_ego: np.ndarray     # (P, 4, 4)
    boxes: dict[str, np.ndarray]  # annotation columns
    box_stamps: np.ndarray        # sorted unique annotation stamps (~10 Hz)
    sweep_stamps: list[int]
    map_city: VectorMap

    @classmethod
    def open(cls, root: str | Path | None = None) -> "Av2SensorLog":
        root = Path(root) if root else default_log_dir()
        poses = _table(root / "city_SE3_egovehicle.feather")
        order = np.argsort(poses["timestamp_ns"])
        poses = {k: v[order] for k, v in poses.items()}
        boxes = _table(root / "annotations.feather")
        sweeps = sorted(int(p.stem) for p in (root / "sensors" / "lidar").glob("*.feather"))
        map_file = next((root / "map").glob("log_map_archive_*.json"))
        return cls(root, poses["timestamp_ns"].astype(np.int64),
                   _se3(poses["qw"], poses["qx"], poses["qy"], poses["qz"], poses["tx_m"], poses["ty_m"], poses["tz_m"]),
                   boxes, np.unique(boxes["timestamp_ns"]).astype(np.int64), sweeps, read_av2_map(map_file))

    def pose(self, stamp_ns: int) -> np.ndarray:
        """city <- ego at the pose sample nearest ``stamp_ns`` (poses run at ~170 Hz; every annotation and
        sweep stamp has an exact pose)."""
        i = int(np.argmin(np.abs(self.pose_stamps - int(stamp_ns))))
        return self.city_from_ego[i]

    def read_sweep(self, stamp_ns: int) -> np.ndarray:
        """(N, 3) float64 points in the ego frame at ``stamp_ns`` (AV2 stores them motion-compensated)."""
        cols = _table(self.root / "sensors" / "lidar" / f"{int(stamp_ns)}.feather")
        return np.stack([cols["x"], cols["y"], cols["z"]], 1).astype(np.float64)

    def sweep_in(self, stamp_ns: int, reference_ns: int) -> np.ndarray:
        """A sweep moved into the ego frame at ``reference_ns`` (ego-motion compensation through the poses)."""
        T = invert_rigid(self.pose(reference_ns)) @ self.pose(stamp_ns)
        pts = self.read_sweep(stamp_ns)
        return pts @ T[:3, :3].T + T[:3, 3]

    def tracks(self, current_ns: int, past: int, future: int) -> AgentTracks:
        """The tracked agents over the ``past`` frames before and ``future`` frames after the annotation
        frame ``current_ns``, in the ego frame at ``current_ns``; frames outside the log are invalid."""
        k0 = int(np.searchsorted(self.box_stamps, current_ns))
        if k0 >= len(self.box_stamps) or self.box_stamps[k0] != current_ns:
            raise ValueError(f"{current_ns} is not an annotation timestamp of {self.root.name}")
        cls_of = np.array([AV2_CATEGORY_CLASS.get(c, -1) for c in self.boxes["category"]])
        keep = cls_of >= 0
        ids = np.unique(self.boxes["track_uuid"][keep])
        index = {u: i for i, u in enumerate(ids)}
        F, A = past + future + 1, len(ids)
        xy, yaw, valid = np.zeros((F, A, 2)), np.zeros((F, A)), np.zeros((F, A), bool)
        sizes = [[] for _ in range(A)]
        cls = np.zeros(A, np.int64)
        ego_from_city = invert_rigid(self.pose(current_ns))
        frame_of = {int(s): k - k0 + past for k, s in enumerate(self.box_stamps)}
        b = self.boxes
        rows = np.nonzero(keep)[0]
        for stamp in np.unique(b["timestamp_ns"][rows]):
            f = frame_of[int(stamp)]
            if not 0 <= f < F:
                continue
            sel = rows[b["timestamp_ns"][rows] == stamp]
            T = ego_from_city @ self.pose(int(stamp))
            box = _se3(b["qw"][sel], b["qx"][sel], b["qy"][sel], b["qz"][sel], b["tx_m"][sel], b["ty_m"][sel], b["tz_m"][sel])
            box = T[None] @ box
            for j, r in enumerate(sel):
                a = index[b["track_uuid"][r]]
                xy[f, a], yaw[f, a], valid[f, a] = box[j, :2, 3], yaw_of(box[j, :3, :3]), True
                sizes[a].append((b["length_m"][r], b["width_m"][r]))
                cls[a] = cls_of[r]
        size = np.array([np.median(s, 0) if s else (0.0, 0.0) for s in sizes]).reshape(A, 2)
        return AgentTracks(xy, yaw, valid, size, cls, current=past)

    def map_in(self, stamp_ns: int) -> VectorMap:
        return self.map_city.transformed(invert_rigid(self.pose(stamp_ns)))


@dataclass
class Av2Scenario:
    root: Path
    xy: np.ndarray         # (T, A, 2) city frame
    heading: np.ndarray    # (T, A)
    valid: np.ndarray      # (T, A)
    types: list[str]       # per agent
    ego_xy: np.ndarray     # (T, 2)
    ego_heading: np.ndarray
    map_city: VectorMap
    observed_steps: int

    @classmethod
    def open(cls, root: str | Path | None = None) -> "Av2Scenario":
        root = Path(root) if root else default_scenario_dir()
        t = _table(next(root.glob("scenario_*.parquet")))
        steps = int(t["timestep"].max()) + 1
        ego = t["track_id"] == "AV"
        ego_xy, ego_heading = np.zeros((steps, 2)), np.zeros(steps)
        ego_xy[t["timestep"][ego]] = np.stack([t["position_x"][ego], t["position_y"][ego]], 1)
        ego_heading[t["timestep"][ego]] = t["heading"][ego]
        agents = [(tid, typ) for tid, typ in dict(zip(t["track_id"], t["object_type"])).items()
                  if tid != "AV" and typ in SCENARIO_TYPE_CLASS]
        index = {tid: i for i, (tid, _) in enumerate(agents)}
        xy, heading = np.zeros((steps, len(agents), 2)), np.zeros((steps, len(agents)))
        valid = np.zeros((steps, len(agents)), bool)
        for r in range(len(t["track_id"])):
            a = index.get(t["track_id"][r])
            if a is not None:
                s = t["timestep"][r]
                xy[s, a] = (t["position_x"][r], t["position_y"][r])
                heading[s, a], valid[s, a] = t["heading"][r], True
        map_file = next(root.glob("log_map_archive_*.json"))
        return cls(root, xy, heading, valid, [typ for _, typ in agents], ego_xy, ego_heading,
                   read_av2_map(map_file), int(t["observed"].sum() and np.max(t["timestep"][t["observed"]]) + 1))

    def ego_from_city(self, step: int) -> np.ndarray:
        c, s = np.cos(self.ego_heading[step]), np.sin(self.ego_heading[step])
        R = np.array([[c, -s], [s, c]])
        T = np.eye(3)
        T[:2, :2], T[:2, 2] = R.T, -R.T @ self.ego_xy[step]
        return T

    def tracks(self, current_step: int, past: int, future: int) -> AgentTracks:
        F, A = past + future + 1, self.xy.shape[1]
        T = self.ego_from_city(current_step)
        xy, yaw, valid = np.zeros((F, A, 2)), np.zeros((F, A)), np.zeros((F, A), bool)
        for f in range(F):
            s = current_step - past + f
            if 0 <= s < self.xy.shape[0]:
                xy[f] = self.xy[s] @ T[:2, :2].T + T[:2, 2]
                yaw[f] = self.heading[s] - self.ego_heading[current_step]
                valid[f] = self.valid[s]
        size = np.array([SCENARIO_SIZES[t] for t in self.types]).reshape(A, 2)
        cls = np.array([SCENARIO_TYPE_CLASS[t] for t in self.types], np.int64)
        return AgentTracks(xy, yaw, valid, size, cls, current=past)

    def map_in(self, step: int) -> VectorMap:
        return self.map_city.transformed(self.ego_from_city(step))
