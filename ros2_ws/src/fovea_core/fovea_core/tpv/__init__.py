"""TPVFormer (Huang et al., CVPR 2023): camera-only 3D semantic occupancy from a tri-perspective view.

Modules: ``projection`` (pillar reference points -> pixels per camera), ``planes`` (TPV planes, point/voxel
aggregation), ``attention`` (image cross-attention, cross-view hybrid attention; GridSample only),
``model`` (backbone + FPN, HCAB/HAB encoder, decoder; TPV / BEV / voxel variants), ``losses``, ``metrics``,
``scenes`` + ``render`` (procedural training data), ``frame`` + ``nuscenes_sample`` (data format, real
reader), ``data``, ``train``, ``evaluate``, ``export``, ``inference`` (what the ROS node runs).
"""
