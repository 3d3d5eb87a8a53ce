"""The dwell-time sketch: every quantile within its relative accuracy of the exact one, and a
merge equal to the sketch of all the values, whatever the split."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from projections.analytics import sketch
from projections.analytics.sketch import ACCURACY, Sketch

DWELLS = st.lists(
    st.one_of(
        st.floats(min_value=1e-6, max_value=30 * 86400, allow_nan=False),
        st.just(0.0),
    ),
    min_size=1,
    max_size=300,
)
QUANTILES = st.sampled_from([0.0, 0.5, 0.95, 0.99, 1.0])


def sketch_of(values: list[float]) -> Sketch:
    made = Sketch()
    for value in values:
        made.add(value)
    return made


def exact(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[math.floor(q * (len(ordered) - 1))]


@given(DWELLS, QUANTILES)
def test_a_quantile_is_within_the_relative_accuracy_of_the_exact_one(
    values: list[float], q: float
) -> None:
    got = sketch_of(values).quantile(q)
    want = exact(values, q)
    assert got is not None
    if want < 1e-6:
        assert got == 0.0
    else:
        assert abs(got - want) <= ACCURACY * want * (1 + 1e-9)


@given(DWELLS)
def test_the_maximum_is_exact_and_bounds_every_quantile(values: list[float]) -> None:
    made = sketch_of(values)
    assert made.max == max(values)
    assert made.count == len(values)
    assert all((made.quantile(q) or 0) <= made.max for q in (0.5, 0.95, 0.99, 1.0))


@given(DWELLS, st.data())
def test_merging_parts_equals_the_sketch_of_the_whole(
    values: list[float], data: st.DataObject
) -> None:
    cuts = sorted(data.draw(st.lists(st.integers(0, len(values)), max_size=4)))
    parts = [values[a:b] for a, b in zip([0, *cuts], [*cuts, len(values)], strict=True)]
    merged = Sketch()
    for part in reversed(parts):  # any order
        merged.merge(sketch.decode(sketch.encode(sketch_of(part))))
    assert merged == sketch_of(values)


def test_an_empty_sketch_has_no_quantile() -> None:
    assert Sketch().quantile(0.5) is None
    assert sketch.decode(sketch.encode(Sketch())) == Sketch()
