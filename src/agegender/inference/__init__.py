"""Inference: face/person detectors → crops → batched model → typed results (ONNX, video and batch jobs)."""
