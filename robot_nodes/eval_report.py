"""An evaluation session's report: Markdown (report.md, figures/*.png) and one self-contained HTML
page (report.html, the figures inlined as data URIs). No rclpy; rebuilt from the session folder alone
(`aps-eval report <out>`), so an interrupted session has an interim report too.

Per policy: the success rate with its Wilson 95% interval. Between two policies: the difference of
their rates with Newcombe's interval and the p-value of Barnard's exact test (Holm-adjusted when
there are more than two policies), and the trials per policy that would tell rates like these apart
at 80% power. Then the time to success, the failure tags, and every trial in order, so drift shows.
"""

from __future__ import annotations

import base64
import html
import io
import itertools
from dataclasses import dataclass

import numpy as np

from policies.metrics import RateComparison, compare_rates, holm_adjusted, trials_needed, wilson_interval
from robot_nodes.eval_plan import Plan, PolicyEntry
from robot_nodes.eval_records import FAILURE_TAGS, SessionFolder, TrialRecord, read_records, write_atomically

POWER, ALPHA = 0.8, 0.05
TAG_NAMES = [tag.replace("_", " ") for tag in FAILURE_TAGS]
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")


@dataclass
class PolicyResult:
    policy: PolicyEntry
    trials: list[TrialRecord]

    @property
    def successes(self) -> int:
        return sum(t.success for t in self.trials)

    @property
    def count(self) -> int:
        return len(self.trials)

    @property
    def rate(self) -> float:
        return self.successes / self.count if self.count else float("nan")

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.successes, self.count)

    def times_to_success(self) -> list[float]:
        return [t.duration_s for t in self.trials if t.success]

    def first_sights(self) -> list[float]:
        return [t.time_to_first_sight_s for t in self.trials if t.time_to_first_sight_s is not None]

    def tags(self) -> dict[str, int]:
        return {tag: sum(t.failure_tag == tag for t in self.trials if not t.success) for tag in FAILURE_TAGS}


@dataclass
class Pair:
    a: PolicyResult
    b: PolicyResult
    comparison: RateComparison
    p_adjusted: float
    needed: int | None  # trials per policy to tell their observed rates apart at POWER


@dataclass
class Report:
    plan: Plan
    results: list[PolicyResult]
    pairs: list[Pair]
    done: list[TrialRecord]  # in the order they ran

    @property
    def complete(self) -> bool:
        return len(self.done) == len(self.plan.trials)


def build_report(plan: Plan, records: list[TrialRecord]) -> Report:
    done = [r for r in records if r.status == "done"]
    results = [PolicyResult(p, [r for r in done if r.label == p.label]) for p in plan.policies]
    raw = []
    for a, b in itertools.combinations(results, 2):
        if a.count and b.count:
            raw.append((a, b, compare_rates(a.successes, a.count, b.successes, b.count)))
    adjusted = holm_adjusted([c.p_value for _, _, c in raw]) if raw else []
    pairs = []
    for (a, b, comparison), p_adjusted in zip(raw, adjusted, strict=True):
        needed = trials_needed(a.rate, b.rate, POWER, ALPHA) if a.rate != b.rate else None
        pairs.append(Pair(a, b, comparison, p_adjusted, needed))
    return Report(plan, results, pairs, done)


# --- words ------------------------------------------------------------------------------------------


def percent(value: float) -> str:
    return "n/a" if np.isnan(value) else f"{100 * value:.0f}%"


def rate_text(result: PolicyResult) -> str:
    if not result.count:
        return "no trials yet"
    low, high = result.interval
    return (
        f"{percent(result.rate)} ({result.successes}/{result.count}; 95% CI {percent(low)}-{percent(high)})"
    )


def pair_verdict(pair: Pair, several: bool) -> str:
    c, a, b = pair.comparison, pair.a.policy, pair.b.policy
    p = pair.p_adjusted
    p_text = f"p = {p:.3g}" + (" (Holm-adjusted)" if several else "")
    shown = (
        "significant at the 5% level" if p < ALPHA else "not significant at the 5% level (it may be chance)"
    )
    return (
        f"{a.label} - {b.label}: {100 * c.difference:+.0f} points (95% CI {100 * c.low:+.0f} to "
        f"{100 * c.high:+.0f}); Barnard's exact test {p_text}: {shown}"
    )


def needed_text(pair: Pair) -> str:
    n = max(pair.a.count, pair.b.count)
    if pair.needed is None:
        labels = f"{pair.a.policy.label} and {pair.b.policy.label}"
        return f"{labels} have equal observed rates: no sample size to suggest"
    return (
        f"telling {percent(pair.a.rate)} from {percent(pair.b.rate)} apart at {POWER:.0%} power "
        f"(two-sided, alpha {ALPHA}) takes about {pair.needed} trials per policy (this session: {n})"
    )


