"""Calibration sets for int8 quantization (issue #4)."""
