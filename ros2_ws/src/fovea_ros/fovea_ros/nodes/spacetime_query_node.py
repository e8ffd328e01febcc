"""Spatio-temporal query: one service a planner calls for points (x, y, z, t) in any frame.

Service ``query_service`` (fovea_msgs/srv/QuerySpaceTime). Each point goes by its ``t`` (seconds after the
request's stamp, "now"; ``fovea_core.spacetime``): t <= 0 to semantic occupancy (``semantic_service``, the
TPV node's fovea_msgs/srv/QueryPoints: class and probability of the voxel holding the point, as last
seen, so only back to ``semantic_max_past_s``), t > 0 to occupancy flow (``flow_service``, the
occupancy-flow node's QueryPoints: occupancy probability and flow, up to ``flow_horizon_s``). Both are asked
at once with the request's header (frame and stamp: each source transforms the points through TF itself)
and answer within ``call_timeout_s`` or count as not answered.

Per point the answer says which source it went to and whether it is valid (the source answered, the point
was in its range — its per-point ``status`` OK where the source reports one —, and the source's output is not
UNRELIABLE on ``health_topic``); per source what it said
and the health of its output (``semantic_output`` / ``flow_output``: names in the health rules; UNKNOWN when
no health node has been heard for ``health_max_age_s``).
"""
from __future__ import annotations

import time

import numpy as np
from rcl_interfaces.srv import GetParameters

from fovea_core.spacetime import (SOURCE_FLOW, SOURCE_SEMANTIC, SourceAnswer, merge_answers, route_points)
from fovea_msgs.msg import Health, HealthArray, QuerySource
from fovea_msgs.srv import QueryPoints, QuerySpaceTime
from fovea_ros.node_base import FoveaNode, run_node
from fovea_ros.nodes.health_node import health_qos
from fovea_ros.parameters import Param
from fovea_ros.service_calls import ServiceCallError, ServiceCaller


