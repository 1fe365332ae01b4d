"""Temperature scaling and ECE on known numbers."""
from __future__ import annotations

import numpy as np
import pytest

from vemo.train.calibration import expected_calibration_error, fit_temperature, probabilities, reliability


def test_ece_of_known_predictions():
    # four predictions at 90% confidence, three right: one bin, |0.75 - 0.9| = 0.15
    probs = np.array([[0.9, 0.1]] * 4)
    labels = np.array([0, 0, 0, 1])
    assert expected_calibration_error(probs, labels) == pytest.approx(0.15)
    # two bins weighted by their sizes: 0.6 confident and always right (|1 - 0.6| = 0.4, 1 video),
    # 0.9 confident and right 3 of 4 (0.15, 4 videos)
    probs = np.vstack([probs, [[0.6, 0.4]]])
    labels = np.append(labels, 0)
    assert expected_calibration_error(probs, labels) == pytest.approx((4 * 0.15 + 0.4) / 5)
    rel = reliability(probs, labels, multilabel=False)
    assert rel.count.sum() == 5 and (rel.count > 0).sum() == 2


def test_multilabel_ece_counts_every_class_as_a_binary_prediction():
    # 0.8 on a true class and 0.2 on a false one are both right at confidence 0.8
    probs = np.array([[0.8, 0.2], [0.8, 0.2]])
    labels = np.array([[1, 0], [0, 0]])
    # confidence 0.8 everywhere; 3 of the 4 binary predictions right
    assert expected_calibration_error(probs, labels, multilabel=True) == pytest.approx(abs(0.75 - 0.8))


def test_fitted_temperature_recovers_the_one_that_made_the_labels():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, size=(20000, 5))
    true_t = 2.0
    p = probabilities(logits, multilabel=False, temperature=true_t)
    labels = np.array([rng.choice(5, p=row) for row in p])
    t = fit_temperature(logits, labels)
    assert t == pytest.approx(true_t, rel=0.05)
    before = expected_calibration_error(probabilities(logits, False), labels)
    after = expected_calibration_error(probabilities(logits, False, t), labels)
    assert after < before / 3
    # scaling never changes which class is predicted
    assert (probabilities(logits, False, t).argmax(1) == logits.argmax(1)).all()


def test_multilabel_temperature():
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 4, size=(5000, 3))
    labels = (rng.random((5000, 3)) < probabilities(logits, multilabel=True, temperature=0.5)).astype(float)
    assert fit_temperature(logits, labels, multilabel=True) == pytest.approx(0.5, rel=0.1)
