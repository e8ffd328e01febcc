"""A real Fovea node in the test process, driven through the callbacks its subscriptions registered.

``NodeHarness(NodeClass, overrides)`` builds the node in its own rclpy context (the repository's
``config/<node>.yaml`` plus ``overrides``) and brings it up. ``feed(topic, msg)`` calls the subscription's
own callback, exactly what the executor calls on a message: the base's wrapper with the MessageInfo, the
guard, the node's callback. Work the node hands to its worker is captured instead of run (``submitted``),
unless ``run_worker=True``, so thousands of generated inputs cost milliseconds each.

``account()`` snapshots what the node has counted: drops by reason (on the node itself, as /diagnostics
reports them), submitted items, inputs per topic.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import rclpy
from rclpy.parameter import Parameter

# drops that count points or events inside an input, not whole inputs
PER_ITEM_REASONS = ("non-finite points removed",)


@dataclass
class Account:
    drops: Counter
    submitted: int
    inputs: dict[str, int] = field(default_factory=dict)

    def whole_input_drops(self) -> int:
        return sum(n for reason, n in self.drops.items() if reason not in PER_ITEM_REASONS)

    def internal_errors(self) -> dict[str, int]:
        return {r: n for r, n in self.drops.items() if r.startswith("internal error")}


class NodeHarness:
    def __init__(self, node_class, overrides: dict | None = None, *, run_worker: bool = False,
                 bring_up: bool = True) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        params = [Parameter(name, value=value) for name, value in (overrides or {}).items()]
        self.node = node_class(context=self.context, parameter_overrides=params)
        self.submitted: list = []
        self.run_worker = run_worker
        self.up_error = self.node.bring_up() if bring_up else None
        if bring_up and not self.up_error and not run_worker:
            self.node.submit = self._capture

    def _capture(self, item) -> bool:
        self.submitted.append(item)
        return True

    def subscription(self, topic: str):
        resolved = [s for s in self.node.subscriptions if s.topic_name == topic or s.topic_name == "/" + topic]
        assert resolved, f"no subscription on {topic}: {[s.topic_name for s in self.node.subscriptions]}"
        return resolved[0]

    def feed(self, topic: str, msg, publication_sequence_number: int | None = None) -> None:
        """Deliver ``msg`` as the executor would (the subscription's own callback, with a MessageInfo)."""
        info = {"source_timestamp": 0, "received_timestamp": 0,
                "publication_sequence_number": publication_sequence_number, "reception_sequence_number": None}
        self.subscription(topic).callback(msg, info)

    def account(self) -> Account:
        node = self.node
        return Account(Counter(node.drops.by_reason()), len(self.submitted),
                       {t: m.count for t, m in node._rates.items()})

    def values(self) -> dict[str, str]:
        return {kv.key: kv.value for kv in self.node.diagnostic_status().values}

    def close(self) -> None:
        self.node.destroy_node()
        self.context.try_shutdown()
