"""Agreement between readers: Cohen's kappa per pair, Fleiss' kappa and Krippendorff's alpha for all, with
bootstrap 95 % intervals over cases.

Each reader's *current* answer per case counts (the last row; amendments replace what they amend). Verdicts
are nominal categories (``cannot assess`` is one of them). The statistics come from well-kept libraries:
scikit-learn's ``cohen_kappa_score``, statsmodels' ``fleiss_kappa`` and the ``krippendorff`` package.

Undefined values are reported as such, never as a number: with one reader there is no pair; when every answer
is the same category the chance agreement is 1 and kappa is 0/0 (the report then gives the observed
agreement, 100 %).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np

from medimg.review.store import VERDICTS, Feedback

__all__ = [
    "Estimate",
    "StudyAgreement",
    "VerdictTable",
    "bootstrap_ci",
    "cohen_kappa",
    "fleiss_kappa",
    "krippendorff_alpha",
    "study_agreement",
    "verdict_table",
]

#: resamples of the case bootstrap (percentile interval)
N_RESAMPLES = 1000


@dataclass(frozen=True)
class Estimate:
    """A statistic, its bootstrap 95 % interval, and why it is undefined when it is (``value`` is NaN)."""

    value: float
    low: float = math.nan
    high: float = math.nan
    n_cases: int = 0
    note: str = ""

    @property
    def defined(self) -> bool:
        return not math.isnan(self.value)

    def __str__(self) -> str:
        if not self.defined:
            return f"undefined ({self.note})"
        ci = "" if math.isnan(self.low) else f", 95 % CI {self.low:.2f} to {self.high:.2f}"
        return f"{self.value:.3f}{ci}, {self.n_cases} cases"


@dataclass
class VerdictTable:
    """The current verdict (and localisation score) of every reader on every case; None where not answered."""

    case_ids: list[str]
    readers: list[str]
    verdicts: list[list[str | None]]  # [case][reader]
    localisation: list[list[int | None]]  # [case][reader]

    def codes(self) -> np.ndarray:
        """(readers, cases) float array of verdict codes (index into VERDICTS), NaN where not answered."""
        out = np.full((len(self.readers), len(self.case_ids)), np.nan)
        for c, row in enumerate(self.verdicts):
            for r, v in enumerate(row):
                if v is not None:
                    out[r, c] = VERDICTS.index(v)
        return out

    def disagreement(self, case: int) -> bool:
        """Readers gave this case different verdicts."""
        return len({v for v in self.verdicts[case] if v is not None}) > 1


def verdict_table(answers: Iterable[Feedback], case_ids: Sequence[str] | None = None) -> VerdictTable:
    """The table of current answers; rows in ``case_ids``' order (default: every answered case, sorted)."""
    latest = {(a.case_id, a.reviewer): a for a in sorted(answers, key=lambda a: a.id or 0)}
    readers = sorted({r for _, r in latest})
    cases = list(case_ids) if case_ids is not None else sorted({c for c, _ in latest})
    verdicts = [[_get(latest, c, r, "verdict") for r in readers] for c in cases]
    local = [[_get(latest, c, r, "localisation") for r in readers] for c in cases]
    return VerdictTable(cases, readers, verdicts, local)  # type: ignore[arg-type]


def _get(latest: dict[tuple[str, str], Feedback], case: str, reader: str, name: str) -> object:
    a = latest.get((case, reader))
    return None if a is None else getattr(a, name)


def cohen_kappa(a: Sequence[float], b: Sequence[float]) -> float:
    """Cohen's kappa of two readers' codes on the same cases (scikit-learn); NaN when undefined."""
    from sklearn.metrics import cohen_kappa_score  # type: ignore[import-untyped]

    if len(a) == 0 or len(set(a) | set(b)) < 2:
        return math.nan
    return float(cohen_kappa_score(np.asarray(a), np.asarray(b)))


def fleiss_kappa(codes: np.ndarray) -> float:
    """Fleiss' kappa of (readers, cases) codes, every reader answering every case (statsmodels)."""
    from statsmodels.stats.inter_rater import aggregate_raters  # type: ignore[import-untyped]
    from statsmodels.stats.inter_rater import fleiss_kappa as sm_fleiss  # type: ignore[import-untyped]

    if codes.shape[0] < 2 or codes.shape[1] == 0 or len(np.unique(codes)) < 2:
        return math.nan
    counts, _ = aggregate_raters(codes.T.astype(int))
    return float(sm_fleiss(counts, method="fleiss"))


def krippendorff_alpha(codes: np.ndarray) -> float:
    """Krippendorff's alpha (nominal) of (readers, cases) codes, NaN = not answered (``krippendorff``)."""
    import krippendorff

    pairable = codes[:, (~np.isnan(codes)).sum(0) >= 2]
    values = pairable[~np.isnan(pairable)]
    if codes.shape[0] < 2 or pairable.shape[1] == 0 or len(np.unique(values)) < 2:
        return math.nan
    return float(krippendorff.alpha(reliability_data=codes, level_of_measurement="nominal"))


