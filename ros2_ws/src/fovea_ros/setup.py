"""fovea_ros: ament_python package with the node executables and the ``fovea`` CLI."""
from pathlib import Path

from setuptools import find_packages, setup

PACKAGE = "fovea_ros"

# Every fovea_ros/nodes/<x>_node.py is the executable <x>_node (`ros2 run fovea_ros <x>_node`); the graph
# runner (fovea_ros/graph.py) uses the same rule.
NODES = {p.stem: f"{PACKAGE}.nodes.{p.stem}" for p in sorted(Path(__file__).parent.glob(f"{PACKAGE}/nodes/*_node.py"))}

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test", "tests"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        ("bin", ["scripts/fovea"]),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="Fovea developers",
    description="Thin ROS 2 glue, node executables and the fovea CLI.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [f"{name} = {module}:main" for name, module in NODES.items()]
        + ["fovea = fovea_ros.cli:main"],
    },
)
