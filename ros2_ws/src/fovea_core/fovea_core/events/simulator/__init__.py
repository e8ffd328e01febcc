"""ESIM-style event simulator on procedurally generated moving scenes (labels, depth and frames in sync)."""
from fovea_core.events.simulator.esim import EsimConfig, EventSimulator
from fovea_core.events.simulator.scene import CLASS_NAMES, MovingScene, SceneConfig
from fovea_core.events.simulator.sequences import SimulatedSequence, simulate_sequence

__all__ = ["CLASS_NAMES", "EsimConfig", "EventSimulator", "MovingScene", "SceneConfig", "SimulatedSequence",
           "simulate_sequence"]
