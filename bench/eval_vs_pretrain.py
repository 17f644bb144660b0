"""Does an aps-eval sim session agree with aps-pretrain's own evaluation of the same checkpoints?

    aps-pretrain --preset quick "algorithms=[aawr, bc]" out_dir=runs/compare          # ~8 min, 2 cores
    run=runs/compare/<run>
    aps-eval "policies=[$run/checkpoints/aawr-seed0, $run/checkpoints/bc-seed0]" trials_per_policy=50 \\
        out=evals/aawr-vs-bc
    python -m bench.eval_vs_pretrain $run evals/aawr-vs-bc               # JSON out

Per policy of the session: its successes and Wilson 95% interval, those of the same checkpoint on
aps-pretrain's held-out test episodes, and Barnard's exact test of the two rates (they agree when the
intervals overlap and the test finds no difference at the 5% level). The two use disjoint seed
ranges (sim.seeds), so they are independent estimates of one success rate.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from policies.metrics import exact_test_p, wilson_interval
from robot_nodes.eval_plan import read_plan
from robot_nodes.eval_records import SessionFolder, read_records


def agreement(run_dir: Path, session: Path) -> dict:
    folder = SessionFolder(session)
    plan = read_plan(folder.plan)
    done = [r for r in read_records(folder) if r.status == "done"]
    tested = {
        str(Path(r["checkpoint"]).resolve()): r for r in json.loads((run_dir / "results.json").read_text())
    }
    rows = {}
    for policy in plan.policies:
        result = tested.get(str(Path(policy.checkpoint).resolve()))
        if result is None:
            continue
        trials = [r for r in done if r.label == policy.label]
        successes = sum(r.success for r in trials)
        session_interval = wilson_interval(successes, len(trials))
        test_interval = wilson_interval(result["test_successes"], result["test_episodes"])
        p = exact_test_p(successes, len(trials), result["test_successes"], result["test_episodes"])
        overlap = session_interval[0] <= test_interval[1] and test_interval[0] <= session_interval[1]
        rows[policy.name] = {
            "session": {"successes": successes, "trials": len(trials), "wilson95": session_interval},
            "aps_pretrain": {
                "successes": result["test_successes"], "trials": result["test_episodes"],
                "wilson95": test_interval,
            },
            "barnard_p": p,
            "agree": bool(overlap and p >= 0.05),
        }  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path, help="the aps-pretrain run folder (results.json)")
    parser.add_argument("session", type=Path, help="the aps-eval session folder")
    args = parser.parse_args()
    print(json.dumps(agreement(args.run_dir, args.session), indent=2))


if __name__ == "__main__":
    main()
