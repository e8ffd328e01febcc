"""Run a trained TPVFormer on a camera set through any Fovea backend (what the ROS node calls).

Inputs are plain arrays: RGB images (any size; resized to the model's), their intrinsics, camera-to-base
transforms and optional query points in base_link. Outputs: voxel labels + confidence over the model's grid
and per-point labels + confidence. The model configuration travels with the model file: inside the ONNX
metadata (key ``tpv_config``) or inside the checkpoint.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import TPVConfig
from .data import IMAGE_MEAN, IMAGE_STD
from .projection import ego_to_image, scale_intrinsics

INPUT_NAMES = ["images", "ego2img", "points"]
OUTPUT_NAMES = ["voxel_logits", "point_logits"]
ONNX_CONFIG_KEY = "tpv_config"


@dataclass
class Prediction:
    voxel_labels: np.ndarray       # (X, Y, Z) int64, 0 = empty
    voxel_confidence: np.ndarray   # (X, Y, Z) float32, probability of that label
    point_labels: np.ndarray       # (P,) int64: a semantic class (points are surfaces), 0 outside the grid
    point_confidence: np.ndarray   # (P,) float32, probability among the semantic classes; 0 outside the grid


def _softmax(x: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def onnx_config(onnx_path: str | Path, parameter: str | None = None) -> tuple[TPVConfig, int]:
    """The TPVConfig stored in an exported model's metadata and the number of cameras it takes."""
    from fovea_core.model_files import ModelFileError, load_onnx_file

    model = load_onnx_file(onnx_path, parameter, input_names=INPUT_NAMES[:2])
    meta = {p.key: p.value for p in model.metadata_props}
    if ONNX_CONFIG_KEY not in meta:
        raise ModelFileError(onnx_path, f"has no '{ONNX_CONFIG_KEY}' metadata (export it with fovea_core.tpv.export)",
                             parameter)
    cams = model.graph.input[0].type.tensor_type.shape.dim[1]
    return TPVConfig.from_dict(json.loads(meta[ONNX_CONFIG_KEY])), (int(cams.dim_value) if cams.HasField("dim_value")
                                                                     else None)


class TPVInference:
    def __init__(self, backend, cfg: TPVConfig, num_cameras: int | None):
        self.backend, self.cfg, self.num_cameras = backend, cfg, num_cameras

    @classmethod
    def load(cls, backend: str, model_path: str | Path | None = None, checkpoint_path: str | Path | None = None,
             *, model_parameter: str | None = None, checkpoint_parameter: str | None = None,
             **options) -> "TPVInference":
        """``*_parameter``: the names a bad file is reported under (``fovea_core.model_files``)."""
        from fovea_core.backends import load_backend

        if backend == "torch":
            from .train import load_checkpoint
            model, _ = load_checkpoint(checkpoint_path, checkpoint_parameter)
            return cls(load_backend("torch", torch_module=model, input_names=INPUT_NAMES,
                                    output_names=OUTPUT_NAMES), model.cfg, None)
        cfg, cams = onnx_config(model_path, model_parameter)
        return cls(load_backend(backend, onnx_path=model_path, model_parameter=model_parameter, **options), cfg, cams)

    def prepare(self, images: list[np.ndarray], intrinsics: list[np.ndarray], cam2base: list[np.ndarray]):
        """Resize images to the model size and build its (images, ego2img) inputs."""
        from PIL import Image

        size = (self.cfg.image_width, self.cfg.image_height)
        batch, Ks = [], []
        for img, K in zip(images, intrinsics):
            h, w = img.shape[:2]
            if (w, h) != size:
                img = np.asarray(Image.fromarray(img).resize(size, Image.BILINEAR))
                K = scale_intrinsics(K, size[0] / w, size[1] / h)
            batch.append(img)
            Ks.append(K)
        x = (np.stack(batch).astype(np.float32) / 255.0 - IMAGE_MEAN) / IMAGE_STD
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))[None]
        ego2img = ego_to_image(np.stack(Ks), np.stack(cam2base)).astype(np.float32)[None]
        return x, ego2img

    def predict(self, images, intrinsics, cam2base, points: np.ndarray | None = None) -> Prediction:
        if self.num_cameras is not None and len(images) != self.num_cameras:
            raise ValueError(f"the model takes {self.num_cameras} cameras, got {len(images)}")
        x, ego2img = self.prepare(images, intrinsics, cam2base)
        pts = np.zeros((1, 3), np.float32) if points is None or len(points) == 0 else np.asarray(points, np.float32)
        out = self.backend.run({"images": x, "ego2img": ego2img, "points": pts[None, :, :3]})
        vox = _softmax(out["voxel_logits"][0], 0)
        pt = _softmax(out["point_logits"][0][:, 1:], -1)  # a lidar return is a surface: semantic classes only
        n = 0 if points is None else len(points)
        labels, conf = pt.argmax(-1)[:n] + 1, pt.max(-1).astype(np.float32)[:n]
        outside = ~self.inside(pts[:n])  # the planes hold nothing there: no prediction
        labels[outside], conf[outside] = 0, 0.0
        return Prediction(voxel_labels=vox.argmax(0), voxel_confidence=vox.max(0).astype(np.float32),
                          point_labels=labels, point_confidence=conf)

    def inside(self, points: np.ndarray) -> np.ndarray:
        cfg = self.cfg
        lo = np.array([cfg.x_range[0], cfg.y_range[0], cfg.z_range[0]])
        hi = np.array([cfg.x_range[1], cfg.y_range[1], cfg.z_range[1]])
        p = np.asarray(points, np.float64)[:, :3]
        return np.all((p >= lo) & (p < hi), axis=1)

    # ---------------------------------------------------------------- grid helpers
    def voxel_centres(self) -> np.ndarray:
        """(X, Y, Z, 3) centres of the output voxels in base_link."""
        cfg = self.cfg
        axes = [lo + (np.arange(n) + 0.5) * (hi - lo) / n
                for (lo, hi), n in zip((cfg.x_range, cfg.y_range, cfg.z_range), cfg.voxel_shape)]
        return np.stack(np.meshgrid(*axes, indexing="ij"), -1)

    def lookup(self, prediction: Prediction, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Label and confidence of the voxel containing each base_link point; label -1 outside the grid."""
        cfg = self.cfg
        lo = np.array([cfg.x_range[0], cfg.y_range[0], cfg.z_range[0]])
        size = np.array(cfg.voxel_size)
        idx = np.floor((np.asarray(points, np.float64)[:, :3] - lo) / size).astype(np.int64)
        inside = np.all((idx >= 0) & (idx < np.array(cfg.voxel_shape)), axis=1)
        labels = np.full(len(points), -1, np.int32)
        conf = np.zeros(len(points), np.float32)
        i = idx[inside]
        labels[inside] = prediction.voxel_labels[i[:, 0], i[:, 1], i[:, 2]]
        conf[inside] = prediction.voxel_confidence[i[:, 0], i[:, 1], i[:, 2]]
        return labels, conf
