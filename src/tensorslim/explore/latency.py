"""Explore's latency objective uses the shared per-machine latency table :mod:`tensorslim.study.latency`
(re-exported here)."""

from __future__ import annotations

from ..study.latency import LatencyCache, LayerTimer, ModelLatency, describe, layer_key, machine_key, model_key

__all__ = ["LatencyCache", "LayerTimer", "ModelLatency", "describe", "layer_key", "machine_key", "model_key"]
