"""ImplicitO (Agro, Sykora, Casas, Urtasun, CVPR 2023, "Implicit Occupancy Flow Fields for Perception and
Prediction in Self-Driving"): occupancy and reverse flow at any continuous query (x, y, t) from lidar + map.

Modules: ``config`` (one typed config), ``grid`` (BEV grid, lidar voxelisation with a masked sweep history),
``vector_map`` (lane graph, map raster), ``agents`` (boxes over time -> occupancy + reverse flow ground truth,
constant-velocity baseline), ``av2_reader`` (Argoverse 2 sensor log and forecasting scenario, pyarrow),
``procedural_map`` + ``traffic`` + ``lidar_sim`` (the training-data simulator: Open3D ray casting),
``sample`` + ``data`` (one sample format for simulated and real data; caches; training queries),
``model`` (two-stream encoder, implicit decoder, dense-grid baseline head), ``losses``, ``metrics``
(Waymo Occupancy Flow definitions), ``train`` (on ``fovea_core.training``), ``predict``, ``evaluate``,
``export`` (encoder + decoder ONNX), ``inference`` (what the ROS node runs).
"""
