"""The behaviour bench's summary, against hand-computed values."""

from __future__ import annotations

import numpy as np

from bench.behaviour import Trace, first_side, main, summarise


def test_first_side_is_the_first_crossing_beyond_the_centre_band() -> None:
    assert first_side(np.array([0.0, 0.03, -0.04, -0.06, 0.2])) == -1.0
    assert first_side(np.array([0.0, 0.01, 0.051])) == 1.0
    assert first_side(np.array([0.0, 0.04, -0.05])) == 0.0  # never beyond 5 cm


def test_summary_counts_detours_reaches_and_successes() -> None:
    cube_left = np.array([0.4, 0.2])
    traces = [
        # straight to the cube: reached at step 3, success at step 10
        Trace(np.array([[0.36, 0.0], [0.38, 0.1], [0.39, 0.19], [0.4, 0.2]]), cube_left, 10),
        # a detour to the other side first, then reached at step 4, failed
        Trace(np.array([[0.36, -0.06], [0.38, 0.1], [0.39, 0.17], [0.4, 0.21]]), cube_left, None),
        # a centred cube counts for reach and success but not for the side choice; never reached
        Trace(np.array([[0.36, -0.1], [0.36, -0.1]]), np.array([0.4, 0.0]), 20),
    ]
    summary = summarise(traces)
    assert summary["episodes"] == 3
    assert summary["success"] == round(2 / 3, 3)
    assert summary["wrong_side_first"] == 0.5  # one detour among the two off-centre cubes
    assert summary["reached"] == round(2 / 3, 3)
    assert summary["steps_to_reach"] == 3.5  # median of 3 and 4
    assert summary["steps_to_success"] == 15.0  # median of 10 and 20


def test_a_missing_checkpoint_is_a_clear_error(tmp_path, capsys) -> None:
    assert main([str(tmp_path / "no-such-checkpoint")]) == 2
    assert "no-such-checkpoint" in capsys.readouterr().err
