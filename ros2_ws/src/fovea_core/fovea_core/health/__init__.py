"""Sensor-health gating: judge every sensor, node and output of the suite from what the nodes report.

Plain Python (no ROS): the health node (``fovea_ros/nodes/health_node.py``) feeds a :class:`HealthMonitor`
with each node's ``/diagnostics`` and the anomaly node's verdicts and publishes what it judges. The rules
(which sensors feed which nodes, which outputs depend on what, the thresholds) come from a YAML file
(``config/health_rules.yaml``), read by :func:`load_rules`.

Levels, worst last: OK, DEGRADED (usable with care), UNRELIABLE (do not act on it); UNKNOWN until anything is
heard. An output is never better than the worst of its inputs (each dependency may cap how far it pulls the
output down), so a fault on a sensor reaches every output computed from it.
"""
from fovea_core.health.levels import Judgement, Level
from fovea_core.health.monitor import HealthMonitor, NodeReport, Verdict
from fovea_core.health.rules import HealthRules, RulesError, load_rules

__all__ = ["HealthMonitor", "HealthRules", "Judgement", "Level", "NodeReport", "RulesError", "Verdict",
           "load_rules"]
