"""report.html of the bundled sample run, opened in a real headless Chromium with the network blocked:
no console errors, no request leaves the page, the numbers are candidates.json's, the filters work,
the page is complete without JavaScript and in print. Screenshots of the main views are saved
(FHIRSCREEN_UPDATE_SCREENSHOTS=1 refreshes the reference pictures in docs/screenshots/)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from fhirscreen.cli import main
from tests.browser.chromium import Session, chromium, open_page

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "docs" / "screenshots"
UPDATE = os.environ.get("FHIRSCREEN_UPDATE_SCREENSHOTS") == "1"
MAX_SHOT_HEIGHT = 900


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The README's main job, with --out: the bundled samples as of 2026-06-01."""
    out = tmp_path_factory.mktemp("sample-run")
    result = CliRunner().invoke(main, ["screen", "--out", str(out)])
    assert result.exit_code == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def candidates(sample_run: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((sample_run / "candidates.json").read_text())
    return document


def shot(session: Session, name: str, tmp_path: Path, selector: str | None = None) -> Path:
    path = tmp_path / f"{name}.png"
    if selector:
        element = session.page.locator(selector)
        element.scroll_into_view_if_needed()
        box = element.bounding_box()
        assert box is not None, f"{selector} is not shown"
        if box["height"] > MAX_SHOT_HEIGHT:  # the top of a long card tells enough, in fewer bytes
            session.page.set_viewport_size({"width": 1280, "height": MAX_SHOT_HEIGHT + 40})
            element.evaluate("el => el.scrollIntoView({block: 'start'})")
            box = element.bounding_box()
            assert box is not None
            session.page.screenshot(path=str(path), clip={**box, "height": MAX_SHOT_HEIGHT})
        else:
            element.screenshot(path=str(path))
    else:
        session.page.screenshot(path=str(path))
    assert path.stat().st_size > 5000, f"{name}: screenshot looks empty"
    if UPDATE:
        REFERENCE.mkdir(parents=True, exist_ok=True)
        (REFERENCE / path.name).write_bytes(path.read_bytes())
    return path


def visible_patients(session: Session) -> list[str]:
    rows = session.page.locator("#ranked-table tbody tr:visible td:nth-child(2)")
    return [t.strip() for t in rows.all_inner_texts()]


def shown_once_settled(session: Session, expected: list[str], timeout: float = 5.0) -> list[str]:
    """The visible patients once the page has applied a filter (the form's reset applies it on the next
    tick, and a loaded machine may take a while): what is shown when it equals ``expected``, or after
    ``timeout`` seconds, whatever is shown then."""
    deadline = time.monotonic() + timeout
    while True:
        shown = visible_patients(session)
        if shown == expected or time.monotonic() > deadline:
            return shown
        time.sleep(0.05)


def test_page_loads_offline_without_errors_and_shows_candidates_numbers(
        browser: Any, sample_run: Path, candidates: dict[str, Any], tmp_path: Path) -> None:
    with open_page(browser, sample_run / "report.html") as session:
        page = session.page
        assert session.console_errors == []
        assert session.blocked == [], "the page tried to reach the network"
        assert page.title() == f"{candidates['trial']} screening as of {candidates['as_of']}"
        tiles = dict(zip(page.locator(".tiles .badge").all_inner_texts(),
                         page.locator(".tiles .n").all_inner_texts(), strict=True))
        for status in ("eligible", "possible", "ineligible"):
            assert int(tiles[status]) == sum(1 for p in candidates["patients"] if p["status"] == status)
        rows = page.locator("#ranked-table tbody tr")
        assert rows.count() == len(candidates["patients"])
        for i, patient in enumerate(candidates["patients"]):
            cells = rows.nth(i).locator("td").all_inner_texts()
            counts = [sum(1 for c in patient["criteria"].values() if c["outcome"] == o)
                      for o in ("pass", "fail", "unknown", "manual")]
            assert cells[0] == str(patient["rank"])
            assert cells[1] == patient["patient"].removeprefix("Patient/")
            assert cells[2] == f"{patient['sex']}, {patient['age']}"
            assert cells[3].strip() == patient["status"]
            assert cells[4] == f"{patient['score']:.2f}"
            assert [int(c) for c in cells[5:9]] == counts
        assert page.locator("#shown-count").inner_text() == (
            f"{len(candidates['patients'])} of {len(candidates['patients'])} patients shown")
        # Every patient has a card with every criterion.
        for patient in candidates["patients"]:
            card = page.locator(f"#p-{patient['patient'].removeprefix('Patient/')}")
            assert card.locator("tbody tr").count() == len(patient["criteria"])
        shot(session, "report-top", tmp_path)


def test_filters_change_what_is_shown(
        browser: Any, sample_run: Path, candidates: dict[str, Any], tmp_path: Path) -> None:
    patients = candidates["patients"]
    ids = [p["patient"].removeprefix("Patient/") for p in patients]
    with open_page(browser, sample_run / "report.html") as session:
        page = session.page
        page.get_by_label("ineligible").uncheck()
        page.get_by_label("eligible", exact=True).uncheck()
        possible = [i for i, p in zip(ids, patients, strict=True) if p["status"] == "possible"]
        assert shown_once_settled(session, possible) == possible
        shot(session, "report-filter-possible", tmp_path, "#ranked")
        page.get_by_role("button", name="Show all").click()
        assert shown_once_settled(session, ids) == ids
        page.select_option("#f-criterion", "E6")
        page.select_option("#f-outcome", "fail")
        expected = [i for i, p in zip(ids, patients, strict=True) if p["criteria"]["E6"]["outcome"] == "fail"]
        assert expected and shown_once_settled(session, expected) == expected
        page.select_option("#f-criterion", "")
        page.select_option("#f-outcome", "unknown")
        with_unknowns = [i for i, p in zip(ids, patients, strict=True)
                         if any(c["outcome"] == "unknown" for c in p["criteria"].values())]
        assert shown_once_settled(session, with_unknowns) == with_unknowns
        page.get_by_role("button", name="Show all").click()
        assert shown_once_settled(session, ids) == ids
        page.get_by_label("Patient id").fill(ids[-1][:12])
        matching = [i for i in ids if ids[-1][:12] in i]
        assert shown_once_settled(session, matching) == matching
        assert page.locator("#shown-count").inner_text().startswith(f"{len(visible_patients(session))} of ")
        assert session.console_errors == [] and session.blocked == []


def test_keyboard_reaches_the_filters_and_the_cards(
        browser: Any, sample_run: Path, candidates: dict[str, Any]) -> None:
    with open_page(browser, sample_run / "report.html") as session:
        page = session.page
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.textContent") == "Skip to the ranked list"
        page.focus("input[name=status][value=eligible]")
        page.keyboard.press("Space")  # unchecks "eligible"
        not_eligible = [p["patient"].removeprefix("Patient/") for p in candidates["patients"]
                        if p["status"] != "eligible"]
        shown = shown_once_settled(session, not_eligible)
        assert shown and not any(p["status"] == "eligible" and p["patient"].removeprefix("Patient/") in shown
                                 for p in candidates["patients"])
        first = next(p for p in candidates["patients"] if p["status"] != "eligible")["patient"]
        first = first.removeprefix("Patient/")
        link = page.locator(f'#ranked-table a[href="#p-{first}"]')
        link.focus()
        page.keyboard.press("Enter")
        page.wait_for_url(f"**#p-{first}", timeout=5000)
        assert page.evaluate("document.querySelector(':target').id") == f"p-{first}"


def test_views_of_the_day0_timeline_worklist_attrition_and_a_card(
        browser: Any, sample_run: Path, candidates: dict[str, Any], tmp_path: Path) -> None:
    with open_page(browser, sample_run / "report.html") as session:
        page = session.page
        timeline = page.locator("#day0 svg.timeline")
        assert timeline.count() == 1 and "washouts end 2026-" in (timeline.text_content() or "")
        funnel = page.locator("#attrition svg.funnel text.val").all_text_contents()
        remaining = [row["remaining"] for row in candidates["attrition"]]
        assert [int(t.split(" ")[0]) for t in funnel] == remaining
        ordered = {step for w in candidates["worklist"] for step in (i["next_step"] for i in w["items"])}
        shown = set(page.locator("#worklist .orders > li > strong").all_inner_texts())
        assert shown == ordered
        shot(session, "report-day0", tmp_path, "#day0 svg.timeline")
        shot(session, "report-worklist", tmp_path, "#worklist")
        shot(session, "report-attrition", tmp_path, "#attrition svg.funnel")
        possible = next(p for p in candidates["patients"] if p["status"] == "possible")
        shot(session, "report-card", tmp_path, f"#p-{possible['patient'].removeprefix('Patient/')}")
        assert session.console_errors == [] and session.blocked == []


def test_without_javascript_the_table_is_complete_and_print_shows_everyone(
        browser: Any, sample_run: Path, candidates: dict[str, Any]) -> None:
    with open_page(browser, sample_run / "report.html", javascript=False) as session:
        page = session.page
        assert page.locator("#filters").is_hidden()  # controls appear only when they can work
        assert page.locator("#ranked-table tbody tr:visible").count() == len(candidates["patients"])
    with open_page(browser, sample_run / "report.html") as session:
        page = session.page
        page.get_by_label("ineligible").uncheck()
        folded = page.locator("details.evidence:not([open]) li")
        assert folded.count() > 0 and not folded.first.is_visible()  # evidence of passed criteria is folded
        page.emulate_media(media="print")
        assert page.locator("#filters").is_hidden()
        assert page.locator("#ranked-table tbody tr:visible").count() == len(candidates["patients"])
        assert folded.first.is_visible()  # print shows every piece of evidence
        pdf = page.pdf(format="A4")
        assert pdf.startswith(b"%PDF") and len(pdf) > 50_000


CONTRAST_JS = """
() => {
  const rgb = s => s.match(/[\\d.]+/g).slice(0, 3).map(Number);
  const lum = c => { const [r, g, b] = c.map(v => { v /= 255;
    return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
  return Array.from(document.querySelectorAll('.badge')).map(el => {
    const st = getComputedStyle(el);
    const [a, b] = [lum(rgb(st.color)), lum(rgb(st.backgroundColor))].sort((x, y) => y - x);
    return {kind: el.className, text: el.textContent.trim(), shape: el.querySelector('svg use') !== null,
            ratio: (a + 0.05) / (b + 0.05)};
  });
}
"""


def test_status_is_told_by_word_and_shape_with_readable_contrast(browser: Any, sample_run: Path) -> None:
    with open_page(browser, sample_run / "report.html") as session:
        badges = session.page.evaluate(CONTRAST_JS)
    kinds = {b["kind"].removeprefix("badge ") for b in badges}
    assert kinds == {"eligible", "possible", "ineligible", "pass", "fail", "unknown", "manual"}
    for badge in badges:
        assert badge["text"] == badge["kind"].removeprefix("badge ")  # the word, not only a colour
        assert badge["shape"]  # and an icon whose shape differs per status
        assert badge["ratio"] >= 4.5, badge  # WCAG AA for normal text
