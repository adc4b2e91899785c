"""The paper's words live in paper/lang/<lang>.toml: every language says every sentence."""

from __future__ import annotations

import dataclasses
import string
import tomllib
from pathlib import Path

import pytest
from fixtures.analysis import fixture_analysis

from cloudbench.paper import prose
from cloudbench.paper.latex import LANGUAGES, escape

LANG_DIR = Path(__file__).resolve().parent.parent / "paper" / "lang"


def words(lang: str) -> dict[str, dict[str, str]]:
    return tomllib.loads((LANG_DIR / f"{lang}.toml").read_text(encoding="utf-8"))


def fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def test_every_language_has_every_key_with_the_same_fields() -> None:
    reference = words("en")
    for lang in LANGUAGES:
        found = words(lang)
        assert set(found) == set(reference), lang
        for table in reference:
            assert set(found[table]) == set(reference[table]), (lang, table)
            for key, text in reference[table].items():
                assert fields(found[table][key]) == fields(text), (lang, table, key)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_sentence_is_written_for_every_decision(lang: str) -> None:
    comparison = fixture_analysis().comparisons[0]
    for alternative in ("two-sided", "less", "greater"):
        for significant in (True, False):
            c = dataclasses.replace(comparison, significant=significant)
            text = prose.conclusion(c, lang, alternative)
            assert text.endswith(".") and "{" not in text.replace("{}", "")
        for pairs in ([("pc", "colab")], [("pc", "colab"), ("pc", "lab")]):
            h0, h1 = prose.hypotheses("train_s", pairs, lang, alternative)
            assert h0 != h1 and h0.endswith(".") and h1.endswith(".")


def test_the_reference_studys_sentence_in_both_languages() -> None:
    c = next(c for c in fixture_analysis().comparisons if c.metric == "train_s")
    c = dataclasses.replace(c, significant=False, a="pc", b="colab", dataset="sports")
    en = prose.conclusion(c, "en")
    es = prose.conclusion(c, "es")
    assert en.startswith("There is no significant difference in training time between pc "
                         "and colab on sports (")
    assert es.startswith("No existe diferencia significativa en el tiempo de entrenamiento "
                         "entre pc y colab con el DataSet sports (")
    assert escape(prose.the("my_column", "es")) == "la métrica my\\_column"


def test_the_stopping_rule_in_words() -> None:
    rule = {"repetitions": 7, "target_halfwidth": 0.05, "met": True, "metric": "train_s",
            "halfwidths": {"shapes: a vs b": 0.042}}
    assert escape(prose.stopping_text(rule, "en")).endswith(
        "the study stopped after 7 repetitions: the target was met (widest: $\\pm$4.2\\,\\%).")
    assert "de la razón de medianas del tiempo de entrenamiento" in \
        escape(prose.stopping_text(rule, "es"))
