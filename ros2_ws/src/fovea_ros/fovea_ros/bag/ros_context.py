"""A private rclpy context + node for a bag tool, so a player and a recorder can live in any process (tests, the
demo, the CLI) without touching the caller's global context or signal handling."""
from __future__ import annotations

import rclpy
from rclpy.context import Context
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions


class PrivateNode:
    """Owns one rclpy Context and one Node in it; ``close()`` destroys both (idempotent)."""

    def __init__(self, name: str) -> None:
        self.context = Context()
        # No rclpy signal handlers: Ctrl-C stays a KeyboardInterrupt the CLI turns into a clean stop.
        rclpy.init(context=self.context, signal_handler_options=SignalHandlerOptions.NO)
        self.node: Node = rclpy.create_node(name, context=self.context, start_parameter_services=False)

    def close(self) -> None:
        if self.node is not None:
            self.node.destroy_node()
            self.node = None
        if self.context.ok():
            rclpy.shutdown(context=self.context)
