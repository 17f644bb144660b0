"""aps-diagnose informativeness: which privileged signal is worth its sensor, before a long run?

    aps-diagnose informativeness run=runs/<time>-search-pick       # its demos: demos/seed0
    aps-diagnose informativeness data=data/demos keys=[object_pos,object_in_view]

An asymmetric critic gains from a privileged signal i only where i tells something about the return
that the onboard history h does not (Ebi, Lambrechts, Ernst et al. 2025, "Informed Asymmetric
Actor-Critic"). From a folder of episodes (demos, recordings), for every non-empty subset S of the
candidate privileged keys, two measures of that:

(b) the gain of a critic that sees i_S. Return-to-go critics V(h_t) and V_S(h_t, i_S,t) are fitted
    by Monte Carlo regression onto G_t = sum_k gamma^k r_{t+k} on all but one fold of the episodes
    and scored by their squared error on the held-out fold. They share one history encoder h_t (the
    learner's), trained by V(h)'s loss alone; each V_S is a head over h_t (held fixed for it) and
    the learner's privileged encoder of i_S. So V_S differs from V only by what i_S adds, and one
    recurrent pass serves every subset. (A history encoder that overfits its training returns
    leaves the V_S heads less to explain there: the gain is then conservative.) Gain per fold =
    MSE(V(h)) - MSE(V_S(h, i_S)); its mean over folds is tested one-sided (gain > 0) with the
    corrected resampled t-test of Nadeau and Bengio (2003): training sets overlap across folds, so
    the variance of the mean is (1/k + n_test/n_train) s^2, not s^2 / k (a plain t-test across folds
    rejects far too often).

(a) residual dependence. "Given the history" is handled by regression: the residual
    e_t = G_t - V(h_t) of the history-only critic, cross-fitted (each episode's residual comes from
    the critic fitted on the other folds, so it is not shrunk by fitting its own return), is what the
    history does not explain. HSIC(e, i_S) with Gaussian RBF kernels (bandwidth: the median distance
    between samples) measures any dependence of that residual on the signal; its p-value comes from
    permuting the signal across episodes (each episode's steps move together, so dependence within
    an episode is kept and only the link between an episode's signal and its return is broken):
    p = (1 + #{HSIC_perm >= HSIC}) / (1 + permutations). Under "return independent of i given h",
    E[e | i] = 0; the test is exact when e's distribution does not depend on h (a history that
    changes the residual's spread and is also told apart by i can make it reject), so (b) beside it
    says whether the dependence is worth anything to a critic.

Samples: `steps_per_episode` steps at fixed fractions of each episode's length (the same fractions
in every episode, so a permutation moves aligned blocks). Writes informativeness.md, .png and .json.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from scipy import stats
from torch import Tensor, nn

from diagnostics.cli import run_command
from policies.episodes import Episode, EpisodeDataset, EpisodeFormatError
from policies.networks import HistoryEncoder, KeySpec, NetworkConfig, ObsSpec, PartEncoder, mlp

Subset = tuple[str, ...]  # privileged keys; () is the history alone


def small_network() -> NetworkConfig:
    return NetworkConfig(
        image_channels=(16, 32), image_features=32, vector_hidden=32, core_hidden=32, head_hidden=64
    )


@dataclass
class ReturnCriticConfig:
    """The return-to-go critics fitted in every fold (one without the signal, one per subset: see
    ReturnCritics)."""

    network: NetworkConfig = field(default_factory=small_network)
    updates: int = 500  # Adam steps per fold (all critics of the fold at once)
    batch_size: int = 16  # whole episodes per step
    lr: float = 1e-3  # Adam step size

    def __post_init__(self) -> None:
        if min(self.updates, self.batch_size) < 1 or not self.lr > 0:
            raise ValueError("updates and batch_size must be >= 1 and lr > 0")


@dataclass
class InformativenessConfig:
    """The episodes, the candidate signals and the two tests' settings."""

    run: str = ""  # an aps-pretrain run folder: its demos/seed0 are the episodes, the report goes in it
    data: str = ""  # an episode folder instead (or besides run): demos, recordings, sim.collect_demos output
    # candidate privileged keys, every non-empty subset of them ranked (None: every vector key)
    keys: list[str] | None = None
    gamma: float = 0.97  # discount of the return-to-go G_t the critics predict
    steps_per_episode: int = 8  # samples per episode, at fixed fractions of its length
    folds: int = 5  # cross-fitting folds over episodes (for both tests)
    permutations: int = 1000  # of the signal across episodes, for the HSIC p-value
    critic: ReturnCriticConfig = field(default_factory=ReturnCriticConfig)
    seed: int = 0  # folds, critics' initial weights and batches, permutations
    out: str = ""  # where the report goes (default: <run>/diagnostics, else <data>/diagnostics)

    def __post_init__(self) -> None:
        if not self.run and not self.data:
            raise ValueError("give run= (an aps-pretrain run folder) or data= (an episode folder)")
        if not 0.0 <= self.gamma < 1.0:
            raise ValueError(f"gamma must lie in [0, 1), got {self.gamma}")
        if self.folds < 2 or self.steps_per_episode < 1 or self.permutations < 1:
            raise ValueError("folds must be >= 2, steps_per_episode and permutations >= 1")
        if self.keys is not None and not self.keys:
            raise ValueError("keys must name at least one privileged key (or be null for all)")

    @property
    def episodes_folder(self) -> Path:
        return Path(self.data) if self.data else Path(self.run) / "demos" / "seed0"

    @property
    def out_folder(self) -> Path:
        if self.out:
            return Path(self.out)
        return Path(self.run) / "diagnostics" if self.run else Path(self.data) / "diagnostics"


