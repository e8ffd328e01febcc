"""fovea_core: installable with pip (``pip install -e .``) or built by colcon (ament_python)."""
from setuptools import find_packages, setup

PACKAGE = "fovea_core"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test", "tests"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
    ],
    install_requires=["numpy", "pyyaml", "torch", "onnx", "onnxruntime", "open3d", "rosbags", "scipy", "aedat",
                      "scikit-learn", "pyarrow", "matplotlib", "small_gicp", "faiss-cpu", "threadpoolctl"],
    zip_safe=True,
    maintainer="Fovea developers",
    description="Fovea method cores and inference backends (no ROS imports).",
    license="Apache-2.0",
)
