"""The threads benchmark's machinery: the busy loops it starts end with it; its table's ratios."""

from __future__ import annotations

import pytest

from l0repro.bench.threads import Cell, busy_cores, row


def test_busy_loops_run_inside_the_block_and_are_reaped_after_it():
    with busy_cores(2) as procs:
        assert len(procs) == 2 and all(p.poll() is None for p in procs)
    assert all(p.returncode is not None for p in procs)
    with pytest.raises(RuntimeError), busy_cores(1) as procs:  # also when the timing fails
        raise RuntimeError
    assert procs[0].returncode is not None


def test_a_row_gives_each_thread_counts_speed_against_the_first():
    cells = [Cell("mlp", 1, 1, threads=1, steps=300, seconds=1.5), Cell("mlp", 1, 1, threads=2, steps=60,
                                                                         seconds=1.2)]
    assert cells[0].steps_per_s == 200 and cells[1].steps_per_s == 50
    text = row(cells)
    assert text.startswith("mlp     1 busy loops (1 CPUs busy): ")
    assert "1 thr    200.0  2 thr     50.0" in text and "2/1 thr  0.25x" in text