def bootstrap_ci(
    statistic: Callable[[np.ndarray], float], n_cases: int, n_resamples: int = N_RESAMPLES, seed: int = 0
) -> tuple[float, float]:
    """Percentile 95 % interval of ``statistic(case indices)`` over case resamples.

    Written out rather than ``scipy.stats.bootstrap``: a resample in which every answer is the same category
    has an undefined kappa, and scipy propagates that NaN to the whole interval; here such resamples are left
    out (the interval is of the resamples where the statistic exists)."""
    rng = np.random.default_rng(seed)
    stats = np.array([statistic(rng.integers(0, n_cases, n_cases)) for _ in range(n_resamples)])
    stats = stats[~np.isnan(stats)]
    if len(stats) < n_resamples // 2:
        return math.nan, math.nan
    low, high = np.percentile(stats, [2.5, 97.5])
    return float(low), float(high)


def _undefined_note(codes: np.ndarray, n_readers: int) -> str:
    if n_readers < 2:
        return "needs two readers or more"
    values = codes[~np.isnan(codes)]
    if len(values) == 0:
        return "no case answered by every reader"
    if len(np.unique(values)) < 2:
        return f"every answer is '{VERDICTS[int(values[0])]}': observed agreement 100 %, chance agreement 100 %"
    return "too few cases"


def _estimate(stat: Callable[[np.ndarray], float], codes: np.ndarray, n_resamples: int, seed: int) -> Estimate:
    """``stat`` on all cases (columns of ``codes``) with its bootstrap interval."""
    n = codes.shape[1]
    value = stat(np.arange(n))
    if math.isnan(value):
        return Estimate(math.nan, n_cases=n, note=_undefined_note(codes, codes.shape[0]))
    low, high = bootstrap_ci(stat, n, n_resamples, seed)
    return Estimate(value, low, high, n)


@dataclass
class StudyAgreement:
    """Agreement of a reader study: per pair of readers, and for all of them."""

    table: VerdictTable
    pairs: dict[tuple[str, str], Estimate] = field(default_factory=dict)
    observed: dict[tuple[str, str], float] = field(default_factory=dict)  # fraction of equal verdicts
    fleiss: Estimate = field(default_factory=lambda: Estimate(math.nan, note="needs two readers or more"))
    alpha: Estimate = field(default_factory=lambda: Estimate(math.nan, note="needs two readers or more"))

    def case_order(self) -> list[int]:
        """Case rows with the readers' disagreements first, then the rest, each in the table's order."""
        n = len(self.table.case_ids)
        return sorted(range(n), key=lambda c: not self.table.disagreement(c))

    def localisation(self, case: int) -> tuple[float, float, int]:
        """Mean and standard deviation (ddof=1; 0 for one score) of the case's localisation scores, and their count."""
        scores = [s for s in self.table.localisation[case] if s is not None]
        if not scores:
            return math.nan, math.nan, 0
        sd = float(np.std(scores, ddof=1)) if len(scores) > 1 else 0.0
        return float(np.mean(scores)), sd, len(scores)


def _pair_statistic(both: np.ndarray) -> Callable[[np.ndarray], float]:
    """Cohen's kappa of the two rows of ``both`` on the case columns ``idx``."""

    def kappa(idx: np.ndarray) -> float:
        return cohen_kappa(both[0, idx], both[1, idx])

    return kappa


def study_agreement(
    answers: Iterable[Feedback],
    case_ids: Sequence[str] | None = None,
    *,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
) -> StudyAgreement:
    """Cohen's kappa per pair (cases both answered), Fleiss' kappa (cases every reader answered) and
    Krippendorff's alpha (every case, missing answers allowed), each with a bootstrap 95 % interval."""
    table = verdict_table(answers, case_ids)
    codes = table.codes()
    out = StudyAgreement(table)
    for i, j in combinations(range(len(table.readers)), 2):
        both = codes[[i, j]][:, ~np.isnan(codes[[i, j]]).any(0)]
        pair = (table.readers[i], table.readers[j])
        out.pairs[pair] = _estimate(_pair_statistic(both), both, n_resamples, seed)
        out.observed[pair] = float(np.mean(both[0] == both[1])) if both.shape[1] else math.nan
    if len(table.readers) >= 2:
        complete = codes[:, ~np.isnan(codes).any(0)]
        out.fleiss = _estimate(lambda idx: fleiss_kappa(complete[:, idx]), complete, n_resamples, seed)
        out.alpha = _estimate(lambda idx: krippendorff_alpha(codes[:, idx]), codes, n_resamples, seed)
    return out