@dataclass(frozen=True)
class SubsetResult:
    keys: Subset
    hsic: float  # HSIC(residual return, signal), biased estimator
    hsic_p: float  # permutation p-value over episodes
    mse_without: float  # held-out squared error of V(h), mean over folds
    mse_with: float  # the same of V(h, i_S)
    gain: float  # mean over folds of mse_without - mse_with
    gain_p: float  # one-sided corrected resampled t-test of gain > 0 across folds
    fold_gains: tuple[float, ...]

    @property
    def relative_gain(self) -> float:
        return self.gain / self.mse_without if self.mse_without > 0 else 0.0


# --- data --------------------------------------------------------------------------------------------


def returns_to_go(reward: np.ndarray, gamma: float) -> np.ndarray:
    """G_t = r_t + gamma G_{t+1} for t < T, and G_T = 0 (nothing follows the last observation)."""
    g = np.zeros(len(reward) + 1)
    for t in range(len(reward) - 1, -1, -1):
        g[t] = reward[t] + gamma * g[t + 1]
    return g


def sample_steps(length: int, count: int) -> np.ndarray:
    """`count` steps of an episode of `length` transitions, at fractions (k + 0.5) / count of it."""
    return np.floor((np.arange(count) + 0.5) / count * length).astype(int)


@dataclass
class Padded:
    """All episodes as [N, T_max + 1, ...] tensors; `mask` marks the steps t < T that have a return."""

    onboard: dict[str, Tensor]
    privileged: dict[str, Tensor]  # z-scored per component (by all episodes: only a scale for the nets)
    returns: Tensor  # [N, T_max + 1]
    mask: Tensor  # [N, T_max + 1]
    samples: np.ndarray  # [N, steps_per_episode] step indices of the test samples


def pad(episodes: list[Episode], keys: list[str], cfg: InformativenessConfig) -> Padded:
    longest = max(len(e) for e in episodes) + 1

    def stacked(arrays: list[np.ndarray]) -> np.ndarray:
        out = np.zeros((len(arrays), longest, *arrays[0].shape[1:]), dtype=arrays[0].dtype)
        for i, a in enumerate(arrays):
            out[i, : len(a)] = a
        return out

    def tensor(a: np.ndarray) -> Tensor:
        return torch.from_numpy(a) if a.dtype == np.uint8 else torch.as_tensor(a, dtype=torch.float32)

    onboard = {k: tensor(stacked([e.onboard[k] for e in episodes])) for k in episodes[0].onboard}
    privileged = {}
    for key in keys:
        values = stacked([e.privileged[key].reshape(len(e) + 1, -1).astype(np.float64) for e in episodes])
        valid = np.concatenate([e.privileged[key].reshape(len(e) + 1, -1) for e in episodes])
        std = valid.std(0)
        privileged[key] = tensor((values - valid.mean(0)) / np.where(std > 1e-8, std, 1.0))
    returns = stacked([returns_to_go(e.reward.astype(np.float64), cfg.gamma) for e in episodes])
    mask = stacked([np.arange(len(e) + 1) < len(e) for e in episodes]).astype(np.float32)
    samples = np.stack([sample_steps(len(e), cfg.steps_per_episode) for e in episodes])
    return Padded(onboard, privileged, tensor(returns), torch.from_numpy(mask), samples)


