"""Poll arithmetic on plain numbers: rating average and satisfaction rate, Net Promoter Score, choice
counts, and the Borda count of rankings. No I/O, so it is easy to check against known inputs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RatingResult:
    count: int
    average: float
    distribution: dict[int, int]
    satisfaction: float
    """Share of 4 and 5 among all ratings (0..1)."""


def rating(values: Sequence[int]) -> RatingResult:
    counts = Counter(values)
    distribution = {star: counts.get(star, 0) for star in range(1, 6)}
    total = len(values)
    if not total:
        return RatingResult(0, 0.0, distribution, 0.0)
    return RatingResult(total, sum(values) / total, distribution, (counts[4] + counts[5]) / total)


@dataclass(frozen=True, slots=True)
class NpsResult:
    count: int
    score: float
    """Promoters minus detractors, in points from -100 to 100."""
    promoters: float
    passives: float
    detractors: float
    distribution: dict[int, int]


def nps(values: Sequence[int]) -> NpsResult:
    counts = Counter(values)
    distribution = {score: counts.get(score, 0) for score in range(11)}
    total = len(values)
    if not total:
        return NpsResult(0, 0.0, 0.0, 0.0, 0.0, distribution)
    promoters = sum(1 for v in values if v >= 9) / total
    detractors = sum(1 for v in values if v <= 6) / total
    return NpsResult(total, round((promoters - detractors) * 100, 1), promoters, 1 - promoters - detractors,
                     detractors, distribution)  # fmt: skip


def choice(answers: Sequence[Sequence[int]], options: int) -> list[int]:
    """How many members chose each option (a member with several answers counts once per option)."""
    counts = [0] * options
    for picked in answers:
        for index in set(picked):
            if 0 <= index < options:
                counts[index] += 1
    return counts


@dataclass(frozen=True, slots=True)
class RankedItem:
    index: int
    borda: int
    mean_rank: float


def borda(rankings: Sequence[Sequence[int]], items: int) -> list[RankedItem]:
    """Borda count over complete rankings: with n items, first place earns n-1 points, last 0.

    Returns every item, best first (ties by mean rank, then by item order)."""
    points = [0] * items
    rank_sum = [0] * items
    complete = [r for r in rankings if sorted(r) == list(range(items))]
    for ranking in complete:
        for position, index in enumerate(ranking):
            points[index] += items - 1 - position
            rank_sum[index] += position + 1
    voters = len(complete)
    result = [RankedItem(i, points[i], rank_sum[i] / voters if voters else 0.0) for i in range(items)]
    return sorted(result, key=lambda r: (-r.borda, r.mean_rank, r.index))
