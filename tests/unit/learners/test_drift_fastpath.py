"""DriftMonitor skips the per-update warning probe only for detectors that have no warnings."""

from __future__ import annotations

import random

import pytest

from learners import drift as drift_module
from learners.drift import DETECTORS, DriftMonitor


@pytest.mark.parametrize("name", list(DETECTORS))
def test_the_skip_list_holds_exactly_the_detectors_without_warnings(name):
    monitor = DriftMonitor("error", name)
    rng = random.Random(4)
    for i in range(3000):
        value = float(rng.random() < (0.1 if i < 1500 else 0.6))
        state = monitor.update(value)
        # the rule before the fast path, on the same detector after the same updates
        detector = monitor.detector
        expected = "drift" if detector.drift_detected else ("warning" if getattr(detector, "warning_detected", False) else None)
        assert state == expected
    skipped = type(monitor.detector) in drift_module._NO_WARNINGS
    assert skipped == (not DETECTORS[name][2])  # DETECTORS says which ones raise warnings
    assert skipped == (not hasattr(monitor.detector, "warning_detected"))
    assert monitor.n_detections > 0