# --- (b) return critics --------------------------------------------------------------------------------


class ReturnCritics(nn.Module):
    """V(h_t) and, for every subset S, V_S(h_t, i_S,t), over one shared history encoder h_t (the
    learner's). The encoder is trained by V(h)'s loss alone: the V_S heads read h_t detached, so
    what the history encodes does not depend on any signal, and V_S differs from V only by i_S."""

    def __init__(self, spec: ObsSpec, subsets: list[Subset], network: NetworkConfig) -> None:
        super().__init__()
        self.subsets = subsets
        self.history = HistoryEncoder(spec.onboard, network)
        self.head = mlp(self.history.out_dim, network.head_hidden, 1)
        self.signals = nn.ModuleList(
            [PartEncoder({k: spec.privileged[k] for k in s}, network) for s in subsets]
        )
        self.signal_heads = nn.ModuleList(
            [mlp(self.history.out_dim + e.out_dim, network.head_hidden, 1) for e in self.signals]
        )

    def forward(self, onboard: dict[str, Tensor], privileged: dict[str, Tensor]) -> dict[Subset, Tensor]:
        """Subset -> values [B, T] (the history alone under ())."""
        batch = next(iter(onboard.values())).shape[0]
        h, _ = self.history(onboard, self.history.core.initial_state(batch))
        values = {(): self.head(h).squeeze(-1)}
        for subset, encoder, head in zip(self.subsets, self.signals, self.signal_heads, strict=True):
            signal = encoder({k: privileged[k] for k in subset})
            values[subset] = head(torch.cat([h.detach(), signal], dim=-1)).squeeze(-1)
        return values


