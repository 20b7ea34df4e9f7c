"""Tests for dbsal_backend.engine.checks: the checks the edges share."""

import numpy as np
import pytest

from dbsal_backend.engine.checks import MAX_ID, check_fraction, check_id, check_int, is_int, is_number


@pytest.mark.parametrize("value", [1, 2**63 - 1, np.int64(5), np.uint8(200)])
def test_check_id_accepts_ids_in_range(value):
    assert check_id(value) == int(value) and type(check_id(value)) is int
    assert MAX_ID == 2**63 - 1


@pytest.mark.parametrize("value, error", [
    (0, ValueError), (-1, ValueError), (2**63, ValueError), (10**30, ValueError),
    (True, TypeError), (False, TypeError), (np.bool_(True), TypeError), ("7", TypeError),
    ("²", TypeError), ("٣", TypeError), (7.0, TypeError), (None, TypeError),
])
def test_check_id_refuses_everything_else(value, error):
    with pytest.raises(error, match="task id"):
        check_id(value, "task")


def test_a_bool_is_never_a_number():
    assert is_int(3) and is_int(np.int32(3)) and not is_int(3.0) and not is_int("3")
    assert is_number(0.5) and is_number(np.float32(0.5)) and is_number(2)
    for flag in (True, False, np.bool_(True)):
        assert not is_int(flag) and not is_number(flag)


def test_check_int_and_check_fraction():
    check_int("n", 0, 0)
    for bad in (-1, True, 1.0, None):
        with pytest.raises(ValueError, match=r"n must be an int >= 0 or None, got"):
            check_int("n", bad, 0, " or None")
    check_fraction("share", 1)
    for bad in (0, 1.5, True, "0.5", None):
        with pytest.raises(ValueError, match=r"share must be in \(0, 1\]"):
            check_fraction("share", bad)
