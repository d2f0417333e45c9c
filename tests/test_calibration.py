"""Calibration sets: stratified, from the training split, reproducible, saved with their ids."""

from __future__ import annotations

import numpy as np
import pytest

from calibration import build_calibration_set, load_calibration_ids, stratified_ids


def test_stratified_ids_are_balanced_distinct_and_reproducible():
    labels = np.repeat(np.arange(5), [50, 3, 20, 20, 7])
    ids = stratified_ids(labels, 30, seed=1)
    assert len(set(ids.tolist())) == 30
    counts = np.bincount(labels[ids], minlength=5)
    assert counts[1] == 3 and counts.max() - counts[[0, 2, 3, 4]].min() <= 6  # the small class gives all it has
    assert np.array_equal(ids, stratified_ids(labels, 30, seed=1))
    assert not np.array_equal(ids, stratified_ids(labels, 30, seed=2))
    assert np.array_equal(np.sort(stratified_ids(labels, 100)), np.arange(100))


@pytest.mark.parametrize("size", [0, 101])
def test_stratified_ids_reject_bad_sizes(size):
    with pytest.raises(ValueError, match="calibration size"):
        stratified_ids(np.zeros(100, dtype=int), size)


def test_calibration_set_comes_from_train_and_round_trips(tiny_data, tmp_path):
    calib = build_calibration_set(tiny_data, size=16, num_points=32, seed=0)
    assert calib.clouds.shape == (16, 32, 3) and calib.clouds.dtype == np.float32
    assert np.bincount(calib.labels).tolist() == [2] * 8
    train = tiny_data.train_x.numpy()
    for i, cloud in zip(calib.ids, calib.clouds, strict=True):
        assert np.isin(cloud, train[i]).all()  # every point is a point of that training cloud
    meta = load_calibration_ids(calib.save(tmp_path / "calibration.json"))
    assert meta["ids"] == calib.ids and meta["split"] == "train" and meta["num_points"] == 32
    (tmp_path / "other.json").write_text("{}")
    with pytest.raises(ValueError, match="not a pointkd calibration set"):
        load_calibration_ids(tmp_path / "other.json")
