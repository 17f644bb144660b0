"""aps-sim-view: saves a PNG strip or an mp4 of an episode, and refuses bad input clearly."""

from __future__ import annotations

import imageio.v2 as imageio

from sim.view import main


def test_png_strip_and_mp4(tmp_path) -> None:
    png = tmp_path / "strip.png"
    assert (
        main(["search-pick", "--out", str(png), "--size", "64", "--frames", "4", "max_episode_steps=10"]) == 0
    )
    strip = imageio.imread(png)
    assert strip.shape == (2 * 64, 4 * 64, 3) and strip.std() > 10  # rows: wrist, side
    mp4 = tmp_path / "episode.mp4"
    assert main(["shelf-search", "--cameras", "wrist", "--out", str(mp4), "--size", "48"]) == 0
    assert len(imageio.mimread(mp4)) > 2


def test_bad_input_is_refused(tmp_path, capsys) -> None:
    assert main(["search-pick", "--cameras", "nose", "--out", str(tmp_path / "x.png")]) == 2
    assert "no camera ['nose']" in capsys.readouterr().err
    assert main(["pick-everything", "--out", str(tmp_path / "x.png")]) == 2
    assert "known tasks" in capsys.readouterr().err
    assert main(["search-pick", "--out", str(tmp_path / "x.gif")]) == 2
    assert main(["search-pick", "image_size=2", "--out", str(tmp_path / "x.png")]) == 2
