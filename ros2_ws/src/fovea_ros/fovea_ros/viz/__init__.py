"""Visualisation glue: ``fovea viz`` bridges ROS 2 topics to Foxglove (:mod:`fovea_ros.viz.bridge`)."""
