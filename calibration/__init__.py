"""Calibration sets for int8 quantization: stratified, from the training split only, saved with their ids."""

from .calibration_set import CalibrationSet, build_calibration_set, load_calibration_ids, stratified_ids

__all__ = ["CalibrationSet", "build_calibration_set", "load_calibration_ids", "stratified_ids"]
