"""Fovea method cores: plain Python + PyTorch, importable and testable without ROS."""

__version__ = "0.1.0"
