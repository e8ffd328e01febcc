"""Bag tools behind ``fovea replay``, ``fovea record`` and ``fovea info``.

- ``reader``: rosbag2 sqlite3 / MCAP as raw CDR messages, plus a typestore to decode them (no rclpy needed);
- ``typestore``: message definitions from Jazzy, compat ``.msg`` folders, the bag itself, or Python classes;
- ``replay``: :class:`~fovea_ros.bag.replay.BagPlayer`, publishing raw CDR with the recorded timing;
- ``record``: :class:`~fovea_ros.bag.record.BagRecorder`, raw subscriptions into a self-describing MCAP;
- ``info``: the bag summary.

Nothing is imported here, so ``fovea info`` never loads rclpy.
"""
