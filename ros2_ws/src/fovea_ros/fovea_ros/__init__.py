"""Fovea's thin ROS 2 glue: message conversions, sync, TF, the node base, the method nodes and the CLI."""
