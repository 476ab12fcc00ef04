"""lightft.budgets: one switch, LIGHTFT_BUDGET, read in one place; verdict words chosen from numbers."""

import pytest

import lightft


@pytest.mark.parametrize("value, expected", [(None, "book"), ("", "book"), ("book", "book"), ("smoke", "smoke"),
                                             (" Smoke ", "smoke")])
def test_budget_and_sized_follow_the_environment(monkeypatch, value, expected):
    if value is None:
        monkeypatch.delenv("LIGHTFT_BUDGET", raising=False)
    else:
        monkeypatch.setenv("LIGHTFT_BUDGET", value)
    assert lightft.budget() == expected
    assert lightft.sized(book=2000, smoke=32) == (2000 if expected == "book" else 32)
    assert lightft.build_note().startswith(f"{expected} budget")


def test_an_unknown_budget_is_refused_with_what_is_accepted(monkeypatch):
    monkeypatch.setenv("LIGHTFT_BUDGET", "full")
    with pytest.raises(ValueError, match=r"'full' is not a budget; accepted: book, smoke"):
        lightft.sized(book=1, smoke=2)


def test_verdict_picks_the_word_from_the_number():
    words = dict(up="faster", down="slower", same="about as fast")
    assert lightft.verdict(0.2, tolerance=0.05, **words) == "faster"
    assert lightft.verdict(-0.2, tolerance=0.05, **words) == "slower"
    assert lightft.verdict(0.03, tolerance=0.05, **words) == "about as fast"
    assert lightft.verdict(0.0, **words) == "about as fast"
    with pytest.raises(ValueError, match="NaN"):
        lightft.verdict(float("nan"), **words)
    with pytest.raises(ValueError, match="tolerance"):
        lightft.verdict(0.1, tolerance=-1, **words)
