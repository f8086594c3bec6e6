"""The app in a real browser: Playwright driving Debian's Chromium (never a downloaded one)
against the app with the shipped models, on a port the system picks (tests/helpers.serving).
Screenshots of every tab go to build/browser/ (a test artifact, not committed;
docs/screenshots/ holds copies of them).

Skipped, with the reason, where /usr/bin/chromium (SHIYU_CHROMIUM names another) or Playwright
is missing; under CI (the CI variable set) that fails instead, since `.ci/run` installs chromium
and fonts-noto-cjk with apt and the run must include these tests."""
import json
import os
import re
import time
from pathlib import Path

import pytest

CHROMIUM = Path(os.environ.get("SHIYU_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = Path(__file__).resolve().parents[1] / "build" / "browser"
# As root in a sandbox with no network: no sandboxing, no GPU, no background connections
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def missing(why: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{why}; under CI the browser tests must run", pytrace=False)
    pytest.skip(why, allow_module_level=True)


try:
    from playwright import sync_api
except ImportError:
    missing("playwright is not installed")
if not CHROMIUM.exists():
    missing(f"no {CHROMIUM} (apt install chromium fonts-noto-cjk)")
expect = sync_api.expect
expect.set_options(timeout=60_000)             # the first request of a task loads its model
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

from tests.helpers import serving  # noqa: E402  (after the skips: it imports torch)


@pytest.fixture(scope="module")
def url():
    """The real server (`python app.py`: Gradio mounted beside the /v1 routes, with the
    shipped models)."""
    from app import server
    with serving(server()) as address:
        yield address


SWEEP = 2           # seconds: Gradio's cache sweep in `swept_url` (600 in `python app.py`)


@pytest.fixture(scope="module")
def swept_url():
    """The real server with Gradio's cache sweep (Blocks(delete_cache=...)) every SWEEP
    seconds for files older than SWEEP seconds."""
    from app import server
    from server import files
    age, files.SCRATCH_AGE = files.SCRATCH_AGE, SWEEP
    try:
        app = server()
    finally:
        files.SCRATCH_AGE = age
    with serving(app) as address:
        yield address


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b
        b.close()


def open_page(browser, address: str, size=(1280, 900)):
    context = browser.new_context(viewport={"width": size[0], "height": size[1]},
                                  accept_downloads=True)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=address)
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(address)
    return page


@pytest.fixture
def page(browser, url, request):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = open_page(browser, url, getattr(request, "param", (1280, 900)))
    yield page
    page.context.close()


def tab(page, name: str):
    page.get_by_role("tab", name=name).click()


def visible(page, label: str):
    return page.get_by_label(label).filter(visible=True).first


def no_error_badge(page):
    """No output is marked with Gradio's "Error" badge (an event that raised puts one over
    each of its outputs, hiding what they showed)."""
    expect(page.locator("[data-testid='status-tracker'] .error").filter(visible=True)) \
        .to_have_count(0)


def error_toast(page, words: str):
    toast = page.locator(".toast-body.error").filter(has_text=words)
    expect(toast).to_be_visible()
    page.locator(".toast-body .toast-close").first.click()        # (out of later screenshots)
    expect(toast).to_have_count(0)


def turns(page, n: int):
    page.wait_for_function(f"(window.shiyuTurns || 0) >= {n}")        # n turns have ended


def normal(text: str) -> str:
    return " ".join(text.split())


def test_chat_holds_a_conversation(page):
    box = page.get_by_placeholder("Type a message and press Enter")
    messages = ["hi! how are you?", "what do you do for fun?", "do you like music?"]
    for i, message in enumerate(messages, 1):
        box.fill(message)
        box.press("Enter")
        turns(page, i)
        expect(page.locator(".bot")).to_have_count(i)
        assert page.locator(".bot").last.inner_text().strip()
        expect(box).to_have_value("")
        if i == 2:                                  # while the whole chat is in sight
            page.screenshot(path=ARTIFACTS / "chat.png")
    assert page.locator(".user").all_inner_texts() == messages


def test_a_refused_message_leaves_the_chat_as_it_was(page):
    box = page.get_by_placeholder("Type a message and press Enter")
    box.fill("hi! how are you?")
    box.press("Enter")
    turns(page, 1)
    before = page.locator(".message-wrap").inner_text()
    box.fill("   ")
    box.press("Enter")
    turns(page, 2)
    error_toast(page, "the message is empty")
    no_error_badge(page)
    expect(page.locator(".bot")).to_have_count(1)
    assert page.locator(".message-wrap").inner_text() == before
    expect(box).to_be_editable()
    page.get_by_role("button", name="Settings ▼").click()
    visible(page, "Seed (empty = random)").fill("abc")
    box.fill("and you?")
    box.press("Enter")
    turns(page, 3)
    error_toast(page, "seed must be a whole number")
    no_error_badge(page)
    expect(box).to_have_value("and you?")           # kept, to send again
    assert page.locator(".message-wrap").inner_text() == before


@pytest.mark.parametrize("message", ["tell me about your weekend", "你喜欢什么音乐？"])
def test_the_reply_that_streams_in_is_the_reply_that_stays(page, message):
    from chatbot.bot import Bot
    from server.chat import reply
    page.get_by_role("button", name="Settings ▼").click()
    visible(page, "Seed (empty = random)").fill("1")
    # every text the reply shows on its way, as the page shows it
    page.evaluate("""() => { window.seen = []; setInterval(() => {
        const b = document.querySelectorAll('.bot');
        if (b.length) window.seen.push(b[b.length - 1].innerText); }, 5); }""")
    box = page.get_by_placeholder("Type a message and press Enter")
    box.fill(message)
    box.press("Enter")
    turns(page, 1)
    final = normal(page.locator(".bot").last.inner_text())
    assert final == normal(reply([message], Bot.TEMPERATURE, "1"))
    seen = [normal(x) for x in page.evaluate("window.seen") if x.strip()]
    assert seen and all(final.startswith(x) for x in seen), (final, seen)


def test_a_chat_example_runs(page):
    page.get_by_text("what kind of music do you like?").click()
    turns(page, 1)
    assert page.locator(".user").all_inner_texts() == ["what kind of music do you like?"]
    assert page.locator(".bot").last.inner_text().strip()


def test_the_poem_that_streams_in_is_the_poem_shown_copied_and_saved(page):
    tab(page, "Poems 诗")
    out = page.locator("#poems textarea")
    visible(page, "Seed (empty = random)").fill("1")
    # record every value the output takes while the poem streams in
    out.evaluate("el => { window.seen = []; setInterval(() => window.seen.push(el.value), 5); }")
    page.get_by_role("button", name="Write 作诗").click()
    with page.expect_download() as dl:
        page.locator("a[href*='poems.txt']").first.click()
    text = out.input_value()
    title, *verses = text.split("\n")
    assert title == "明月 · 七绝" and len(verses) == 4, text
    assert all(re.fullmatch(r"[\u4e00-\u9fff]{7}[，。]", v) for v in verses), verses
    streamed = [v for v in page.evaluate("window.seen") if v]
    assert streamed and all(text.startswith(v) for v in streamed), streamed[-3:]
    # the copy button and poems.txt take the poem; its plan and score are in the details
    assert Path(dl.value.path()).read_text(encoding="utf-8") == text + "\n"
    page.locator("#poems").get_by_role("button", name="Copy").click()
    assert page.evaluate("navigator.clipboard.readText()") == text
    expect(page.locator("#poem-details")).to_contain_text("关键词")
    expect(page.locator("#poem-details")).to_contain_text(re.compile(r"score -?\d+\.\d{3}"))
    page.screenshot(path=ARTIFACTS / "poems.png", full_page=True)


def test_a_refused_poem_leaves_the_poem_shown(page):
    tab(page, "Poems 诗")
    page.get_by_text("秋夜 · 五律 · 蟋蟀 砧声").click()             # an example runs
    out = page.locator("#poems textarea")
    expect(out).to_have_value(re.compile(r"^秋夜 · 五律\n"))
    expect(page.locator("#poem-details")).to_contain_text("蟋蟀")
    before = (out.input_value(), page.locator("#poem-details").inner_text())
    visible(page, "Seed (empty = random)").fill("abc")
    page.get_by_role("button", name="Write 作诗").click()
    error_toast(page, "seed must be a whole number")
    no_error_badge(page)
    assert (out.input_value(), page.locator("#poem-details").inner_text()) == before
    expect(page.locator("a[href*='poems.txt']")).to_have_count(1)


def test_tune_score_fits_its_column(page):
    tab(page, "Tunes 曲")
    visible(page, "Seed (empty = random)").fill("1")
    tunes = page.get_by_label("number input for Tunes")
    tunes.fill("2")
    tunes.press("Enter")
    page.get_by_role("button", name="Compose 作曲").click()
    svgs = page.locator("svg.definition-scale, div.prose svg, .html-container svg")
    expect(page.get_by_text("Tune 2")).to_be_visible()
    column = page.get_by_text("Tune 2").locator("xpath=ancestor::div[contains(@class,"
                                                "'column')][1]").bounding_box()
    boxes = [b for b in (s.bounding_box() for s in svgs.all()) if b and b["width"] > 100]
    assert len(boxes) >= 2
    for b in boxes:
        assert column["x"] - 1 <= b["x"] and b["x"] + b["width"] <= column["x"] + \
            column["width"] + 1, (b, column)
    page.screenshot(path=ARTIFACTS / "tunes.png", full_page=True)


def test_a_refused_tune_leaves_the_tune_shown_and_the_player_cannot_share(page):
    tab(page, "Tunes 曲")
    page.get_by_text("jig in D, 6/8").click()                       # an example runs
    abc = page.locator("#abc")
    expect(abc).to_contain_text("K:Dmaj")
    expect(page.get_by_text(re.compile(r"jig · AABB · score"))).to_be_visible()
    before = abc.inner_text()
    svg = page.locator(".html-container svg").first.inner_html()
    visible(page, "Key (ABC, e.g. D, Ador, Emin, Gmix)").fill("Hmaj")
    page.get_by_role("button", name="Compose 作曲").click()
    error_toast(page, "unknown key")
    no_error_badge(page)
    assert abc.inner_text() == before
    assert page.locator(".html-container svg").first.inner_html() == svg
    expect(page.locator("#listen audio, #listen [data-testid='waveform-Listen']").first) \
        .to_be_attached()
    # the player downloads but has no Share (Hugging Face Spaces only); the ABC box copies
    # but saves nothing (it would be file.txt: tunes.abc is in the downloads)
    expect(page.locator("#listen").get_by_role("button", name="Share")).to_have_count(0)
    expect(page.locator("#listen").get_by_role("button", name="Download")).to_have_count(1)
    expect(abc.get_by_role("button", name="Download")).to_have_count(0)
    expect(page.locator("a[href$='tunes.abc']")).to_have_count(1)


def test_batch_runs_and_downloads(page, tmp_path):
    tab(page, "Batch 批量")
    run = page.get_by_role("button", name="Run")
    expect(run).to_have_class(re.compile(r"\bprimary\b"))       # as every tab's action
    themes = tmp_path / "themes.txt"
    themes.write_text("明月\n秋思\n", encoding="utf-8")
    page.locator("input[type=file]").first.set_input_files(str(themes))
    # uploaded: Run may start (the file's row; its text may come as "themes .txt", the stem
    # and the extension in two elements, so by the cell's accessible name)
    expect(page.get_by_role("cell", name="themes.txt")).to_be_visible()
    run.click()
    expect(page.get_by_text("2 items, 0 with errors")).to_be_visible()
    with page.expect_download() as dl:
        page.locator("a[href*='poems.jsonl']").first.click()
    rows = [json.loads(x) for x in Path(dl.value.path()).read_text(encoding="utf-8")
            .splitlines()]
    assert [r["input"]["theme"] for r in rows] == ["明月", "秋思"]
    assert all(len(r["poems"][0]["lines"]) == 4 for r in rows)
    # the preview shows the first results on the page
    expect(page.get_by_role("cell", name=rows[1]["poems"][0]["poem"])).to_be_visible()
    page.screenshot(path=ARTIFACTS / "batch.png")
    # with no file, Run says so and the result stays
    page.get_by_label("Clear").first.click()
    run.click()
    error_toast(page, "upload a file")
    no_error_badge(page)
    expect(page.get_by_text("2 items, 0 with errors")).to_be_visible()
    expect(page.get_by_role("cell", name=rows[1]["poems"][0]["poem"])).to_be_visible()


def test_the_poem_form_shows_for_poem_batches_only(page):
    tab(page, "Batch 批量")
    form = page.get_by_label("Poem form")
    expect(form).to_be_visible()
    for task, shown in (("chat", False), ("tune", False), ("poem", True)):
        page.get_by_label(task, exact=True).check()
        expect(form).to_be_visible() if shown else expect(form).to_be_hidden()


def test_batch_examples_run_after_gradios_cache_sweep(browser, swept_url):
    """Gradio's cache copies of the examples' files outlive its sweep: the examples run
    as on a fresh server (they stopped ten minutes after `python app.py` started)."""
    page = open_page(browser, swept_url)
    time.sleep(3 * SWEEP)                   # the sweep has passed over every file
    tab(page, "Batch 批量")
    page.get_by_text("3 tune settings → tunes").click()          # an example runs
    expect(page.get_by_label("tune", exact=True)).to_be_checked()
    expect(page.get_by_text("3 items, 0 with errors")).to_be_visible()
    time.sleep(2 * SWEEP)
    page.get_by_text("4 themes → poems").click()
    expect(page.get_by_text("4 items, 0 with errors")).to_be_visible()
    expect(page.get_by_label("Poem form")).to_be_visible()
    no_error_badge(page)
    page.context.close()


def test_models_tab_shows_tables_and_curves(page):
    tab(page, "Models")
    expect(page.get_by_role("cell", name="validation perplexity", exact=True)).to_be_visible()
    expect(page.get_by_role("columnheader", name="poem", exact=True)).to_be_visible()
    expect(page.get_by_text("Validation perplexity per epoch")).to_be_visible()
    expect(page.get_by_text(re.compile(r"\b1 epochs\b"))).to_have_count(0)
    expect(page.locator("#scroll-hint")).to_be_hidden()             # the table fits
    page.screenshot(path=ARTIFACTS / "models.png", full_page=True)
    page.get_by_role("button", name="Reload cards").click()       # table and plots follow
    page.wait_for_timeout(1000)
    expect(page.get_by_role("cell", name="validation perplexity", exact=True)).to_be_visible()
    expect(page.get_by_text("Validation perplexity per epoch")).to_be_visible()


@pytest.mark.parametrize("page", [(390, 844)], indirect=True)
def test_at_phone_width_the_models_table_says_it_scrolls_and_keeps_its_row_names(page):
    tab(page, "Models")
    expect(page.locator("#scroll-hint")).to_be_visible()
    expect(page.locator("#scroll-hint")).to_contain_text("swipe it sideways")
    table = page.locator("#models-table table")
    width, inner = table.evaluate("t => [t.clientWidth, t.scrollWidth]")
    assert inner > width, (inner, width)                 # more to see than the screen shows
    table.evaluate("t => { t.scrollLeft = t.scrollWidth; }")
    name = page.get_by_role("cell", name="validation perplexity", exact=True).bounding_box()
    assert 0 <= name["x"] and name["x"] + name["width"] <= 390, name   # row names stay


@pytest.mark.parametrize("page", [(390, 844)], indirect=True)
def test_phone_width_shows_every_tab_and_nothing_wider_than_the_screen(page):
    for name in ["Chat 聊天", "Poems 诗", "Tunes 曲", "Batch 批量", "Models"]:
        t = page.get_by_role("tab", name=name)
        expect(t).to_be_visible()                  # wrapped onto a second row, not in a menu
        t.click()
        expect(page.locator(".tabitem:visible .block").first).to_be_visible()
        page.wait_for_timeout(500)                  # plots and scores lay themselves out
        assert page.evaluate("document.documentElement.scrollWidth") <= 390, name
        # everything on the tab lies within the screen (wide tables scroll inside their block)
        rights = page.evaluate("""() => Array.from(document.querySelectorAll(
            '.tabitem .block')).filter(e => e.offsetParent)
            .map(e => e.getBoundingClientRect().right)""")
        assert rights and max(rights) <= 390, (name, rights)
        page.screenshot(path=ARTIFACTS / f"phone-{name.split()[0].lower()}.png", full_page=True)
    page.get_by_role("tab", name="Poems 诗").click()
    example = page.get_by_text("秋夜 · 五律 · 蟋蟀 砧声")
    expect(example).to_be_visible()
    box = example.bounding_box()
    assert box["x"] + box["width"] <= 390                  # the examples are not cut off
