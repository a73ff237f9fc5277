"""The benches' shared plumbing: what it promises the figures rest on."""

from __future__ import annotations

import gc

from bench.harness import CLIENT_GC_GEN0_THRESHOLD, percentile, quiet_collector


def test_quiet_collector_freezes_and_restores() -> None:
    """While a bench measures, what its client had loaded is out of the collector's way
    (a full collection of it stopped the client for 50-70 ms, counted as latency); after,
    the collector is as it was."""
    before, frozen = gc.get_threshold(), gc.get_freeze_count()
    kept = [[n] for n in range(1000)]  # tracked objects that exist before the measurement
    with quiet_collector():
        assert gc.get_freeze_count() >= frozen + len(kept)
        assert gc.get_threshold()[0] == CLIENT_GC_GEN0_THRESHOLD
        assert gc.get_threshold()[1:] == before[1:]
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_quiet_collector_restores_after_an_error() -> None:
    before = gc.get_threshold()
    try:
        with quiet_collector():
            raise RuntimeError("the measured phase failed")
    except RuntimeError:
        pass
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) in (50.0, 51.0)
    assert percentile(values, 0.99) in (99.0, 100.0)
