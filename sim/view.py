"""aps-sim-view: run one episode (scripted or random) and save what the cameras saw, to look at.

    aps-sim-view search-pick --seed 3 --cameras wrist,side --out search.mp4
    aps-sim-view camouflage-pick --out strip.png --frames 8 image_size=48
    aps-sim-view shelf-search --policy random --demo.wrong_direction_prob=1 --out shelf.png
    aps-sim-view search-pick --checkpoint runs/.../checkpoints/aawr-seed0 --out aawr.mp4

With --checkpoint the trained policy acts (from the onboard part only, `--sampling` as in
`ActionMixture.act`) and the task settings default to the ones it was trained with (the run's
config.yaml, when it is there).

An .mp4 holds every control step (cameras side by side); a .png is a strip of `--frames` evenly spaced
steps, one row per camera. Task settings come as TaskConfig overrides (key=value).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, get_args

import numpy as np
import yaml

from apsconfig import ConfigError, config_help, load_config
from policies.config import ActionSampling
from sim.config import DemoConfig, TaskConfig

if TYPE_CHECKING:  # torch is imported only when a checkpoint is viewed
    from policies.checkpoint import PolicyRunner


def trained_task_settings(checkpoint: Path, policy: PolicyRunner) -> dict:
    """The task settings a checkpoint was trained with: the `env` part of its run's config.yaml
    (aps-pretrain writes runs/<run>/config.yaml and runs/<run>/checkpoints/<name>/). A checkpoint
    outside such a run keeps at least its image size, read off the policy's observation spec."""
    run_config = checkpoint.resolve().parent.parent / "config.yaml"
    if run_config.is_file():
        try:
            settings = yaml.safe_load(run_config.read_text())
        except yaml.YAMLError as err:
            raise ConfigError(f"{run_config}: not valid YAML: {err}") from err
        if isinstance(settings, dict) and isinstance(settings.get("env"), dict):
            return settings["env"]
    sizes = {spec.shape[0] for spec in policy.spec.onboard.values() if spec.is_image}
    return {"image_size": sizes.pop()} if len(sizes) == 1 else {}


def record(
    task: str,
    seed: int,
    cameras: list[str],
    size: int,
    policy: str | PolicyRunner,
    config: TaskConfig,
    demo: DemoConfig,
) -> tuple[list[list[np.ndarray]], bool]:
    """Frames [step][camera] of one episode, and whether it succeeded. `policy` is "scripted",
    "random" or a trained policy's runner."""
    import sim

    env = sim.make(task, config)
    try:
        known = [env.model.camera(i).name for i in range(env.model.ncam)] if hasattr(env, "model") else []
        unknown = [c for c in cameras if c not in known]
        if unknown:
            raise ValueError(f"{task}: no camera {unknown}; cameras: {known or 'none (not a MuJoCo task)'}")
        obs, _ = env.reset(seed=seed)
        demonstrator = sim.make_demonstrator(env, demo, seed)
        demonstrator.reset()
        if not isinstance(policy, str):
            policy.reset()
        rng = np.random.default_rng(seed)
        frames = [[env.render_camera(c, size) for c in cameras]]
        success, done = False, False
        while not done:
            if not isinstance(policy, str):
                action = policy.act(obs["onboard"])
            elif policy == "scripted":
                action = demonstrator.act(obs)
            else:
                action = rng.uniform(-1, 1, env.action_space.shape)
            obs, _, terminated, truncated, info = env.step(action)
            success |= bool(info["success"])
            done = terminated or truncated
            frames.append([env.render_camera(c, size) for c in cameras])
        return frames, success
    finally:
        env.close()


def save(frames: list[list[np.ndarray]], out: Path, fps: float, strip_frames: int) -> None:
    import imageio.v2 as imageio

    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".mp4":
        imageio.mimwrite(out, [np.concatenate(f, axis=1) for f in frames], fps=fps, macro_block_size=1)
        return
    picks = np.linspace(0, len(frames) - 1, min(strip_frames, len(frames))).round().astype(int)
    rows = [np.concatenate([frames[i][c] for i in picks], axis=1) for c in range(len(frames[0]))]
    imageio.imwrite(out, np.concatenate(rows, axis=0))


def main(argv: list[str] | None = None) -> int:
    import sim

    parser = argparse.ArgumentParser(
        prog="aps-sim-view",
        description=__doc__.split("\n\n")[0],
        epilog=config_help(TaskConfig),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("task", help=f"one of: {', '.join(sim.TASK_NAMES)}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cameras", default="wrist,side", help="comma-separated camera names")
    parser.add_argument("--size", type=int, default=240, help="pixels of each saved view")
    who_acts = parser.add_mutually_exclusive_group()
    who_acts.add_argument("--policy", choices=("scripted", "random"), default="scripted")
    who_acts.add_argument("--checkpoint", type=Path, help="a trained policy's checkpoint folder: it acts")
    parser.add_argument("--sampling", choices=get_args(ActionSampling), default="component")
    parser.add_argument("--frames", type=int, default=8, help="steps shown in a .png strip")
    parser.add_argument("--out", type=Path, default=Path("sim_view.mp4"), help=".mp4 or .png")
    parser.add_argument("--demo.action_noise", dest="action_noise", type=float, default=0.0)
    parser.add_argument("--demo.wrong_direction_prob", dest="wrong_direction_prob", type=float, default=0.0)
    parser.add_argument("--demo.hesitation_prob", dest="hesitation_prob", type=float, default=0.0)
    parser.add_argument(
        "overrides", nargs="*", help="TaskConfig settings, e.g. image_size=48 randomize=false"
    )
    args = parser.parse_intermixed_args(argv)  # overrides may come after the options
    os.environ.setdefault("MUJOCO_GL", "egl")
    if args.out.suffix not in (".mp4", ".png"):
        print(f"aps-sim-view: --out must end in .mp4 or .png, got {args.out}", file=sys.stderr)
        return 2
    try:
        policy: str | PolicyRunner = args.policy
        settings: dict = {}
        if args.checkpoint is not None:
            from policies.checkpoint import load_policy

            policy = load_policy(args.checkpoint, task=args.task, sampling=args.sampling, seed=args.seed)
            settings = trained_task_settings(args.checkpoint, policy)
        config = load_config(TaskConfig, settings, args.overrides)
        demo = DemoConfig(args.action_noise, args.wrong_direction_prob, args.hesitation_prob)
        cameras = [c for c in args.cameras.split(",") if c]
        frames, success = record(args.task, args.seed, cameras, args.size, policy, config, demo)
    except (ValueError, KeyError) as err:  # ConfigError and CheckpointError are ValueErrors
        print(f"aps-sim-view: {err}", file=sys.stderr)
        return 2
    save(frames, args.out, config.control_hz, args.frames)
    print(f"{args.task} seed {args.seed}: {len(frames) - 1} steps, success={success}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
