"""The study's interval arithmetic: Student-t quantiles, t-intervals, paired differences, quartiles."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minireg.errors import ArgumentError
from minireg.study import stats

# t_{0.975, df} from printed tables (e.g. NIST/SEMATECH e-Handbook, table 1.3.6.7.2)
KNOWN_975 = {1: 12.706, 2: 4.303, 4: 2.776, 9: 2.262, 29: 2.045, 120: 1.980}


@pytest.mark.parametrize("df, value", sorted(KNOWN_975.items()))
def test_t_quantile_matches_printed_tables(df, value):
    assert stats.t_quantile(0.975, df) == pytest.approx(value, abs=6e-4)


def test_t_quantile_matches_scipy():
    scipy_stats = pytest.importorskip("scipy.stats")
    for df in (1, 2, 3, 4, 7, 19, 49, 1000, 2.5):
        for p in (0.5, 0.6, 0.9, 0.975, 0.995, 0.025, 1e-4):
            assert stats.t_quantile(p, df) == pytest.approx(scipy_stats.t.ppf(p, df), rel=1e-9, abs=1e-10)


@given(st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=2, max_size=30))
@settings(max_examples=60, deadline=None)
def test_t_interval_is_the_textbook_formula(values):
    mean, lo, hi = stats.t_interval(values)
    x = np.asarray(values)
    half = stats.t_quantile(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    assert mean == pytest.approx(x.mean(), abs=1e-9)
    assert lo == pytest.approx(x.mean() - half, abs=1e-9) and hi == pytest.approx(x.mean() + half, abs=1e-9)


def test_t_interval_against_scipy():
    scipy_stats = pytest.importorskip("scipy.stats")
    values = [0.91, 0.95, 0.93, 0.90, 0.96]
    _, lo, hi = stats.t_interval(values)
    expected = scipy_stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=scipy_stats.sem(values))
    assert (lo, hi) == pytest.approx(expected, rel=1e-10)


def test_known_interval_by_hand():
    # mean 2, s = 1, n = 4: 2 +- 3.182446 / 2
    mean, lo, hi = stats.t_interval([1.0, 2.0, 2.0, 3.0 + 0.0])
    s = np.std([1, 2, 2, 3], ddof=1)
    assert mean == 2.0 and hi - mean == pytest.approx(3.182446305 * s / 2, rel=1e-8)


def test_paired_comparison_cancels_what_the_seeds_share():
    baseline = [0.70, 0.90, 0.80, 0.60, 0.85]
    family = [b + 0.02 + d for b, d in zip(baseline, (0.001, -0.001, 0.002, 0.0, -0.002))]
    unpaired = stats.summary(family)
    assert unpaired["ci95"][0] < stats.summary(baseline)["ci95"][1]      # the intervals overlap ...
    result = stats.paired(family, baseline)
    assert result["mean_diff"] == pytest.approx(0.02)
    assert 0 < result["ci95"][0] < result["ci95"][1] and not result["indistinguishable"]   # ... pairing separates
    assert stats.paired([1.0, 2.0, 3.0], [1.5, 1.5, 3.2])["indistinguishable"]
    with pytest.raises(ArgumentError, match="same seeds"):
        stats.paired([1.0, 2.0], [1.0])


def test_single_seed_has_no_interval_and_empty_input_is_an_error():
    assert stats.summary([0.5]) == {"mean": 0.5, "ci95": [None, None], "per_seed": [0.5]}
    assert stats.paired([0.6], [0.5])["indistinguishable"]
    with pytest.raises(ArgumentError, match="empty"):
        stats.t_interval([])
    with pytest.raises(ArgumentError, match="p must be"):
        stats.t_quantile(1.0, 3)


def test_median_and_quartiles():
    result = stats.median_iqr([10.0, 1.0, 4.0, 3.0, 2.0])
    assert result["median"] == 3.0 and result["iqr"] == [2.0, 4.0]
    assert result["per_seed"] == [10.0, 1.0, 4.0, 3.0, 2.0]
