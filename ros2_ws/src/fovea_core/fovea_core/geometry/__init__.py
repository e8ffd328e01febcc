"""Geometry shared by the methods: rigid transforms, camera models, grids (SI units, REP-103 frames)."""