class SpacetimeQueryNode(FoveaNode):
    NAME = "spacetime_query"
    PARAMETERS = (
        Param("query_service", "/fovea/query_space_time", "fovea_msgs/srv/QuerySpaceTime service offered"),
        Param("semantic_service", "/tpv/query_points", "QueryPoints of the semantic occupancy node (t <= 0)"),
        Param("semantic_node", "/tpv_occupancy", "the semantic node, asked once for its 'classes' parameter"),
        Param("flow_service", "/occupancy_flow/query_points", "QueryPoints of the occupancy-flow node (t > 0)"),
        Param("semantic_output", "tpv_occupancy", "health entry (output) of the semantic source"),
        Param("flow_output", "occupancy_flow", "health entry (output) of the flow source"),
        Param("health_topic", "/fovea/health", "fovea_msgs/msg/HealthArray from the health node"),
        Param("health_max_age_s", 5.0, "older health news counts as unknown", min_value=0.1, dynamic=True),
        Param("semantic_max_past_s", 0.5, "oldest t (seconds before now) the semantic source answers: it only "
              "has the scene as last seen", min_value=0.0, max_value=60.0, dynamic=True),
        Param("flow_horizon_s", 3.0, "latest t the flow source answers (its forecast horizon)", min_value=0.0,
              max_value=60.0, dynamic=True),
        Param("call_timeout_s", 1.0, "how long each source may take to answer", min_value=0.01, max_value=60.0,
              dynamic=True),
        Param("max_points", 200000, "requests with more points are refused", min_value=1),
    )

    def configure(self) -> None:
        self.calls = ServiceCaller(self)
        self._health: tuple[float, dict[str, Health]] | None = None
        self._class_names: list[str] | None = None

    def activate(self) -> None:
        self.create_subscription(HealthArray, self.params.health_topic, self.on_health, health_qos())
        self.create_service(QuerySpaceTime, self.params.query_service, self.on_query)

    def cleanup(self) -> None:
        if getattr(self, "calls", None) is not None:
            self.calls.close()
            self.calls = None

    def destroy_node(self) -> None:
        super().destroy_node()
        self.cleanup()

    def on_health(self, msg: HealthArray) -> None:
        self.count_input(self.params.health_topic)
        self._health = (time.monotonic(), {e.name: e for e in msg.entries if e.kind == "output"})

    def health_of(self, output: str) -> Health:
        if self._health is None or time.monotonic() - self._health[0] > self.params.health_max_age_s:
            return Health(name=output, kind="output", level=Health.UNKNOWN,
                          reasons=[f"no health from {self.params.health_topic}"])
        entry = self._health[1].get(output)
        return entry if entry is not None else Health(name=output, kind="output", level=Health.UNKNOWN,
                                                      reasons=["not in the health rules"])

    def class_names(self) -> list[str]:
        if self._class_names is None and self.params.semantic_node:
            try:
                reply = self.calls.call(GetParameters, f"{self.params.semantic_node}/get_parameters",
                                        GetParameters.Request(names=["classes"]), timeout_s=self.params.call_timeout_s)
                self._class_names = list(reply.values[0].string_array_value) if reply.values else []
            except ServiceCallError:
                return []  # asked again next time
        return self._class_names or []

    # ---- the service -------------------------------------------------------------------------------
    def on_query(self, request, response):
        self.count_input(self.params.query_service)
        with self.timed():
            return self._answer(request, response)

    def _answer(self, request, response):
        n = len(request.x)
        if not (len(request.y) == len(request.z) == len(request.t) == n):
            self.drop("malformed query", "x, y, z, t of unequal length")
            response.success, response.message = False, "x, y, z and t must have the same length"
            return response
        if n > self.params.max_points:
            self.drop("query too large", f"{n} points")
            response.success, response.message = False, f"{n} points: more than max_points={self.params.max_points}"
            return response
        xyz = np.stack([np.asarray(request.x, np.float32), np.asarray(request.y, np.float32),
                        np.asarray(request.z, np.float32)], axis=1) if n else np.zeros((0, 3), np.float32)
        t = np.asarray(request.t, np.float32)
        source = route_points(xyz, t, self.params.semantic_max_past_s, self.params.flow_horizon_s)
        routes = {SOURCE_SEMANTIC: ("semantic", self.params.semantic_service, self.params.semantic_output),
                  SOURCE_FLOW: ("flow", self.params.flow_service, self.params.flow_output)}
        asked, calls = [], []
        for code, (_, service, _) in routes.items():
            idx = np.flatnonzero(source == code)
            if len(idx):
                sub = QueryPoints.Request(header=request.header, x=xyz[idx, 0].tolist(), y=xyz[idx, 1].tolist(),
                                          z=xyz[idx, 2].tolist(), t=t[idx].tolist())
                asked.append(code)
                calls.append((QueryPoints, service, sub))
        results = dict(zip(asked, self.calls.call_all(calls, self.params.call_timeout_s))) if calls else {}
        answers, sources = {}, []
        for code, (name, service, output) in routes.items():
            count = int((source == code).sum())
            health = self.health_of(output)
            answer, said = self._read(code, results.get(code), count)
            answer.usable = health.level != Health.UNRELIABLE
            answers[code] = answer
            sources.append(QuerySource(name=name, service=service, points=count,
                                       answered=answer.probability is not None, message=said, health=health))
        merged = merge_answers(source, answers[SOURCE_SEMANTIC], answers[SOURCE_FLOW])
        response.success = True
        response.message = f"{int(merged.valid.sum())} of {n} points valid"
        response.source = merged.source.tolist()
        response.valid = merged.valid.tolist()
        response.label = merged.label.tolist()
        response.label_probability = merged.label_probability.tolist()
        response.occupancy = merged.occupancy.tolist()
        response.flow_x = merged.flow[:, 0].tolist()
        response.flow_y = merged.flow[:, 1].tolist()
        response.class_names = self.class_names() if (source == SOURCE_SEMANTIC).any() else []
        response.sources = sources
        return response

    def _read(self, code: int, result, count: int) -> tuple[SourceAnswer, str]:
        """A source's QueryPoints response as arrays, checked; (answer, what it said)."""
        if count == 0:
            return SourceAnswer(), "no points routed to it"
        if result is None:
            return SourceAnswer(), "not asked"
        if isinstance(result, ServiceCallError):
            self.drop("source did not answer", str(result))
            return SourceAnswer(), str(result)
        if not result.success:
            return SourceAnswer(), f"refused: {result.message}"
        probability = np.asarray(result.probability, np.float32)
        status = np.asarray(getattr(result, "status", []), np.uint8)   # per-point status, where served
        point_ok = status == 0 if len(status) == count else None
        if code == SOURCE_SEMANTIC:
            label = np.asarray(result.label, np.int32)
            if len(label) != count or len(probability) != count:
                return SourceAnswer(), f"answered {len(label)} labels for {count} points"
            return SourceAnswer(label=label, probability=probability, point_ok=point_ok), result.message
        flow = np.stack([np.asarray(result.flow_x, np.float32), np.asarray(result.flow_y, np.float32)], 1) \
            if len(result.flow_x) == count and len(result.flow_y) == count else None
        if len(probability) != count:
            return SourceAnswer(), f"answered {len(probability)} occupancies for {count} points"
        return SourceAnswer(probability=probability, flow=flow, point_ok=point_ok), result.message + (
            "" if flow is not None else " (no flow)")


NODE_CLASS = SpacetimeQueryNode


def main(args=None) -> int:
    return run_node(SpacetimeQueryNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
