"""Trial files parsed once per content (fhirscreen/trial/parsed_cache.py): a kept copy is only ever
the same data, an edited file is parsed afresh, and a cache that cannot be used changes nothing."""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path

import pytest

from fhirscreen.paths import default_trial_file
from fhirscreen.trial import parsed_cache
from fhirscreen.trial.loader import TrialFileError, load_trial


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("FHIRSCREEN_CACHE", raising=False)
    return tmp_path / "cache" / "fhirscreen"


def kept_files(cache: Path) -> list[Path]:
    return sorted(cache.glob("trial-*.json")) if cache.exists() else []


def test_the_bundled_trial_loads_the_same_from_its_kept_copy(cache: Path) -> None:
    first = load_trial()
    assert len(kept_files(cache)) == 1
    second = load_trial()  # from the kept copy
    assert second.definition == first.definition
    assert [c.id for c in second.criteria] == [c.id for c in first.criteria]
    assert second.value_sets.keys() == first.value_sets.keys()


def test_an_edited_trial_file_is_parsed_afresh(cache: Path, tmp_path: Path) -> None:
    path = tmp_path / "trial.yaml"
    text = default_trial_file().read_text(encoding="utf-8")
    path.write_text(text, encoding="utf-8")
    load_trial(path)
    title = load_trial(path).definition.trial.title
    path.write_text(text.replace(f"title: {title}", "title: An edited title", 1), encoding="utf-8")
    assert load_trial(path).definition.trial.title == "An edited title"
    assert len(kept_files(cache)) == 2


def test_a_damaged_kept_copy_is_parsed_again_and_replaced(cache: Path) -> None:
    expected = load_trial().definition
    (kept,) = kept_files(cache)
    kept.write_bytes(b'{"trial": tru')  # cut short
    assert load_trial().definition == expected
    assert kept.read_bytes().startswith(b"{") and len(kept.read_bytes()) > 1000


def test_mistakes_are_reported_with_their_line_whether_or_not_the_file_was_kept(
    cache: Path, tmp_path: Path
) -> None:
    path = tmp_path / "trial.yaml"
    text = default_trial_file().read_text(encoding="utf-8").replace("  title:", "  titel:", 1)
    path.write_text(text, encoding="utf-8")
    messages = []
    for _ in range(2):
        with pytest.raises(TrialFileError) as caught:
            load_trial(path)
        messages.append(str(caught.value))
    assert messages[0] == messages[1]
    assert f"{path}:" in messages[0] and "titel" in messages[0]


def test_data_that_json_cannot_give_back_exactly_is_not_kept(cache: Path) -> None:
    for text in ("when: 2026-01-01\n", "1: one\n", "value: .nan\n", f"big: {2**70}\n"):
        parsed_cache.parsed_text(text, _yaml)
        assert kept_files(cache) == [], text
    again = parsed_cache.parsed_text("when: 2026-01-01\n", _yaml)
    assert again == {"when": date(2026, 1, 1)}  # a date still, not the text of one


def test_an_unwritable_cache_folder_changes_nothing(cache: Path) -> None:
    cache.parent.mkdir(parents=True)
    cache.write_text("a file where the folder should be", encoding="utf-8")
    assert [c.id for c in load_trial().criteria][:2] == ["I1", "I2"]


def test_turned_off(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FHIRSCREEN_CACHE", "off")
    load_trial()
    assert kept_files(cache) == []


def test_kept_copies_are_whole_files_named_by_content(cache: Path) -> None:
    parsed_cache.parsed_text("a: 1\n", _yaml)
    (kept,) = kept_files(cache)
    assert kept.read_bytes() == b'{"a":1}'
    assert not [p for p in os.listdir(cache) if p.endswith(".tmp")]


def _yaml(text: str) -> object:
    import yaml

    return yaml.safe_load(text)
