"""The process set-up shared by every torch job, and the disjoint seed ranges."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from policies.runtime import set_torch_threads, tcmalloc_path
from sim.seeds import demo_seed, held_out_seed, online_seed, session_seed, validation_seed


def test_thread_counts_by_purpose() -> None:
    before = torch.get_num_threads()
    try:
        set_torch_threads("act")
        assert torch.get_num_threads() == 1
        set_torch_threads("train")
        assert torch.get_num_threads() == os.cpu_count()
    finally:
        torch.set_num_threads(before)


def test_the_makefile_and_the_jobs_find_the_same_tcmalloc() -> None:
    command = [sys.executable, "-m", "policies.runtime", "tcmalloc-path"]
    printed = subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()
    assert printed == (tcmalloc_path() or "")
    assert not printed or Path(printed).is_file()
    make = subprocess.run(["make", "-n", "test"], capture_output=True, text=True, check=True).stdout
    assert f"LD_PRELOAD={printed} " in make


def test_seed_ranges_never_overlap() -> None:
    runs, per_run = (0, 999), 5
    ranges = {
        "demo": (demo_seed(runs[0], 0), demo_seed(runs[1], 999_999)),
        "online": (online_seed(runs[0], 0), online_seed(runs[1], 99_999)),
        "validation": (validation_seed(0), validation_seed(999_999)),
        "held-out": (held_out_seed(0), held_out_seed(999_999_999)),
        "eval session": (session_seed(runs[0], 0), session_seed(runs[1], 999_999)),
    }
    bounds = sorted(ranges.values())
    assert all(high < next_low for (_, high), (next_low, _) in itertools.pairwise(bounds))
    # Within a range, two runs never share a seed either.
    assert online_seed(1, 0) > online_seed(0, 99_999) and demo_seed(1, 0) > demo_seed(0, 999_999)
    assert len({demo_seed(r, i) for r in range(3) for i in range(per_run)}) == 3 * per_run
    with pytest.raises(ValueError, match="online episode index must lie in"):
        online_seed(0, 100_000)
