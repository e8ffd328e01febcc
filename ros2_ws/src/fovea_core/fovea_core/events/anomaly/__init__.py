"""Event/frame stream anomaly detection after Feng, Chen, Owens, "Self-Supervised Video Forensics by
Audio-Visual Anomaly Detection" (CVPR 2023, AVAD): per frame step a distribution over event/frame time offsets
(sync features), a causal transformer predicting the next step's distribution from normal data, and the KL
divergence between prediction and observation as the anomaly score.
"""
