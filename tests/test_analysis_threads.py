"""The analysis runs numpy's BLAS on one thread: its matrix products are small, and on a shared machine a
second BLAS thread spins for a core instead of working (3.5x the CPU time in the realistic benchmark)."""

from __future__ import annotations

from threadpoolctl import threadpool_info, threadpool_limits

from monitor.analysis.analyzer import Analyzer
from monitor.bank.matcher import BankMatcher
from monitor.bank.store import Bank


def blas_threads() -> set[int]:
    return {int(pool["num_threads"]) for pool in threadpool_info() if pool["user_api"] == "blas"}


def test_building_an_analyzer_leaves_numpy_blas_on_one_thread() -> None:
    with threadpool_limits(limits=2, user_api="blas"):  # restored on exit: other tests keep their setting
        assert blas_threads() == {2}
        Analyzer(BankMatcher(Bank(), 10), None)
        assert blas_threads() == {1}
