//! The weft telemetry hub: turns reactor events into Prometheus metrics, a live registry, detections and history.