def fit_and_predict(
    data: Padded, spec: ObsSpec, subsets: list[Subset], train: np.ndarray, test: np.ndarray,
    config: ReturnCriticConfig, seed: int,
) -> dict[Subset, np.ndarray]:  # fmt: skip
    """Fit V(h) and every V_S(h, i_S) on the `train` episodes by masked Monte Carlo regression onto
    G_t (z-scored by the training steps); their predictions of G at the samples of the `test` episodes."""
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):  # seeded initial weights, the process's generator untouched
        torch.manual_seed(seed)
        critics = ReturnCritics(spec, subsets, config.network)
    optimizer = torch.optim.Adam(critics.parameters(), lr=config.lr)
    train_returns = data.returns[train][data.mask[train] > 0]
    mean, std = train_returns.mean(), train_returns.std().clamp(min=1e-6)

    def values(index: Tensor) -> dict[Subset, Tensor]:
        return critics(
            {k: v[index] for k, v in data.onboard.items()}, {k: v[index] for k, v in data.privileged.items()}
        )

    train_index = torch.as_tensor(train)
    size = min(config.batch_size, len(train))
    for _ in range(config.updates):
        batch = train_index[torch.randint(0, len(train), (size,), generator=generator)]
        target, mask = (data.returns[batch] - mean) / std, data.mask[batch]
        # each V_S has its own parameters (and h is detached for them): the sum trains each on its own loss
        loss = sum(((v - target).pow(2) * mask).sum() for v in values(batch).values()) / mask.sum().clamp(
            min=1.0
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        samples = torch.as_tensor(data.samples[test])
        return {
            s: (v * std + mean).gather(1, samples).numpy() for s, v in values(torch.as_tensor(test)).items()
        }


def corrected_t_test(gains: np.ndarray, test_fraction: float) -> float:
    """One-sided p of mean(gains) > 0, Nadeau and Bengio's corrected resampled t-test (scipy's t)."""
    k = len(gains)
    variance = (1.0 / k + test_fraction / (1.0 - test_fraction)) * gains.var(ddof=1)
    if variance <= 0:
        return 0.0 if gains.mean() > 0 else 1.0
    return float(stats.t.sf(gains.mean() / math.sqrt(variance), df=k - 1))


# --- (a) HSIC on residuals -----------------------------------------------------------------------------


def rbf_gram(x: np.ndarray) -> np.ndarray:
    """exp(-|x_i - x_j|^2 / (2 sigma^2)), sigma the median distance between distinct samples."""
    sq = np.sum((x[:, None, :] - x[None, :, :]) ** 2, axis=-1)
    distances = np.sqrt(sq[np.triu_indices(len(x), 1)])
    positive = distances[distances > 0]
    sigma = float(np.median(positive)) if positive.size else 1.0
    return np.exp(-sq / (2.0 * sigma**2))


def hsic_permutation_test(
    residual: np.ndarray, signal: np.ndarray, permutations: int, rng: np.random.Generator
) -> tuple[float, float]:
    """Biased HSIC = tr(K H L H) / n^2 between residual [E, S] and signal [E, S, D] (E episodes of S
    samples each), and its p-value under permutations of the signal across episodes."""
    episodes, per = residual.shape
    n = episodes * per
    centring = np.eye(n) - 1.0 / n
    k_centred = centring @ rbf_gram(residual.reshape(n, 1)) @ centring
    gram = rbf_gram(signal.reshape(n, -1))

    def hsic(order: np.ndarray) -> float:
        rows = (order[:, None] * per + np.arange(per)).ravel()  # episode e's samples take order[e]'s signal
        return float(np.sum(k_centred * gram[np.ix_(rows, rows)]) / n**2)

    observed = hsic(np.arange(episodes))
    exceed = sum(hsic(rng.permutation(episodes)) >= observed for _ in range(permutations))
    return observed, (1 + exceed) / (1 + permutations)


# --- the whole measure -----------------------------------------------------------------------------


def candidate_keys(episodes: list[Episode], keys: list[str] | None) -> list[str]:
    spec = episodes[0].spec()["privileged"]
    vectors = [k for k, (shape, dtype) in spec.items() if not KeySpec(shape, dtype).is_image]
    if keys is None:
        return vectors
    unknown = [k for k in keys if k not in vectors]
    if unknown:
        raise ValueError(f"keys {unknown} are not vector privileged keys of the episodes: {vectors}")
    return list(keys)


def informativeness(episodes: list[Episode], cfg: InformativenessConfig) -> list[SubsetResult]:
    """Both measures for every non-empty subset of the candidate keys, ranked by the critic's gain."""
    if len(episodes) < 2 * cfg.folds:
        raise ValueError(f"{len(episodes)} episodes are too few for {cfg.folds} folds (need {2 * cfg.folds})")
    keys = candidate_keys(episodes, cfg.keys)
    subsets = [s for r in range(1, len(keys) + 1) for s in itertools.combinations(keys, r)]
    spec = ObsSpec.from_episode(episodes[0])
    data = pad(episodes, keys, cfg)
    rng = np.random.default_rng(cfg.seed)
    folds = np.array_split(rng.permutation(len(episodes)), cfg.folds)
    targets = data.returns.numpy()[np.arange(len(episodes))[:, None], data.samples]  # [E, S]
    predictions = {s: np.zeros_like(targets) for s in [(), *subsets]}
    fold_errors: dict[Subset, list[float]] = {s: [] for s in predictions}
    for index, test in enumerate(folds):
        train = np.setdiff1d(np.arange(len(episodes)), test)
        fitted = fit_and_predict(data, spec, subsets, train, test, cfg.critic, cfg.seed * 1000 + index)
        for subset, predicted in fitted.items():
            predictions[subset][test] = predicted
            fold_errors[subset].append(float(np.mean((targets[test] - predicted) ** 2)))
    residual = targets - predictions[()]
    test_fraction = 1.0 / cfg.folds
    results = []
    for subset in subsets:
        signal = np.concatenate(
            [data.privileged[k].numpy()[np.arange(len(episodes))[:, None], data.samples] for k in subset],
            axis=-1,
        )
        hsic, hsic_p = hsic_permutation_test(residual, signal, cfg.permutations, rng)
        gains = np.array(fold_errors[()]) - np.array(fold_errors[subset])
        results.append(SubsetResult(
            subset, hsic, hsic_p, float(np.mean(fold_errors[()])), float(np.mean(fold_errors[subset])),
            float(gains.mean()), corrected_t_test(gains, test_fraction), tuple(float(g) for g in gains),
        ))  # fmt: skip
    return sorted(results, key=lambda r: -r.gain)


def run(cfg: InformativenessConfig) -> tuple[list[SubsetResult], Path]:
    folder = cfg.episodes_folder
    try:
        episodes = EpisodeDataset(folder).load_all()
    except EpisodeFormatError as err:
        raise ValueError(str(err)) from err
    if not episodes:
        raise ValueError(f"{folder}: no episodes (episode_*.h5)")
    results = informativeness(episodes, cfg)
    out = cfg.out_folder
    out.mkdir(parents=True, exist_ok=True)
    task = episodes[0].attrs.get("task", "?")
    (out / "informativeness.json").write_text(json.dumps([dataclasses.asdict(r) for r in results], indent=2))
    (out / "informativeness.md").write_text(report(results, cfg, task, episodes))
    plot(results, out / "informativeness.png", f"{task}: what each privileged signal adds to a critic")
    return results, out


def report(
    results: list[SubsetResult], cfg: InformativenessConfig, task: str, episodes: list[Episode]
) -> str:
    successes = sum(e.success for e in episodes)
    lines = [
        f"# Informativeness of privileged signals: {task}",
        "",
        f"{len(episodes)} episodes of {cfg.episodes_folder} ({successes} successful), "
        f"{cfg.steps_per_episode} samples each; return-to-go with gamma {cfg.gamma}; {cfg.folds} folds over "
        f"episodes; critics: {cfg.critic.updates} Adam steps each; seed {cfg.seed}.",
        "",
        "- HSIC: dependence between the signal and the return the history-only critic leaves unexplained "
        f"(cross-fitted residual), p from {cfg.permutations} permutations of the signal across episodes.",
        "- gain: held-out squared error of V(h) minus that of V(h, signal), mean over folds (relative: over "
        "V(h)'s error); p: one-sided corrected resampled t-test across folds (Nadeau and Bengio).",
        "",
        "| rank | signal | HSIC | p (HSIC) | MSE V(h) | MSE V(h, signal) | gain | relative gain | p (gain) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for rank, r in enumerate(results, 1):
        lines.append(
            f"| {rank} | {', '.join(r.keys)} | {r.hsic:.2e} | {r.hsic_p:.3f} | {r.mse_without:.4f} "
            f"| {r.mse_with:.4f} | {r.gain:+.4f} | {r.relative_gain:+.1%} | {r.gain_p:.3f} |"
        )
    return "\n".join(lines) + "\n"


def plot(results: list[SubsetResult], path: Path, title: str) -> None:
    """Relative gain per subset with its per-fold spread, both p-values in its label."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 0.6 * len(results) + 1.5))
    ranked = results[::-1]  # the best at the top
    labels = [f"{' + '.join(r.keys)}\nHSIC p={r.hsic_p:.3f}, gain p={r.gain_p:.3f}" for r in ranked]
    relative = [100 * r.relative_gain for r in ranked]
    spread = [100 * np.std(r.fold_gains) / r.mse_without if r.mse_without > 0 else 0.0 for r in ranked]
    colours = ["C0" if r.hsic_p < 0.05 else "C7" for r in ranked]
    ax.barh(range(len(ranked)), relative, xerr=spread, color=colours)
    ax.set_yticks(range(len(ranked)), labels, fontsize=8)
    ax.axvline(0.0, color="grey", linewidth=0.8)
    ax.set(
        xlabel="return-prediction error the signal removes (% of V(h)'s; blue: HSIC p < 0.05)", title=title
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str]) -> int:
    def report(cfg: InformativenessConfig) -> str:
        _, out = run(cfg)
        table = (out / "informativeness.md").read_text()
        return f"{table}\nwritten to {out}: informativeness.md, informativeness.png, informativeness.json"

    return run_command("informativeness", __doc__, InformativenessConfig, "run=runs/x keys=[object_pos]",
                       argv, report)  # fmt: skip
