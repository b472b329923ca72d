"""The median stopping rule and ASHA on hand-made objective curves."""

from __future__ import annotations

from services.stopping_rules import asha_rule, asha_rungs, best_so_far, median_rule, running_average

GOOD = [1.0, 0.6, 0.4, 0.3, 0.2]
BETTER = [0.9, 0.5, 0.3, 0.2, 0.1]
FAIR = [1.0, 0.8, 0.6, 0.5, 0.4]
FLAT = [1.1, 1.1, 1.09, 1.09, 1.08]


def test_best_and_running_average_skip_missing_values() -> None:
    """best_so_far and running_average use the finite values up to the epoch only."""
    curve = [3.0, None, 1.0, float("nan"), 0.5]

    assert best_so_far(curve, 3, "min") == 1.0
    assert best_so_far(curve, 3, "max") == 3.0
    assert running_average(curve, 3) == 2.0
    assert best_so_far([None, None], 2, "min") is None


def test_median_rule_stops_flat_curve() -> None:
    """A flat curve is worse than the median of the others' running averages at epoch 4."""
    judgement = median_rule(
        FLAT, [GOOD, BETTER, FAIR], 4, mode="min", metric="val_loss", min_trials=3
    )

    assert judgement.judged
    assert judgement.stop_message == (
        "median stopping rule at epoch 4: best val_loss 1.09 is worse than the median 0.575 "
        "of the running averages of 3 other trials"
    )


def test_median_rule_keeps_good_curve() -> None:
    """A curve better than the median goes on."""
    judgement = median_rule(
        GOOD, [FLAT, BETTER, FAIR], 4, mode="min", metric="val_loss", min_trials=3
    )

    assert judgement.judged
    assert judgement.stop_message is None


def test_median_rule_waits_for_enough_trials() -> None:
    """Trials that have not reached the epoch do not count toward min_trials."""
    judgement = median_rule(
        FLAT, [GOOD, BETTER, FAIR[:2]], 4, mode="min", metric="val_loss", min_trials=3
    )

    assert not judgement.judged


def test_median_rule_max_mode() -> None:
    """In max mode, a lower best value than the median is worse."""
    accuracy_low = [0.3, 0.3, 0.35]
    others = [[0.5, 0.7, 0.8], [0.6, 0.8, 0.9]]

    judgement = median_rule(
        accuracy_low, others, 3, mode="max", metric="val_accuracy", min_trials=2
    )

    assert judgement.stop_message is not None
    assert "best val_accuracy 0.35" in judgement.stop_message


def test_asha_rungs_grow_by_reduction_factor() -> None:
    """Rungs sit at grace * factor**k below the epochs."""
    assert asha_rungs(1, 3, 30) == [1, 3, 9, 27]
    assert asha_rungs(2, 2, 16) == [2, 4, 8]


def test_asha_keeps_top_fraction_only() -> None:
    """At a rung, a trial outside the best 1/factor of the trials there is stopped."""
    others = [GOOD, BETTER, FAIR, [0.95, 0.7, 0.5, 0.45, 0.4], [0.8, 0.4, 0.2, 0.1, 0.05]]

    stopped = asha_rule(
        FLAT, others, 3, mode="min", metric="val_loss", reduction_factor=3, min_trials=2
    )
    kept = asha_rule(
        [0.7, 0.3, 0.1], others, 3, mode="min", metric="val_loss", reduction_factor=3, min_trials=2
    )

    assert stopped.stop_message == (
        "ASHA rule at epoch 3: best val_loss 1.09 is not among the best 2 of the 6 trials that "
        "reached this epoch (cutoff 0.3, reduction factor 3)"
    )
    assert kept.judged
    assert kept.stop_message is None
