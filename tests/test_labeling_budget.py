"""Tests for dbsal_backend.engine.labeling_budget: measured effort and what a limit leaves."""

import json

import pytest

from dbsal_backend.engine.labeling_budget import BUDGET_UNITS, Budget, Effort


def test_effort_adds_field_by_field_and_reads_any_unit():
    total = Effort(images=1, regions=4, pixels=100) + Effort(images=2, regions=0, pixels=7)
    assert total == Effort(images=3, regions=4, pixels=107)
    assert [total.in_unit(unit) for unit in BUDGET_UNITS] == [3, 4, 107]
    assert Effort() + Effort() == Effort(0, 0, 0)
    assert json.loads(json.dumps(total.to_dict())) == {"images": 3, "regions": 4, "pixels": 107}


@pytest.mark.parametrize("unit, spent, left, exhausted", [
    ("regions", Effort(regions=3), 7, False),
    ("regions", Effort(images=50, pixels=10**6, regions=9), 1, False),  # other units do not count
    ("regions", Effort(regions=10), 0, True),
    ("regions", Effort(regions=25), 0, True),  # overspent: nothing left, never negative
    ("images", Effort(images=9, regions=10), 1, False),
    ("pixels", Effort(pixels=10), 0, True),
])
def test_left_and_exhausted(unit, spent, left, exhausted):
    budget = Budget(limit=10, unit=unit)
    assert budget.left(spent) == left
    assert budget.exhausted(spent) is exhausted


def test_unlimited_budget_is_never_exhausted():
    budget = Budget()
    assert (budget.limit, budget.unit) == (None, "regions")
    huge = Effort(images=10**9, regions=10**9, pixels=10**12)
    assert budget.left(huge) is None and budget.exhausted(huge) is False


def test_status_is_json_ready():
    status = Budget(limit=100, unit="pixels").status(Effort(images=1, regions=2, pixels=60))
    assert json.loads(json.dumps(status)) == {
        "unit": "pixels", "limit": 100, "left": 40, "exhausted": False,
        "spent": {"images": 1, "regions": 2, "pixels": 60}}
    status = Budget().status(Effort())
    assert (status["limit"], status["left"], status["exhausted"]) == (None, None, False)


@pytest.mark.parametrize("kwargs, match", [
    ({"unit": "superpixels"}, "unit must be one of"),
    ({"unit": "Regions"}, "unit must be one of"),
    ({"limit": 0}, "positive int"),
    ({"limit": -5}, "positive int"),
    ({"limit": 2.5}, "positive int"),
    ({"limit": True}, "positive int"),
    ({"limit": "10"}, "positive int"),
])
def test_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Budget(**kwargs)


def test_records_are_frozen():
    with pytest.raises(AttributeError):
        Budget(limit=3).limit = 4
    with pytest.raises(AttributeError):
        Effort().pixels = 1
