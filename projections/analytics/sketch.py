"""A mergeable quantile sketch of dwell times (DDSketch's log-spaced bins, Masson et al. 2019).

A value ``v > 0`` falls in bin ``ceil(log(v) / log(GAMMA))``; every value of a bin is within
``ACCURACY`` (relative) of the bin's representative, so every quantile read from the bins is
too. Merging two sketches adds their bins' counts: a coarse time bucket is the exact merge of
its fine ones, whatever the order, which is what lets the projection build 60 s, 300 s and
3600 s buckets from 10 s ones (and a rebuild in other batch sizes equal the incremental one).

Written here rather than taken from the ``ddsketch`` package: the projection stores a sketch as
a small JSON document in a row, and that package serialises only through protobuf; what is
needed of it is the forty lines below.
"""

from __future__ import annotations

import math
from typing import Final

import msgspec

ACCURACY: Final = 0.01
"""Relative accuracy of every quantile: the value read is within 1% of a true one."""
GAMMA: Final = (1 + ACCURACY) / (1 - ACCURACY)
_LOG_GAMMA: Final = math.log(GAMMA)
_TINY: Final = 1e-6
"""Values below a microsecond (the log's resolution) count as zero."""


class Sketch(msgspec.Struct, omit_defaults=True, array_like=True):
    """Counts per bin (``bins``: index → count), the values too small for a bin, and the
    exact maximum. Stored as compact JSON (``encode``)."""

    bins: dict[int, int] = {}
    zeros: int = 0
    max: float = 0.0

    @property
    def count(self) -> int:
        return self.zeros + sum(self.bins.values())

    def add(self, value: float) -> None:
        if value > self.max:
            self.max = value
        if value < _TINY:
            self.zeros += 1
            return
        index = math.ceil(math.log(value) / _LOG_GAMMA)
        self.bins[index] = self.bins.get(index, 0) + 1

    def merge(self, other: Sketch) -> None:
        for index, count in other.bins.items():
            self.bins[index] = self.bins.get(index, 0) + count
        self.zeros += other.zeros
        self.max = max(self.max, other.max)

    def quantile(self, q: float) -> float | None:
        """The value at quantile ``q`` (0..1), within ``ACCURACY``; None when empty. The
        maximum is exact, and no quantile exceeds it."""
        total = self.count
        if total == 0:
            return None
        rank = q * (total - 1)
        seen = self.zeros
        if rank < seen:
            return 0.0
        for index in sorted(self.bins):
            seen += self.bins[index]
            if seen > rank:
                return min(2 * GAMMA**index / (GAMMA + 1), self.max)
        return self.max


_encoder: Final = msgspec.json.Encoder()
_decoder: Final = msgspec.json.Decoder(Sketch)


def encode(sketch: Sketch) -> str:
    return _encoder.encode(sketch).decode()


def decode(text: str) -> Sketch:
    return _decoder.decode(text)
