"""HMNet (Hamaguchi et al., CVPR 2023): hierarchical latent memories updated at different rates from events.

- ``config``: sizes (CPU config used here, a paper-size GPU config) and the single-rate baseline.
- ``tokens``: events of one 5 ms window -> per-cell token ids for Event Sparse Cross Attention.
- ``model``: memories, ESCA, up-writes, top-down window attention, pyramid neck, segmentation + depth heads.
- ``streaming``: feed each window, get the latest prediction; only the levels due at that step run.
- ``train`` / ``evaluate``: ``main(argv)`` entry points (``fovea train hmnet`` / ``fovea eval hmnet``).
"""
