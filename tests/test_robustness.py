"""pointkd.bench.robustness: the mCE / RmCE arithmetic against a hand computation, the sample, and the loop."""

from __future__ import annotations

import numpy as np
import pytest

from pointkd.bench.robustness import DGCNN_OA, evaluate_corruptions, reference_from, sample_indices, scores
from pointkd.data.corruptions import CORRUPTION_NAMES


def test_scores_match_a_hand_computation():
    # every corruption at 0.60 on all levels except scale (0.80 .. 0.90, mean 0.85); clean 0.90
    oa = {c: [0.6] * 5 for c in CORRUPTION_NAMES}
    oa["scale"] = [0.80, 0.85, 0.85, 0.85, 0.90]
    s = scores(0.90, oa)
    # by hand: CE_scale = 0.15 / 0.094 = 1.595745; CE_jitter = 0.4 / 0.316 = 1.265823; ...
    assert s["corruptions"]["scale"]["ce"] == pytest.approx(0.15 / 0.094)
    assert s["corruptions"]["jitter"]["ce"] == pytest.approx(0.4 / 0.316)
    ce = [0.15 / 0.094, 0.4 / 0.316, 0.4 / 0.215, 0.4 / 0.248, 0.4 / 0.207, 0.4 / 0.295, 0.4 / 0.275]
    assert s["mCE"] == pytest.approx(sum(ce) / 7)  # 11.0778 / 7
    assert s["mCE"] == pytest.approx(1.58254, abs=1e-5)
    # RCE_scale = (0.90 - 0.85) / (0.926 - 0.906) = 2.5; RCE_add_local = 0.30 / 0.201
    assert s["corruptions"]["scale"]["rce"] == pytest.approx(2.5)
    rce = [2.5, 0.3 / 0.242, 0.3 / 0.141, 0.3 / 0.174, 0.3 / 0.133, 0.3 / 0.221, 0.3 / 0.201]
    assert s["RmCE"] == pytest.approx(sum(rce) / 7)
    assert s["mOA"] == pytest.approx((0.85 + 6 * 0.6) / 7)


def test_dgcnn_scores_one_against_itself_and_a_model_against_its_own_figures():
    oa = {c: [DGCNN_OA[c]] * 5 for c in CORRUPTION_NAMES}
    s = scores(DGCNN_OA["clean"], oa)
    assert s["mCE"] == pytest.approx(1.0) and s["RmCE"] == pytest.approx(1.0)
    result = {"clean_oa": 0.8, "oa": {c: [0.5, 0.6, 0.7, 0.6, 0.6] for c in CORRUPTION_NAMES}}
    ref = reference_from(result)
    assert ref["clean"] == 0.8 and ref["jitter"] == pytest.approx(0.6)
    own = scores(0.8, result["oa"], ref)
    assert own["mCE"] == pytest.approx(1.0) and own["RmCE"] == pytest.approx(1.0)


def test_scores_refuse_a_partial_table():
    with pytest.raises(ValueError, match="missing"):
        scores(0.9, {"scale": [0.9] * 5})


def test_sample_is_seeded_sorted_and_all_by_default():
    assert np.array_equal(sample_indices(10, None, 0), np.arange(10))
    a = sample_indices(2468, 100, 0)
    assert len(a) == 100 and np.array_equal(a, np.sort(a)) and np.array_equal(a, sample_indices(2468, 100, 0))
    assert not np.array_equal(a, sample_indices(2468, 100, 1))


def test_evaluate_corruptions_prepares_every_cloud_to_the_models_points():
    rng = np.random.default_rng(0)
    clouds = rng.standard_normal((4, 1024, 3)).astype(np.float32)
    clouds /= np.linalg.norm(clouds, axis=-1).max(axis=1)[:, None, None]
    labels = np.array([0, 1, 0, 1])
    seen = []

    def run(batch: np.ndarray) -> np.ndarray:
        assert batch.shape[1:] == (256, 3) and batch.dtype == np.float32
        seen.append(len(batch))
        return np.stack([np.zeros(len(batch)), np.ones(len(batch))], axis=1)  # always class 1

    r = evaluate_corruptions(run, clouds, labels, 256, batch_size=3)
    assert r["clean_oa"] == 0.5 and all(v == [0.5] * 5 for v in r["oa"].values())
    assert r["points"]["dropout_global"] == [768, 640, 512, 384, 256]
    assert r["points"]["add_local"] == [1124, 1224, 1324, 1424, 1524]
    assert r["scores"]["mOA"] == pytest.approx(0.5) and sum(seen) == 4 * 36