def name(policy: PolicyEntry) -> str:
    return f"{policy.label}: {policy.name}"


# --- figures ----------------------------------------------------------------------------------------


def figures(report: Report) -> dict[str, bytes]:
    """PNG bytes of each figure, by file name."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out: dict[str, bytes] = {}
    results = report.results
    colours = {r.policy.label: COLOURS[i % len(COLOURS)] for i, r in enumerate(results)}
    labels = [name(r.policy) for r in results]

    def save(fig, file: str) -> None:
        buffer = io.BytesIO()
        fig.tight_layout()
        fig.savefig(buffer, format="png", dpi=110)
        plt.close(fig)
        out[file] = buffer.getvalue()

    # success rates with their Wilson intervals
    fig, ax = plt.subplots(figsize=(6.4, 0.7 + 0.6 * len(results)))
    for y, result in enumerate(results):
        if result.count:
            low, high = result.interval
            ax.errorbar(
                result.rate, y, xerr=[[result.rate - low], [high - result.rate]], fmt="o", capsize=6,
                color=colours[result.policy.label], markersize=9, linewidth=2,
            )  # fmt: skip
            ax.annotate(
                f"{percent(result.rate)}  ({result.successes}/{result.count})", (result.rate, y),
                textcoords="offset points", xytext=(0, 10), ha="center",
            )  # fmt: skip
    ax.set(
        yticks=range(len(results)), yticklabels=labels, xlim=(-0.02, 1.02), ylim=(-0.7, len(results) - 0.3)
    )
    ax.set_xlabel("success rate (Wilson 95% interval)")
    ax.invert_yaxis()
    ax.grid(axis="x", alpha=0.3)
    save(fig, "success_rates.png")

    # time to success
    fig, ax = plt.subplots(figsize=(6.4, 0.7 + 0.6 * len(results)))
    rng = np.random.default_rng(0)
    for y, result in enumerate(results):
        times = result.times_to_success()
        if times:
            ax.scatter(
                times,
                y + rng.uniform(-0.15, 0.15, len(times)),
                color=colours[result.policy.label],
                alpha=0.7,
                s=18,
            )
            ax.plot([np.median(times)] * 2, [y - 0.3, y + 0.3], color="black", linewidth=2)
    if not any(r.times_to_success() for r in results):
        ax.text(0.5, 0.5, "no successful trial yet", transform=ax.transAxes, ha="center", va="center")
    ax.set(yticks=range(len(results)), yticklabels=labels, ylim=(-0.7, len(results) - 0.3))
    ax.set_xlabel("time to success, seconds (bar: median)")
    ax.invert_yaxis()
    ax.grid(axis="x", alpha=0.3)
    save(fig, "time_to_success.png")

    # failure tags
    fig, ax = plt.subplots(figsize=(6.4, 0.7 + 0.6 * len(results)))
    left = np.zeros(len(results))
    tag_colours = ("#e15759", "#f28e2b", "#edc948", "#b07aa1", "#9c9c9c")
    for tag, colour in zip(FAILURE_TAGS, tag_colours, strict=True):
        counts = np.array([r.tags()[tag] for r in results])
        ax.barh(range(len(results)), counts, left=left, color=colour, label=tag.replace("_", " "))
        left += counts
    ax.set(yticks=range(len(results)), yticklabels=labels)
    ax.set_xlabel("failed trials by tag")
    ax.invert_yaxis()
    ax.legend(
        ncols=len(FAILURE_TAGS), fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False
    )
    save(fig, "failure_tags.png")

    # the trials in order: drift shows as runs of failures late (or early) in the session
    fig, (marks, running) = plt.subplots(
        2, 1, figsize=(8, 1.6 + 0.45 * len(results)), sharex=True, height_ratios=[len(results), 3]
    )
    positions = {r.policy.label: y for y, r in enumerate(results)}
    for order, trial in enumerate(report.done):
        marks.scatter(
            order + 1, positions[trial.label], marker="o" if trial.success else "x", s=40,
            color=colours[trial.label] if trial.success else "#d62728",
        )  # fmt: skip
    marks.set(yticks=range(len(results)), yticklabels=labels, ylim=(-0.7, len(results) - 0.3))
    marks.invert_yaxis()
    marks.set_title("trials in the order they ran (o success, x failure)", fontsize=10)
    for result in results:
        order = [i + 1 for i, t in enumerate(report.done) if t.label == result.policy.label]
        if order:
            cumulative = np.cumsum([t.success for t in result.trials]) / np.arange(1, result.count + 1)
            running.plot(order, cumulative, color=colours[result.policy.label], label=name(result.policy))
    running.set(ylim=(-0.05, 1.05), ylabel="success so far", xlabel="trial")
    running.grid(alpha=0.3)
    save(fig, "trials_in_order.png")
    return out


# --- Markdown and HTML ------------------------------------------------------------------------------


def header_lines(report: Report) -> list[str]:
    plan, settings = report.plan, report.plan.settings
    state = (
        "complete"
        if report.complete
        else f"INTERIM: {len(report.done)} of {len(plan.trials)} trials done (resume=true continues it)"
    )
    return [
        f"task {settings.get('task', '?')} on the {settings.get('robot', '?')} robot; "
        f"{len(plan.trials)} trials planned in blocks of one trial per policy, order drawn from seed "
        f"{plan.seed}{', blind labels' if plan.blind else ''}; labels: {settings.get('labels', '?')}",
        f"session {state}",
    ]


def policy_rows(report: Report) -> list[list[str]]:
    rows = []
    for r in report.results:
        times = r.times_to_success()
        sights = r.first_sights()
        rows.append(
            [
                r.policy.label, r.policy.name, f"{r.successes}/{r.count}", percent(r.rate),
                f"{percent(r.interval[0])}-{percent(r.interval[1])}" if r.count else "n/a",
                f"{np.median(times):.1f} s" if times else "n/a",
                f"{np.median(sights):.1f} s ({len(sights)}/{r.count})" if sights else "n/a",
                str(sum(t.interventions for t in r.trials)), r.policy.digest[:12], str(r.policy.version),
            ]
        )  # fmt: skip
    return rows


POLICY_COLUMNS = [
    "label", "policy", "successes", "rate", "Wilson 95% CI", "median time to success",
    "median time to first sight (trials)", "interventions", "checkpoint sha256", "version",
]  # fmt: skip
TRIAL_COLUMNS = [
    "#", "label", "policy", "initial condition", "result", "failure tag", "ended by", "duration",
    "first sight", "label from", "video",
]  # fmt: skip


def trial_rows(report: Report, link) -> list[list[str]]:
    return [
        [
            str(t.trial + 1), t.label, t.policy, t.condition, "success" if t.success else "failure",
            (t.failure_tag or "").replace("_", " "), t.ended_by.replace("_", " "), f"{t.duration_s:.1f} s",
            "n/a" if t.time_to_first_sight_s is None else f"{t.time_to_first_sight_s:.1f} s",
            t.label_source, link(t.video),
        ]
        for t in report.done
    ]  # fmt: skip


def tag_rows(report: Report) -> list[list[str]]:
    return [[name(r.policy), *(str(r.tags()[tag]) for tag in FAILURE_TAGS)] for r in report.results]


def markdown(report: Report) -> str:
    def table(columns: list[str], rows: list[list[str]]) -> list[str]:
        escape = [[cell.replace("|", "\\|") for cell in row] for row in rows]
        return [
            "| " + " | ".join(columns) + " |",
            "|" + " --- |" * len(columns),
            *("| " + " | ".join(r) + " |" for r in escape),
        ]

    several = len(report.pairs) > 1
    lines = [
        f"# Evaluation session {report.plan.session}",
        "",
        *(f"- {line}" for line in header_lines(report)),
    ]
    lines += ["", "## Success rates", ""]
    lines += [f"- **{name(r.policy)}**: {rate_text(r)}" for r in report.results]
    lines += [
        "",
        *table(POLICY_COLUMNS, policy_rows(report)),
        "",
        "![success rates](figures/success_rates.png)",
    ]
    if report.pairs:
        lines += ["", "## Comparison", ""]
        for pair in report.pairs:
            lines += [f"- {pair_verdict(pair, several)}", f"  - sample size: {needed_text(pair)}"]
    lines += ["", "## Time to success", "", "![time to success](figures/time_to_success.png)"]
    lines += ["", "## Failure tags", "", *table(["policy", *TAG_NAMES], tag_rows(report))]
    lines += ["", "![failure tags](figures/failure_tags.png)"]
    lines += ["", "## Trials in order", "", "![trials in order](figures/trials_in_order.png)", ""]
    lines += table(TRIAL_COLUMNS, trial_rows(report, lambda v: f"[mp4]({v})" if v else ""))
    lines += ["", "## Policies", ""]
    lines += [
        f"- {name(p)}: `{p.checkpoint}` (sha256 {p.digest}, version {p.version})"
        for p in report.plan.policies
    ]
    return "\n".join(lines) + "\n"


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
.meta { color: #555; margin: 0.2em 0; } .interim { color: #b00; font-weight: bold; }
.cards { display: flex; flex-wrap: wrap; gap: 1em; margin: 1em 0; }
.card { border: 1px solid #ccc; border-radius: 8px; padding: 0.8em 1.2em; min-width: 14em; }
.card .rate { font-size: 2.4em; font-weight: bold; } .card .ci { color: #555; }
.verdict { font-size: 1.1em; padding: 0.6em 1em; background: #f4f6fa; border-left: 4px solid #1f77b4; }
table { border-collapse: collapse; font-size: 0.9em; margin: 0.6em 0; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left; } th { background: #f4f4f4; }
td.success { color: #2a7d2a; font-weight: bold; } td.failure { color: #c0392b; font-weight: bold; }
img { max-width: 100%; }
"""


