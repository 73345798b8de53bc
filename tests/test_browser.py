"""The app in a real browser: Debian's chromium driven by Playwright against ``ragtune chat`` on a loopback port.

Runs the bundled embedder and model on the sample corpus. Screenshots go to
``build/screenshots/``. Skipped only when chromium or Playwright is absent.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from assistant.app.logins import USERS_FILE, add_user
from assistant.conversations import CONVERSATIONS_FILE, Conversations
from ingest.embedding import cpu_has_bf16
from tests.conftest import ROOT, free_port, trained_adapter

CHROMIUM = "/usr/bin/chromium"
SHOTS = ROOT / "build" / "screenshots"

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _demo_home(tmp_path: Path, bundled_llm_models: Path) -> Path:
    """A data home with the converted bundled model and a registered adapter; skips without chromium."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is absent: apt-get install chromium")
    pytest.importorskip("playwright")
    home = tmp_path / "home"
    shutil.copytree(bundled_llm_models, home / "models")
    model = next((home / "models").iterdir())
    trained_adapter(str(model), home, "demo", recorded_base="HuggingFaceTB/SmolLM2-135M-Instruct")
    return home


@pytest.fixture
def app_url(tmp_path: Path, bundled_llm_models: Path, bundled_embedder: str) -> Iterator[tuple[str, Path]]:
    home = _demo_home(tmp_path, bundled_llm_models)
    port = free_port()
    log = (tmp_path / "app.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "assistant", "chat", "--port", str(port), "--set", "answer_tokens=40"],
        env={**os.environ, "RAGTUNE_HOME": str(home)},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.time() + 300
        while "serving on" not in (tmp_path / "app.log").read_text():
            assert process.poll() is None, (tmp_path / "app.log").read_text()
            assert time.time() < deadline, "the app did not start in 5 minutes"
            time.sleep(0.5)
        with socket.create_connection(("127.0.0.1", port), timeout=30):
            pass
        yield f"http://127.0.0.1:{port}", home
    finally:
        process.terminate()
        process.wait(30)
        log.close()


def _bot_text(page) -> str:
    bots = page.locator("#chat .message.bot, #chat [data-testid='bot']")
    return bots.last.inner_text() if bots.count() else ""


def _ask(page, question: str) -> list[str]:
    """Send a question; return the answer's texts as seen while it streamed (sources at the end)."""
    before = page.locator("#chat details.source").count()
    page.fill("#question textarea", question)
    page.click("#send")
    seen: list[str] = []
    deadline = time.time() + 240
    while page.locator("#chat details.source").count() <= before:
        assert time.time() < deadline, "no answer with sources within 4 minutes"
        text = _bot_text(page)
        if text and (not seen or seen[-1] != text):
            seen.append(text)
        time.sleep(0.05)
    seen.append(_bot_text(page))
    return seen


def test_chat_documents_and_compare_in_a_real_browser(app_url: tuple[str, Path], tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    url, home = app_url
    SHOTS.mkdir(parents=True, exist_ok=True)
    zork = tmp_path / "zork-club.md"
    zork.write_text("# Zork club\n\nThe secret password of the Zork club is PINEAPPLE. Members meet on Tuesdays.\n")
    with sync_playwright() as p:
        browser, page = _open(p)
        page.goto(url)
        page.wait_for_selector("#question textarea", timeout=60_000)

        # a question about the sample corpus: the answer streams in, then cites its sources
        seen = _ask(page, "What does error E116 mean and how is it fixed?")
        assert len({t for t in seen[:-1] if t.strip()}) >= 2, seen  # several partial answers before the last
        first = page.locator("#chat details.source").first
        assert "error-codes.csv" in page.locator("#chat details.source summary").all_inner_texts()[0] + " ".join(
            page.locator("#chat details.source summary").all_inner_texts()
        )
        assert not first.locator("p").first.is_visible()
        first.locator("summary").click()
        assert first.locator("p").first.is_visible() and len(first.locator("p").first.inner_text()) > 20
        assert "context" in page.locator("#chat-status").inner_text()
        page.screenshot(path=str(SHOTS / "chat.png"), full_page=True)

        # thumbs up saves a training example
        page.locator("#chat button[aria-label='Like']").last.click()
        page.wait_for_function(
            "document.querySelector('#feedback-notice').innerText.includes('training example')", timeout=30_000
        )
        rows = [json.loads(line) for line in (home / "feedback.jsonl").read_text().splitlines()]
        assert len(rows) == 1 and rows[0]["messages"][-1]["role"] == "assistant"

        # another browser session starts with an empty chat
        other = browser.new_context().new_page()
        other.goto(url)
        other.wait_for_selector("#question textarea", timeout=60_000)
        assert other.locator("#chat details.source").count() == 0 and "E116" not in other.locator("#chat").inner_text()
        other.close()

        # upload a document, see it listed, ask about it
        page.get_by_role("tab", name="Documents").click()
        page.set_input_files("#documents-upload input[type=file]", str(zork))
        page.wait_for_function(
            "document.querySelector('#ingest-report').innerText.includes('added')"
            " && document.querySelector('#documents').innerText.includes('zork-club.md')",
            timeout=120_000,
        )
        page.screenshot(path=str(SHOTS / "documents.png"), full_page=True)
        page.get_by_role("tab", name="Chat").click()
        page.click("#new-conversation")  # a new topic: a fresh chat
        page.wait_for_function("document.querySelectorAll('#chat details.source').length === 0", timeout=30_000)
        _ask(page, "What is the secret password of the Zork club?")
        answer = page.locator("#chat details.source").last.locator("xpath=..")
        summaries = " ".join(page.locator("#chat details.source summary").all_inner_texts())
        assert "zork-club.md" in summaries
        assert "PINEAPPLE" in _bot_text(page).upper(), _bot_text(page)
        assert answer.count() == 1

        # compare: the base model and the adapter, closed-book and with the same sources
        page.get_by_role("tab", name="Compare").click()
        page.fill("#compare-question textarea", "What is the secret password of the Zork club?")
        page.click("#compare")
        page.wait_for_function(
            "document.querySelector('#compare-status').innerText.includes('Done: 4 answers')", timeout=240_000
        )
        assert "zork-club.md" in page.locator("#compare-sources").inner_text()
        keys = ("base-closed", "tuned-closed", "base-rag", "tuned-rag")
        texts = {key: page.locator(f"#{key}").inner_text() for key in keys}
        # every pane got an answer (the demo adapter's random weights give short, odd ones)
        assert all(len(t.split("\n", 1)[-1].strip()) > 3 for t in texts.values()), texts
        # the adapter compared by default is the one the chat uses: the shipped starter where there is one
        shipped = (ROOT / "finetune" / "starter" / "adapter_model.safetensors").exists()
        assert f"adapter {'starter' if shipped else 'demo'}" in page.locator("#tuned-closed").inner_text()
        page.screenshot(path=str(SHOTS / "compare.png"), full_page=True)

        page.get_by_role("tab", name="Adapters").click()
        page.wait_for_function("document.querySelector('#adapters').innerText.includes('demo')", timeout=30_000)
        page.screenshot(path=str(SHOTS / "adapters.png"), full_page=True)
        browser.close()


def _serve(home: Path, port: int, log_path: Path, env: dict[str, str], *sets: str) -> subprocess.Popen[bytes]:
    """``ragtune chat`` over ``home`` on ``port`` (with ``sets``: more ``--set`` values), output to ``log_path``."""
    more = [arg for value in sets for arg in ("--set", value)]
    with log_path.open("a") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "assistant", "chat", "--port", str(port), "--set", "answer_tokens=40", *more],
            env={**os.environ, "RAGTUNE_HOME": str(home), **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def _wait_serving(log_path: Path, count: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.time() + 300
    while log_path.read_text().count("serving on") < count:
        assert process.poll() is None, log_path.read_text()
        assert time.time() < deadline, "the app did not start in 5 minutes"
        time.sleep(0.5)


def _open(playwright: Any) -> tuple[Any, Any]:
    """Debian's chromium, headless, and a page of the size the screenshots use."""
    browser = playwright.chromium.launch(
        executable_path=CHROMIUM,
        headless=True,
        args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
    )
    return browser, browser.new_page(viewport={"width": 1280, "height": 1000})


def _login(page, url: str, user: str = "ann") -> None:
    page.goto(url)
    page.wait_for_selector("input[type=password]", timeout=60_000)
    page.locator("input[type=text], input:not([type])").first.fill(user)
    page.fill("input[type=password]", f"secret-{user}")
    page.get_by_role("button", name="Login").click()
    page.wait_for_selector("#question textarea", timeout=60_000)


def test_conversations_errors_progress_and_sources_in_a_real_browser(
    tmp_path: Path, bundled_llm_models: Path, bundled_embedder: str
) -> None:
    home = _demo_home(tmp_path, bundled_llm_models)
    from playwright.sync_api import sync_playwright

    port, log_path = free_port(), tmp_path / "app.log"
    log_path.write_text("")
    env = {"RAGTUNE_USERNAME": "ann", "RAGTUNE_PASSWORD": "secret-ann"}  # the configured login
    add_user(home / USERS_FILE, "bob", "secret-bob")  # and one from the users file
    # a small batch keeps the timed steps of Estimate time short on a CPU
    sets = ("finetune.batch_size=1", "finetune.max_tokens=512", "finetune.tool_examples=0")
    process = _serve(home, port, log_path, env, *sets)
    _wait_serving(log_path, 1, process)
    url = f"http://127.0.0.1:{port}"
    SHOTS.mkdir(parents=True, exist_ok=True)
    big = tmp_path / "fan-manual.txt"
    big.write_text(
        "\n\n".join(f"Section {n}. The fan model F{n} runs at {n * 10} rpm and needs care." for n in range(900))
    )
    try:
        with sync_playwright() as p:
            browser, page = _open(p)
            _login(page, url)

            # an answer with [n] chips: a chip opens its source, the cited sentence highlighted
            _ask(page, "What does error E116 mean and how is it fixed?")
            chip = page.locator("#chat a.cite").first
            chip.wait_for(timeout=30_000)
            n = chip.inner_text().strip("[]")
            source = page.locator(f"#chat details.source-{n}").last
            assert source.get_attribute("open") is None
            chip.click()
            page.wait_for_function(
                f"[...document.querySelectorAll('#chat details.source-{n}')].some(d => d.open)", timeout=10_000
            )
            assert "% similar" in source.locator("summary").inner_text()
            page.screenshot(path=str(SHOTS / "chat-sources.png"), full_page=True)

            # the conversation is listed, kept as the login user's, and a reload reopens it
            page.wait_for_function(
                "document.querySelector('#conversations').innerText.includes('E116')", timeout=30_000
            )
            store = Conversations(home / CONVERSATIONS_FILE)
            assert [t for _, t in store.titles("ann")] == ["What does error E116 mean and how is it fixed?"]
            assert store.titles("") == []

            # another login, in its own browser context, sees none of ann's conversations
            bob = browser.new_context(viewport={"width": 1280, "height": 1000}).new_page()
            _login(bob, url, "bob")
            bob.wait_for_selector("#conversations", timeout=30_000)
            time.sleep(1)  # the page load's listing has arrived
            assert "E116" not in bob.locator("#conversations").inner_text()
            assert "E116" not in bob.locator("#chat").inner_text()
            bob.screenshot(path=str(SHOTS / "chat-other-user.png"), full_page=True)
            bob.close()
            page.reload()
            page.wait_for_selector("#question textarea", timeout=60_000)
            page.wait_for_function("document.querySelector('#chat').innerText.includes('E116')", timeout=30_000)
            assert "E116" in page.locator("#conversations").inner_text()

            # an error on the Adapters tab stays there; the Chat tab's model picker still works
            page.get_by_role("tab", name="Adapters").click()
            page.click("#activate")
            page.wait_for_function(
                "document.querySelector('#adapters-notice').innerText.includes('pick an adapter first')",
                timeout=30_000,
            )
            page.screenshot(path=str(SHOTS / "adapters-error.png"), full_page=True)
            page.get_by_role("tab", name="Chat").click()
            page.locator("#model input").click()
            page.get_by_role("option", name="none (base model)").click()
            assert page.locator("#model input").input_value() == "none (base model)"
            assert page.locator("#chat .error, .toast-body.error").count() == 0

            # an upload shows progress at once
            page.get_by_role("tab", name="Documents").click()
            page.set_input_files("#documents-upload input[type=file]", str(big))
            started = time.time()
            seen, percent = "", 0.0
            while time.time() - started < 5 and percent <= 0:
                seen = page.locator("#ingest-summary").inner_text()
                found = re.search(r"(\d+(?:\.\d+)?)%", seen)
                percent = float(found.group(1)) if found and "file 1 of 1" in seen else 0.0
                time.sleep(0.1)
            assert percent > 0, seen
            page.screenshot(path=str(SHOTS / "documents-progress.png"), full_page=True)
            page.wait_for_function(
                "document.querySelector('#documents').innerText.includes('fan-manual.txt')", timeout=300_000
            )
            page.screenshot(path=str(SHOTS / "documents.png"), full_page=True)
            page.get_by_role("tab", name="Fine-tune").click()
            page.wait_for_selector("#training-estimate", timeout=30_000)
            page.get_by_role("button", name="Build dataset").click()
            page.wait_for_function(
                "document.querySelector('#training-estimate').innerText.includes('Estimate time')", timeout=300_000
            )
            page.click("#estimate-training")
            page.wait_for_function(
                "document.querySelector('#training-estimate').innerText.includes('precision:')",
                timeout=300_000,
            )
            estimate = page.locator("#training-estimate").inner_text()
            precision = "bf16 autocast (fp32 weights)" if cpu_has_bf16() else "fp32"  # precision = "auto"
            assert "tokens/s" in estimate and f"precision: {precision}" in estimate
            assert "estimated training time" in estimate
            page.screenshot(path=str(SHOTS / "finetune.png"), full_page=True)
            page.get_by_role("tab", name="Compare").click()
            page.screenshot(path=str(SHOTS / "compare-empty.png"), full_page=True)
            page.get_by_role("tab", name="Chat").click()
            page.screenshot(path=str(SHOTS / "chat.png"), full_page=True)

            # a server restart: the conversation is still there after logging in again
            process.terminate()
            process.wait(30)
            process = _serve(home, port, log_path, env, *sets)
            _wait_serving(log_path, 2, process)
            _login(page, url)
            page.wait_for_function("document.querySelector('#chat').innerText.includes('E116')", timeout=60_000)
            assert "E116" in page.locator("#conversations").inner_text()
            browser.close()
    finally:
        process.terminate()
        process.wait(30)
