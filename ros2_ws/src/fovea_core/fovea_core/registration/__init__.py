"""Point cloud registration after VBReg (Jiang et al., CVPR 2023): FPFH correspondences, a variational
non-local network that scores them, voting-based inlier search, and the SC2 / RANSAC baselines.

Entry point: :class:`fovea_core.registration.pipeline.Registration`.
"""
