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


def test_a_trained_policy_acts_with_the_task_settings_it_was_trained_with(tmp_path, capsys) -> None:
    import dataclasses

    import sim
    from apsconfig import save_config
    from policies.checkpoint import save_checkpoint
    from policies.config import LearnerConfig, NetworkConfig
    from policies.learner import Learner
    from policies.networks import ObsSpec
    from sim.config import TaskConfig
    from sim.pretrain import PretrainConfig

    task = TaskConfig(image_size=32, max_episode_steps=7)
    demo = sim.collect_demos("search-pick", 1, seed=0, task_config=task)[0]
    network = NetworkConfig(image_channels=(8,), image_features=16, core_hidden=16, head_hidden=16)
    learner = Learner(ObsSpec.from_episode(demo), LearnerConfig(algorithm="bc", network=network))
    run = tmp_path / "run"
    save_checkpoint(learner, run / "checkpoints" / "bc-seed0", "search-pick", version=1)
    save_config(dataclasses.replace(PretrainConfig(), env=task), run / "config.yaml")

    out = tmp_path / "policy.png"
    checkpoint = str(run / "checkpoints" / "bc-seed0")
    assert main(["search-pick", "--checkpoint", checkpoint, "--out", str(out), "--size", "32"]) == 0
    assert "7 steps" in capsys.readouterr().out  # the run's max_episode_steps, not the default 50
    assert imageio.imread(out).shape[0] == 2 * 32
    assert main(["camouflage-pick", "--checkpoint", checkpoint, "--out", str(out)]) == 2
    assert "not 'camouflage-pick'" in capsys.readouterr().err

    # a checkpoint outside its run still gets its image size; a damaged run config is a clear error
    moved = tmp_path / "elsewhere" / "bc"
    (run / "checkpoints" / "bc-seed0").rename(moved.parent.mkdir() or moved)
    assert main(["search-pick", "--checkpoint", str(moved), "--out", str(out), "max_episode_steps=3"]) == 0
    (tmp_path / "config.yaml").write_text("env: {image_size: 32\n")
    assert main(["search-pick", "--checkpoint", str(moved), "--out", str(out)]) == 2
    assert "not valid YAML" in capsys.readouterr().err
