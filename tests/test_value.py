"""``Value``, the base of the package's small immutable classes: what a dataclass gave them."""

from __future__ import annotations

from typing import Final

import pytest

from pytest_outbound._decide import Entry, Verdict
from pytest_outbound._hosts import HostPattern
from pytest_outbound._value import Value


class Pair(Value):
    __slots__ = _fields = ("left", "right")

    def __init__(self, left: object, right: object) -> None:
        self.left: Final = left
        self.right: Final = right


class OtherPair(Pair):
    __slots__ = ()


class Labelled(Value):
    _fields = ("name", "label")
    _compared = ("name",)
    __slots__ = _fields

    def __init__(self, name: str, label: str) -> None:
        self.name: Final = name
        self.label: Final = label


def test_equal_and_hashed_by_the_fields_in_order() -> None:
    assert Pair(1, "a") == Pair(1, "a")
    assert hash(Pair(1, "a")) == hash(Pair(1, "a"))
    assert Pair(1, "a") != Pair("a", 1)
    assert len({Pair(1, "a"), Pair(1, "a"), Pair(1, "b")}) == 2


def test_only_the_same_class_is_equal_as_with_a_dataclass() -> None:
    assert Pair(1, 2) != OtherPair(1, 2)
    assert Pair(1, 2) != (1, 2)
    assert Pair(1, 2).__eq__((1, 2)) is NotImplemented


def test_compared_fields_may_be_fewer_than_the_shown_ones() -> None:
    assert Labelled("a", "x") == Labelled("a", "y")
    assert hash(Labelled("a", "x")) == hash(Labelled("a", "y"))
    assert Labelled("a", "x") != Labelled("b", "x")
    assert repr(Labelled("a", "x")) == "Labelled(name='a', label='x')"


def test_repr_names_the_class_and_each_field() -> None:
    assert repr(Pair(1, "a")) == "Pair(left=1, right='a')"
    assert repr(Verdict(False, None, ("undocumented",))) == (
        "Verdict(allowed=False, destination=None, reasons=('undocumented',), detail=(),"
        " closest=None)"
    )


def test_unhashable_parts_make_an_unhashable_value_as_with_a_frozen_dataclass() -> None:
    with pytest.raises(TypeError, match="unhashable"):
        hash(Pair({}, 1))


def test_the_package_classes_compare_as_their_dataclasses_did() -> None:
    pattern = HostPattern.parse("*.example.com")
    assert Entry("x", pattern=pattern) == Entry("x", pattern=HostPattern.parse("*.example.com"))
    assert Entry("x", destination="x") != Entry("x", pattern=pattern)
    assert {Verdict(True, "a"), Verdict(True, "a"), Verdict(True, "a", closest="b")} == {
        Verdict(True, "a"),
        Verdict(True, "a", closest="b"),
    }