def html_page(report: Report, images: dict[str, bytes]) -> str:
    e = html.escape

    def image(file: str, alt: str) -> str:
        data = base64.b64encode(images[file]).decode()
        return f'<img alt="{e(alt)}" src="data:image/png;base64,{data}">'

    def table(columns: list[str], rows: list[list[str]], raw_last: bool = False) -> str:
        head = "".join(f"<th>{e(c)}</th>" for c in columns)
        body = []
        for row in rows:
            cells = []
            for i, cell in enumerate(row):
                klass = f' class="{cell}"' if cell in ("success", "failure") else ""
                cells.append(f"<td{klass}>{cell if raw_last and i == len(row) - 1 else e(cell)}</td>")
            body.append("<tr>" + "".join(cells) + "</tr>")
        return f"<table><tr>{head}</tr>{''.join(body)}</table>"

    several = len(report.pairs) > 1
    meta = header_lines(report)
    parts = [
        f"<h1>Evaluation session {e(report.plan.session)}</h1>",
        f'<p class="meta">{e(meta[0])}</p>',
        f'<p class="{"meta" if report.complete else "interim"}">{e(meta[1])}</p>',
        '<div class="cards">',
    ]
    for r in report.results:
        ci = f"95% CI {percent(r.interval[0])}-{percent(r.interval[1])}" if r.count else ""
        parts.append(
            f'<div class="card"><div>{e(name(r.policy))}</div><div class="rate">{percent(r.rate)}</div>'
            f'<div class="ci">{r.successes}/{r.count} successes; {ci}</div></div>'
        )
    parts.append("</div>")
    parts += [f'<p class="verdict">{e(pair_verdict(pair, several))}</p>' for pair in report.pairs]
    parts += [f'<p class="meta">Sample size: {e(needed_text(pair))}.</p>' for pair in report.pairs]
    parts += [
        "<h2>Success rates</h2>",
        image("success_rates.png", "success rates"),
        table(POLICY_COLUMNS, policy_rows(report)),
    ]
    parts += ["<h2>Time to success</h2>", image("time_to_success.png", "time to success")]
    parts += [
        "<h2>Failure tags</h2>",
        image("failure_tags.png", "failure tags"),
        table(["policy", *TAG_NAMES], tag_rows(report)),
    ]
    parts += ["<h2>Trials in order</h2>", image("trials_in_order.png", "trials in order")]
    parts.append(
        table(
            TRIAL_COLUMNS,
            trial_rows(report, lambda v: f'<a href="{e(v)}">mp4</a>' if v else ""),
            raw_last=True,
        )
    )
    parts.append("<h2>Policies</h2><ul>")
    parts += [
        f"<li>{e(name(p))}: <code>{e(p.checkpoint)}</code> (sha256 {e(p.digest)}, version {p.version})</li>"
        for p in report.plan.policies
    ]
    parts.append("</ul>")
    body = "\n".join(parts)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>aps-eval {e(report.plan.session)}</title><style>{STYLE}</style></head>\n"
        f"<body>\n{body}\n</body></html>\n"
    )


def write_report(folder: SessionFolder, plan: Plan) -> Report:
    """report.md, figures/*.png and report.html from the session folder's log."""
    report = build_report(plan, read_records(folder))
    images = figures(report)
    folder.figures.mkdir(exist_ok=True)
    for file, data in images.items():
        (folder.figures / file).write_bytes(data)
    write_atomically(folder.report_md, markdown(report))
    write_atomically(folder.report_html, html_page(report, images))
    return report
