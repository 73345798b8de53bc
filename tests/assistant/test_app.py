"""The browser app's handlers, called directly (no server): chat, documents, feedback, compare, adapters, training."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from assistant import app as A
from assistant.config import AppConfig, AssistantConfig
from assistant.errors import AssistantError
from assistant.settings import Settings
from assistant.workspace import Upload, Workspace, safe_name
from finetune.adapters import Registry
from finetune.config import FinetuneConfig
from finetune.errors import FinetuneError
from ingest.embedding import cpu_has_bf16
from tests.conftest import free_port, trained_adapter

DOC = (
    "The Solstice battery stores 10 kWh. Error E116 means the fan is blocked; clear the vents. "
    "The warranty lasts 5 years."
)


@pytest.fixture
def ws(tiny_lm: str, tiny_config, tmp_path: Path) -> Workspace:
    config = AssistantConfig(model=tiny_lm, answer_tokens=12, context_window=1024, min_score=-1.0)
    workspace = Workspace(Settings(ingest=tiny_config, assistant=config, app=AppConfig(max_upload_mb=1)))
    doc = tmp_path / "battery.txt"
    doc.write_text(DOC)
    report = workspace.add_documents([Upload("battery.txt", str(doc))])
    assert report.count("added") == 1
    return workspace


def drain(gen):
    """Every update a handler yields, each copied when it was yielded (the app reuses its objects)."""
    import copy

    steps = [tuple(copy.deepcopy(x) if isinstance(x, list | str) else x for x in step) for step in gen]
    return steps, steps[-1]


def test_chat_streams_an_answer_with_expandable_sources_and_keeps_sessions_apart(ws: Workspace) -> None:
    one, two = A.Session(), A.Session()
    steps, (messages, session, status, box) = drain(A.chat(ws, one, "How much does the battery store?"))
    assert session is one and box == ""
    partial = [s[0][-1]["content"] for s in steps[1:-1]]
    assert len({p for p in partial if p}) >= 2  # the answer grew token by token
    answer = messages[-1]["content"]
    assert '<details class="source source-1"><summary>[1] battery.txt' in answer and "10 kWh" in answer
    assert "% similar" in answer and "score 0." not in answer
    assert status.startswith("context ") and " sources, 0 dropped" in status and "model: active (none" in status
    assert one.history[0] == {"role": "user", "content": "How much does the battery store?"}
    assert list(one.turns) == [1] and one.turns[1]["sources"][0]["text"] in DOC

    _, (messages_two, *_rest) = drain(A.chat(ws, two, "What does E116 mean?"))
    assert [m["content"] for m in messages_two if m["role"] == "user"] == ["What does E116 mean?"]
    assert len(one.messages) == 2 and len(two.history) == 2

    # a follow-up is rewritten with this session's history only
    _, (_, _, status, _) = drain(A.chat(ws, one, "and the warranty?"))
    assert "searched:" in status
    assert len(one.history) == 4 and len(two.history) == 2

    empty_steps = list(A.chat(ws, two, "   "))
    assert empty_steps[-1][2] == "Type a question first." and len(two.messages) == 2


def test_history_is_bounded_and_clear_starts_over(ws: Workspace) -> None:
    ws.settings = dataclasses.replace(ws.settings, app=AppConfig(history_turns=1))
    session = A.Session()
    for question in ("battery?", "warranty?", "vents?"):
        drain(A.chat(ws, session, question))
    assert [m["content"] for m in session.history if m["role"] == "user"] == ["vents?"]
    messages, fresh, status = A.clear(session)
    assert messages == [] and fresh.history == [] and session.stop.is_set() and status == ""


def test_stop_ends_the_answer_and_frees_the_model(ws: Workspace) -> None:
    ws.settings = dataclasses.replace(ws.settings, assistant=dataclasses.replace(ws.config, answer_tokens=200))
    session = A.Session()
    gen = A.chat(ws, session, "How much does the battery store?")
    for _ in range(4):
        partial = next(gen)[0][-1]["content"]
    A.stop(session)
    rest = list(gen)
    assert rest[-1][0][-1]["content"].endswith("*(stopped)*") and rest[-1][2].startswith("Stopped: the answer")
    assert partial and len(rest[-1][0][-1]["content"]) < 400
    assert session.history == []  # a stopped answer is not remembered
    # the model is free again at once: a new question is answered
    ws.settings = dataclasses.replace(ws.settings, assistant=dataclasses.replace(ws.config, answer_tokens=8))
    _, (messages, *_r) = drain(A.chat(ws, A.Session(), "warranty?"))
    assert "<details" in messages[-1]["content"]


def test_closing_a_stream_early_stops_the_generation_thread(ws: Workspace) -> None:
    import threading

    model = ws.base_model()
    before = set(threading.enumerate())
    stream = model.stream([{"role": "user", "content": "battery"}], max_new_tokens=500)
    next(stream)
    started = time.perf_counter()
    stream.close()
    assert time.perf_counter() - started < 5 and set(threading.enumerate()) <= before
    assert not model._weights.lock.locked()


def test_errors_show_in_the_chat_and_the_chat_goes_on(ws: Workspace, tiny_config) -> None:
    empty = Workspace(dataclasses.replace(ws.settings, ingest=dataclasses.replace(tiny_config, collection="nothing")))
    session = A.Session()
    _, (messages, *_r) = drain(A.chat(empty, session, "battery?"))
    assert messages[-1]["content"].startswith("⚠️ collection 'nothing' is empty")
    assert session.history == []


def test_feedback_saves_training_examples_that_dataset_build_reads(ws: Workspace) -> None:
    from finetune.data import read_examples

    session = A.Session()
    drain(A.chat(ws, session, "How much does the battery store?"))
    drain(A.chat(ws, session, "What does E116 mean?"))
    assert A.rate(ws, session, 0, True) == "Only answers can be rated."
    assert A.rate(ws, session, 1, True).startswith("Saved as a training example")
    assert A.rate(ws, session, 3, False).startswith("Noted.")
    assert A.correct(ws, session, "The fan is blocked; clear the vents [1].")[0].startswith("Correction saved")
    assert A.correct(ws, session, "again")[0] == "Rate an answer with thumbs down first."
    A.rate(ws, session, 3, False)
    assert "not used for training" in A.correct(ws, session, "")[0]

    loaded = read_examples(ws.home / "feedback.jsonl")
    assert loaded.problems == [] and len(loaded.examples) == 2
    first, second = (e["messages"] for e in loaded.examples)
    assert first[0]["role"] == "system" and "[1] (battery.txt)" in first[1]["content"]  # the prompt as the model saw it
    assert second[-1] == {"role": "assistant", "content": "The fan is blocked; clear the vents [1]."}
    rejected = [json.loads(line) for line in (ws.home / "feedback-rejected.jsonl").read_text().splitlines()]
    assert len(rejected) == 1 and rejected[0]["rating"] == "down"


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\report.pdf", "report.pdf"),
        ("..hidden.md", "hidden.md"),
        ("notes <v2>?.md", "notes _v2_.md"),
        ("..", "upload"),
        ("/", "upload"),
    ],
)
def test_upload_names_are_reduced_to_plain_file_names(given: str, kept: str) -> None:
    assert safe_name(given) == kept


def test_uploads_are_sanitised_limited_and_reported(ws: Workspace, tmp_path: Path) -> None:
    sneaky = tmp_path / "x.md"
    sneaky.write_text("# Pump\nThe pump model is PX-9 and runs at 40 litres per minute.\n")
    big = tmp_path / "big.txt"
    big.write_bytes(b"a" * (2 * 2**20))
    binary = tmp_path / "tool.exe"
    binary.write_bytes(bytes(range(256)) * 10)
    files = [
        {"path": str(sneaky), "orig_name": "../../../pump.md"},
        {"path": str(big), "orig_name": "big.txt"},
        {"path": str(binary), "orig_name": "tool.exe"},
        {"path": str(tmp_path / "gone.md"), "orig_name": "gone.md"},
    ]
    rows, summary, documents = A.add_documents(ws, files)
    status = {row[0]: (row[1], row[3]) for row in rows}
    assert status["pump.md"][0] == "added"
    assert status["big.txt"] == ("skipped", "2.0 MB is over the 1 MB limit")
    assert status["tool.exe"][0] == "skipped" and status["tool.exe"][1]
    assert status["gone.md"][0] == "failed"
    assert "not ingested" in summary
    assert (ws.home / "uploads" / "pump.md").exists() and not (tmp_path.parent / "pump.md").exists()
    assert sorted(row[0] for row in documents) == ["battery.txt", "pump.md"]
    assert sorted(p.name for p in (ws.home / "uploads").iterdir()) == ["battery.txt", "pump.md"]  # no rejects kept

    # a broken new version of an ingested upload is refused and the ingested one stays
    broken = tmp_path / "broken.md"
    broken.write_bytes(bytes(range(256)) * 10)
    rows, _summary, _docs = A.add_documents(ws, [{"path": str(broken), "orig_name": "pump.md"}])
    assert rows[0][1] in ("skipped", "failed") and "previously ingested version is kept" in rows[0][3]
    assert "PX-9" in (ws.home / "uploads" / "pump.md").read_text()
    assert sorted(p.name for p in (ws.home / "uploads").iterdir()) == ["battery.txt", "pump.md"]
    assert A.reingest(ws, [str(ws.home / "uploads" / "pump.md")])[0] == [["pump.md", "unchanged", 1, ""]]

    # the chat finds the new document at once: the retriever follows the collection
    _, (messages, *_r) = drain(A.chat(ws, A.Session(), "What is the pump model?"))
    assert "pump.md" in messages[-1]["content"]

    # re-ingest: a changed upload replaces its chunks
    (ws.home / "uploads" / "pump.md").write_text("# Pump\nThe pump model is PX-10 now.\n")
    rows, summary, _docs = A.reingest(ws, [str(ws.home / "uploads" / "pump.md")])
    assert rows == [["pump.md", "updated", 1, ""]]

    text, documents = A.remove_documents(ws, [str(ws.home / "uploads" / "pump.md")])
    assert "1 removed" in text and [row[0] for row in documents] == ["battery.txt"]
    assert not (ws.home / "uploads" / "pump.md").exists()
    assert A.add_documents(ws, None)[1] == "Drop or choose files to add."
    assert A.remove_documents(ws, [])[0] == "Choose documents to remove."


def test_activated_adapter_answers_the_next_question_without_reloading(ws: Workspace, tiny_lm: str) -> None:
    trained_adapter(tiny_lm, ws.home, "tuned")
    question = [{"role": "user", "content": "battery capacity"}]

    def reply(adapter: str) -> str:
        return "".join(ws.model(adapter).stream(question, max_new_tokens=8))

    base = reply("active")
    weights = ws.base_model()._weights
    assert ws.activate("tuned") == "tuned"
    tuned = reply("active")
    assert tuned != base and reply("tuned") == tuned
    assert reply("none") == base  # the adapter is switched off, not unloaded
    assert ws.base_model()._weights is weights and len(weights.loaded) == 1
    assert ws.rollback() == "base model" and reply("active") == base

    trained_adapter(tiny_lm, ws.home, "other-base", recorded_base="someone/else")
    with pytest.raises(Exception, match="trained on 'someone/else'"):
        ws.activate("other-base")
    with pytest.raises(AssistantError, match="trained for base model 'someone/else'"):
        ws.model("other-base")
    assert reply("active") == base


def test_compare_gives_four_answers_with_one_set_of_sources(ws: Workspace, tiny_lm: str) -> None:
    steps, last = drain(A.compare(ws, "What does E116 mean?", "base"))
    assert last[0].startswith("**base model · no retrieval**") and "No adapter" in last[1] and "No adapter" in last[3]
    assert "[1] battery.txt" in last[4] and last[5].startswith("Done: 2 answers")

    trained_adapter(tiny_lm, ws.home, "tuned")
    steps, last = drain(A.compare(ws, "What does E116 mean?", "tuned"))
    bodies = [text.split("**\n\n", 1)[1] for text in last[:4]]
    assert all(bodies) and bodies[0] != bodies[1] and bodies[2] != bodies[3]
    assert last[3].startswith("**adapter tuned · with the retrieved sources**") and last[5].startswith("Done: 4")
    assert len(steps) > 8  # each answer streams
    with pytest.raises(A.UserError, match="not registered"):
        list(A.compare(ws, "E116?", "nope"))
    with pytest.raises(A.UserError, match="type a question"):
        list(A.compare(ws, " ", "tuned"))


def test_adapters_tab_lists_activates_rolls_back_and_refuses_removing_the_active(ws: Workspace, tiny_lm: str) -> None:
    trained_adapter(tiny_lm, ws.home, "first")
    trained_adapter(tiny_lm, ws.home, "second")
    ws.activate("first")
    ws.activate("second")
    rows = A.adapter_rows(ws)
    assert {row[0] for row in rows} == {"first", "● second"}
    assert [value for _label, value in A.adapter_choices(ws)[:2]] == ["active", "none"]
    with pytest.raises(Exception, match="active"):
        ws.remove_adapter("second")
    assert ws.rollback() == "first"
    ws.remove_adapter("second")
    assert [row[0] for row in A.adapter_rows(ws)] == ["● first"]
    assert ws.activate("none") == "base model" and Registry(ws.home).active() is None


def test_the_app_builds_without_serving(ws: Workspace) -> None:
    app = A.create_app(ws)
    names = {d.api_name for d in app.fns.values() if d.api_name}
    assert {"chat", "add_documents", "compare"} <= names


def test_training_runs_in_the_background_with_progress_cancel_resume_and_activate(
    ws: Workspace, tiny_lm: str, tiny_embedder: str
) -> None:
    tune = FinetuneConfig(tool_examples=0, closed_book=0.0, max_tokens=512, eval_questions=0)
    ws.settings = dataclasses.replace(ws.settings, finetune=tune)  # the one statement of the run's settings
    with pytest.raises(A.UserError, match="Build dataset first"):
        A.start_training(ws, "early", 1, 2, 1e-3, False)
    report = A.build_dataset(ws, True)
    assert "**Dataset**" in report and "train" in report

    # a long run, cancelled after its first steps, keeps a checkpoint and leaves the active adapter alone
    settings = {"steps": 400, "eval_every": 2, "batch_size": 1, "grad_accum": 1}
    ws.start_training("bg", **settings)
    assert "steps = 400" in (ws.home / "jobs" / "bg.toml").read_text()  # the child reads exactly these settings
    with pytest.raises(AssistantError, match="still running"):
        ws.start_training("other", **settings)
    deadline = time.time() + 120
    while ws.job.status().step < 3 and time.time() < deadline:
        time.sleep(0.5)
    head, bar, frame, _result, can_activate = A.training_view(ws)
    assert "Training" in head and "<progress" in bar and "of 400" in bar and not can_activate
    assert len(frame) >= 3 and set(frame["series"]) >= {"train"}
    assert A.cancel_training(ws).startswith("Cancelling")
    ws.job.wait(60)
    status = ws.job.status()
    assert status.state == "cancelled" and "--resume bg" in status.message
    assert (ws.home / "runs" / "bg" / "checkpoint.pt").exists() and Registry(ws.home).list() == []
    head, *_rest = A.training_view(ws)
    assert f"cancelled at step {status.step} of 400, resumable" in head and "```" not in head
    assert A.cancel_training(ws) == "No training is running."
    from assistant.app.finetune import clear_stale

    assert clear_stale(ws, "Cancelling: the run saves a checkpoint first.") == ""  # the job ended: the notice goes
    assert clear_stale(ws, "Active adapter: **x**.") == {"__type__": "update"}
    assert A.resume_training(ws) == "Resumed **bg**." and ws.job.status().running
    ws.job.cancel()
    ws.job.wait(60)
    with pytest.raises(A.UserError, match="only a cancelled run"):
        ws.job.cancelled = False
        A.resume_training(ws)

    # a short run completes, reports, and is activated from the panel
    A.start_training(ws, "short", 1, 2, 1e-3, False)
    assert ws.job.wait(180) == 0, ws.job.status().message
    head, bar, frame, result, can_activate = A.training_view(ws)
    assert "Completed" in head and can_activate and "val loss" in result
    notice, picker, line, confirm = A.activate_trained(ws)
    assert notice.startswith("Active adapter: **short**") and not confirm["visible"]
    assert Registry(ws.home).active() == "short"
    assert picker["choices"][0] == ("active (short)", "active") and line.startswith("Active: **short**")
    with pytest.raises(AssistantError, match="exists"):
        A.start_training(ws, "short", 1, 2, 1e-3, False)
    with pytest.raises(FinetuneError, match="may hold only letters"):
        A.start_training(ws, "../evil", 1, 2, 1e-3, False)


def test_app_settings_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(AssistantError, match="port"):
        AppConfig(port=70000)
    with pytest.raises(AssistantError, match="both username and password"):
        AppConfig(username="me")
    assert AppConfig().login() is None
    monkeypatch.setenv("RAGTUNE_USERNAME", "me")
    monkeypatch.setenv("RAGTUNE_PASSWORD", "secret")
    assert AppConfig().login() == ("me", "secret")
    assert AppConfig(username="you", password="pw").login() == ("you", "pw")
    monkeypatch.delenv("RAGTUNE_PASSWORD")
    with pytest.raises(AssistantError, match="RAGTUNE_PASSWORD"):
        AppConfig().login()


def _text(content) -> str:
    """A chat message's text as the API returns it (a string, or a list of typed parts)."""
    return content if isinstance(content, str) else "".join(part.get("text", "") for part in content)


def test_the_served_app_answers_through_its_api_behind_a_login(ws: Workspace) -> None:

    from gradio_client import Client

    port = free_port()
    ws.settings = dataclasses.replace(ws.settings, app=AppConfig(port=port, username="me", password="pw"))
    A.add_user(ws.home / A.USERS_FILE, "bob", "pw-bob")  # a second login, from the users file
    app = A.launch(ws, block=False, quiet=True)
    try:
        url = f"http://127.0.0.1:{port}/"
        with pytest.raises(Exception):  # noqa: B017 - the client's own error for a refused login
            Client(url, verbose=False)
        with pytest.raises(Exception):  # noqa: B017
            Client(url, auth=("me", "wrong"), verbose=False)
        with pytest.raises(Exception):  # noqa: B017
            Client(url, auth=("bob", "pw"), verbose=False)  # one user's password is not another's
        one = Client(url, auth=("me", "pw"), verbose=False)
        two = Client(url, auth=("bob", "pw-bob"), verbose=False)
        messages, status, box = one.predict("How much does the battery store?", "RAG", "active", api_name="/chat")
        assert "battery.txt" in _text(messages[-1]["content"]) and status.startswith("context") and box == ""
        messages, _status, _box = two.predict("What does E116 mean?", "RAG", "none", api_name="/chat")
        assert [_text(m["content"]) for m in messages if m["role"] == "user"] == ["What does E116 mean?"]
        messages, _status, _box = one.predict("and the warranty?", "RAG", "active", api_name="/chat")
        assert [_text(m["content"]) for m in messages if m["role"] == "user"] == [
            "How much does the battery store?",
            "and the warranty?",
        ]
        # each login's conversation is kept as theirs
        assert [t for _, t in ws.conversations.titles("me")] == ["How much does the battery store?"]
        assert [t for _, t in ws.conversations.titles("bob")] == ["What does E116 mean?"]
    finally:
        app.close()


def test_logins_come_from_a_users_file_of_hashed_passwords_and_the_configured_pair(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import io

    users = tmp_path / "home" / A.USERS_FILE
    logins = A.Logins(users, ("me", "pw"))
    assert logins and logins.check("me", "pw") and not logins.check("ann", "x")
    assert not A.Logins(users) and not A.Logins(None)  # no file, no pair: no login required
    assert A.add_user(users, "ann", "secret-ann") and A.add_user(users, "bob", "secret-bob")
    text = users.read_text()
    assert "secret" not in text and text.count(":scrypt$") == 2 and oct(users.stat().st_mode & 0o777) == "0o600"
    # the file is read again when it changes: no restart
    assert logins.check("ann", "secret-ann") and logins.check("bob", "secret-bob") and logins.check("me", "pw")
    assert not logins.check("ann", "secret-bob") and not logins.check("bob", "") and not logins.check("eve", "pw")
    assert not A.add_user(users, "ann", "new-pw")  # a new password for ann
    assert logins.check("ann", "new-pw") and not logins.check("ann", "secret-ann")
    A.remove_user(users, "bob")
    assert not logins.check("bob", "secret-bob") and list(A.Logins(users).users()) == ["ann"]
    with pytest.raises(AssistantError, match="no login 'bob'"):
        A.remove_user(users, "bob")
    with pytest.raises(AssistantError, match="without spaces or ':'"):
        A.add_user(users, "a:b", "pw")

    # python -m assistant.app add-user NAME
    from assistant.app.logins import main

    monkeypatch.setattr("sys.stdin", io.StringIO("pw-carl\n"))
    home = ["--home", str(tmp_path / "home")]
    assert main(["add-user", "carl", "--password-stdin", *home]) == 0
    assert logins.check("carl", "pw-carl")
    assert main(["users", *home]) == 0 and capsys.readouterr().out.endswith("ann\ncarl\n")
    assert main(["remove-user", "nobody", *home]) == 1 and "no login 'nobody'" in capsys.readouterr().err
    users.write_text("ann:plain-text\n")
    with pytest.raises(AssistantError, match="is not `name:scrypt"):
        A.Logins(users).check("ann", "plain-text")


def test_failed_logins_are_slowed_down_and_a_right_one_resets_them() -> None:
    import asyncio

    check = A.slowed_login(("me", "pw"), base_delay=0.05, max_delay=0.2)

    def timed(user: str, password: str) -> tuple[bool, float]:
        started = time.perf_counter()
        ok = asyncio.run(check(user, password))
        return ok, time.perf_counter() - started

    delays = [timed("me", f"guess{n}")[1] for n in range(4)]
    assert delays[0] >= 0.05 and delays[2] >= 0.2 and delays[3] >= 0.2 and delays[1] >= 0.1
    ok, took = timed("me", "pw")
    assert ok and took < 0.05
    assert timed("me", "wrong")[1] < 0.1, "a right password reset the count"


def test_an_upload_refused_because_another_process_writes_leaves_nothing_behind(ws: Workspace, tmp_path: Path) -> None:
    from ingest.errors import IngestError
    from ingest.pipeline import _locked

    doc = tmp_path / "late.txt"
    doc.write_text("Late news about the battery.")
    with _locked(ws.home), pytest.raises(IngestError):
        ws.add_documents([Upload("late.txt", str(doc))])
    assert not (ws.home / "uploads" / "late.txt").exists()


# kept conversations, errors, progress, sources ------------------------------------------


def test_conversations_are_kept_per_user_and_survive_a_restart(ws: Workspace) -> None:
    ann = A.Session(user="ann")
    drain(A.chat(ws, ann, "How much does the battery store?"))
    drain(A.chat(ws, ann, "What does E116 mean?"))
    assert ann.conversation is not None
    # a new Workspace over the same home: what a server restart sees
    again = Workspace(ws.settings)
    reopened = A.last_session(again, "ann")
    assert reopened.conversation == ann.conversation
    assert [m["content"] for m in reopened.messages if m["role"] == "user"] == [
        "How much does the battery store?",
        "What does E116 mean?",
    ]
    assert reopened.messages[-1]["content"] == ann.messages[-1]["content"]  # the answer as shown, sources and all
    assert reopened.history == ann.history and set(reopened.turns) == set(ann.turns)
    assert A.conversation_choices(again, "ann") == [("How much does the battery store?", ann.conversation)]
    # another login sees none of it, and cannot open it by id
    assert A.conversation_choices(again, "bob") == [] and A.last_session(again, "bob").messages == []
    with pytest.raises(AssistantError, match="no longer exists"):
        A.open_conversation(again, "bob", ann.conversation)

    # search, rename, export
    bob = A.Session(user="bob")
    drain(A.chat(ws, bob, "warranty?"))
    assert A.conversation_choices(ws, "ann", "e116") == [("How much does the battery store?", ann.conversation)]
    assert A.conversation_choices(ws, "ann", "warranty") == []
    assert A.rename_conversation(ws, ann, "Battery questions") == "Renamed to **Battery questions**."
    assert A.conversation_choices(ws, "ann") == [("Battery questions", ann.conversation)]
    markdown = Path(A.export_conversation(ws, ann, "md")).read_text()
    assert markdown.startswith("# Battery questions") and "**You:**\n\nWhat does E116 mean?" in markdown
    exported = json.loads(Path(A.export_conversation(ws, ann, "json")).read_text())
    assert [m["role"] for m in exported["messages"]] == ["user", "assistant"] * 2
    assert exported["messages"][1]["data"]["turn"]["sources"]

    # delete: gone for ann, bob's untouched; a new session starts empty
    fresh = A.delete_conversation(ws, ann)
    assert fresh.conversation is None and fresh.user == "ann" and A.conversation_choices(ws, "ann") == []
    assert len(A.conversation_choices(ws, "bob")) == 1
    with pytest.raises(A.UserError, match="ask a question first"):
        A.rename_conversation(ws, fresh, "x")


def test_regenerate_and_edit_replace_the_last_turn(ws: Workspace) -> None:
    session = A.Session()
    drain(A.chat(ws, session, "How much does the battery store?"))
    drain(A.chat(ws, session, "What does E116 mean?"))
    _, (messages, regenerated, _status, _box) = drain(A.regenerate(ws, session))
    assert [m["content"] for m in messages if m["role"] == "user"] == [
        "How much does the battery store?",
        "What does E116 mean?",
    ]
    kept = ws.conversations.get("", session.conversation)
    assert len(kept.messages) == 4 and kept.messages[2].content == "What does E116 mean?"
    assert len(regenerated.history) == 4

    messages, edited, status, box = A.edit_last(ws, regenerated)
    assert box == "What does E116 mean?" and "Edit the question" in status
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert len(ws.conversations.get("", session.conversation).messages) == 2 and len(edited.history) == 2
    with pytest.raises(A.UserError, match="no question to redo"):
        A.edit_last(ws, A.Session())


def test_a_too_long_question_is_refused_without_entering_the_chat(ws: Workspace) -> None:
    ws.settings = dataclasses.replace(ws.settings, assistant=dataclasses.replace(ws.config, max_question_chars=100))
    session = A.Session()
    long = "battery " * 30
    (messages, _session, status, box), *_rest = list(A.chat(ws, session, long))
    assert messages == [] and "over the 100 limit" in status and box == long.strip()
    assert session.conversation is None


def test_a_handler_error_is_a_notice_in_its_own_tab_and_leaves_other_components_alone(
    ws: Workspace, caplog: pytest.LogCaptureFixture
) -> None:
    from assistant.app.common import guard

    handler = guard(A.activate, 0, 6)  # the Adapters tab's outputs: notice, table, picker, chat's model, line, confirm
    with caplog.at_level("INFO", logger="ragtune.app"):
        out = handler(ws, None)
    assert out[0] == "⚠️ pick an adapter first"
    assert all(o == {"__type__": "update"} for o in out[1:])  # gr.skip(): the Chat tab's dropdown is untouched
    assert [r.exc_info for r in caplog.records] == [None] and "pick an adapter first" in caplog.text

    streaming = guard(A.compare, 5, 6)
    (answer_panes,) = list(streaming(ws, "  ", "none"))
    assert answer_panes[5].startswith("⚠️ type a question") and all(
        p == {"__type__": "update"} for p in answer_panes[:5]
    )


def test_an_adapter_that_scored_below_the_base_asks_before_activating(ws: Workspace, tiny_lm: str) -> None:
    folder = trained_adapter(tiny_lm, ws.home, "worse")
    meta = json.loads((folder / "adapter.json").read_text())
    answers = {"questions": 20, "base/rag": {"em": 2.0, "f1": 5.9}, "adapter/rag": {"em": 0.0, "f1": 2.0}}
    (folder / "adapter.json").write_text(json.dumps({**meta, "evaluation": {"answers": answers}}))
    # the Adapters tab
    notice, *_rest, picker, line, confirm = A.activate(ws, "worse")
    assert "scored below the base model" in notice and "2.0 against 5.9" in notice and confirm["visible"]
    assert Registry(ws.home).active() is None and line == "Active: **base model** (no adapter)"
    notice, *_rest, picker, line, confirm = A.activate(ws, "worse", True)
    assert notice == "Active adapter: **worse**." and not confirm["visible"]
    assert A.active_state(ws) == line == "Active: **worse** · RAG F1 base → tuned: 5.9 → 2.0"
    assert picker["choices"][0] == ("active (worse)", "active")  # the Chat tab's model picker
    ws.activate("none")

    # the Fine-tune tab, after a finished run that made it (a process that ended well, its adapter registered)
    with pytest.raises(A.UserError, match="no finished training"):
        A.activate_trained(ws)
    ws.job.name, ws.job.process = "worse", subprocess.Popen([sys.executable, "-c", ""])
    ws.job.wait(60)
    assert ws.job.status().state == "completed"
    notice, picker, line, confirm = A.activate_trained(ws)
    assert "scored below the base model" in notice and "Activate anyway" in notice and confirm["visible"]
    assert Registry(ws.home).active() is None and line == "Active: **base model** (no adapter)"
    assert picker["choices"][0] == ("active (none: base model)", "active")
    notice, picker, line, confirm = A.activate_trained(ws, True)
    assert notice.startswith("Active adapter: **worse**.") and not confirm["visible"]
    assert line == "Active: **worse** · RAG F1 base → tuned: 5.9 → 2.0"
    assert picker["choices"][0] == ("active (worse)", "active")

    # an adapter that scored at least as well as the base is activated at once
    better = trained_adapter(tiny_lm, ws.home, "better")
    answers = {"questions": 20, "base/rag": {"em": 2.0, "f1": 5.9}, "adapter/rag": {"em": 4.0, "f1": 8.0}}
    meta = json.loads((better / "adapter.json").read_text())
    (better / "adapter.json").write_text(json.dumps({**meta, "evaluation": {"answers": answers}}))
    ws.job.name = "better"
    notice, picker, line, confirm = A.activate_trained(ws)
    assert notice.startswith("Active adapter: **better**.") and not confirm["visible"]
    assert line == "Active: **better** · RAG F1 base → tuned: 5.9 → 8.0"


def test_sources_show_similarity_as_a_percentage_word_boundary_snippets_and_chips(ws: Workspace) -> None:
    from assistant.app.common import chips, snippet, supporting

    assert snippet("alpha beta gamma delta", 13) == "alpha beta …"
    text = "The warranty lasts 5 years. Error E116 means the fan is blocked."
    start, end = supporting(text, ["E116 means a blocked fan"])  # type: ignore[misc]
    assert text[start:end] == "Error E116 means the fan is blocked."
    row = "| E101 | Cell overvoltage. | Make sure the isolator is on."
    start, end = supporting(row, ["Make sure the isolator is on"])  # type: ignore[misc]
    assert row[start:end] == "Make sure the isolator is on."
    assert chips("Yes [1], no [3].", 2) == 'Yes <a class="cite" href="#source-1">[1]</a>, no [3].'

    _, (messages, *_r) = drain(A.chat(ws, A.Session(), "What does E116 mean?"))
    shown = messages[-1]["content"]
    assert '<details class="source source-1">' in shown and "% similar" in shown


def test_example_questions_come_from_the_documents(ws: Workspace, tmp_path: Path) -> None:
    guide = tmp_path / "guide.md"
    guide.write_text("# Guide\n\n## Cleaning the vents\n\nUse a soft brush once a month.\n")
    ws.add_documents([Upload("guide.md", str(guide))])
    found = A.example_questions(ws)
    assert "What does battery.txt say about “The Solstice battery stores 10 kWh”?" in found
    assert "What does guide.md say about “Cleaning the vents”?" in found


def test_uploads_report_progress_per_chunk_batch_and_recognise_duplicates(ws: Workspace, tmp_path: Path) -> None:
    ws.settings = dataclasses.replace(ws.settings, ingest=dataclasses.replace(ws.ingest, batch_size=4))
    seen: list[tuple[float, str]] = []
    big = tmp_path / "manual.txt"
    big.write_text("\n\n".join(f"Section {n}. The fan model F{n} runs at {n * 10} rpm." for n in range(120)))
    rows, _summary, _docs = A.add_documents(ws, [str(big)], lambda fraction, desc="": seen.append((fraction, desc)))
    assert rows[0][1] == "added"
    assert seen[0][0] > 0 and seen[0][1].startswith("receiving 1 file")
    batches = [s for s in seen if "embedded" in s[1]]
    assert len(batches) >= 2 and batches[-1][1].endswith(f"embedded {rows[0][2]} of {rows[0][2]} chunks")
    assert [f for f, _ in batches] == sorted(f for f, _ in batches)

    copy = tmp_path / "copy-of-battery.txt"
    copy.write_text(DOC)
    rows, _summary, docs = A.add_documents(ws, [str(copy)])
    assert rows == [["copy-of-battery.txt", "skipped", 0, "the same content is already ingested as battery.txt"]]
    assert len(docs) == 2


def test_remove_asks_first(ws: Workspace) -> None:
    path = ws.documents()[0].path
    assert "Remove **battery.txt**" in A.confirm_removal(ws, [path]) and len(ws.documents()) == 1
    with pytest.raises(A.UserError, match="choose documents"):
        A.confirm_removal(ws, [])


def test_training_estimate_uses_the_dataset_and_this_machines_measured_speed(ws: Workspace) -> None:
    assert "No dataset yet" in A.training_estimate(ws, 2, 0)
    ws.settings = dataclasses.replace(
        ws.settings, finetune=FinetuneConfig(tool_examples=0, closed_book=0.0, max_tokens=512, eval_questions=0)
    )
    A.build_dataset(ws, True)
    report = json.loads((ws.dataset_folder() / "report.json").read_text())
    examples, tokens = report["splits"]["train"], report["tokens"]["train"]
    estimate = A.training_estimate(ws, 2, 0)
    assert f"{examples:,} examples × 2 epochs, about {2 * tokens:,} tokens" in estimate
    assert "No run has been measured" in estimate
    run = ws.home / "runs" / "earlier"
    run.mkdir(parents=True)
    (run / "metrics.jsonl").write_text(json.dumps({"step": 1, "total_steps": 9, "loss": 2.0, "tokens_per_s": 0.01}))
    slow = A.training_estimate(ws, 2, 0)
    assert "0 tokens/s (earlier runs here)" in slow and "⚠️ Over an hour" in slow
    assert "steps ×" in A.training_estimate(ws, 2, 3)

    # Estimate time: a few timed steps of the base model on the dataset, kept for these settings
    measured = A.measure_training(ws, 2, 0)
    assert measured.startswith("**Estimate** (measured on this machine):")
    assert f"- {examples:,} examples × 2 epochs = " in measured and "tokens/s (3 timed steps" in measured
    precision = "bf16 autocast (fp32 weights)" if cpu_has_bf16() else "fp32"  # precision = "auto" on a CPU
    assert f"- precision: {precision}" in measured and "- estimated training time: " in measured
    assert "Over an hour" not in measured and "over an hour" not in measured
    again = A.training_estimate(ws, 4, 0)  # another length: the same measurement, no new one
    assert f"- {examples:,} examples × 4 epochs = " in again and again.split("\n")[2] == measured.split("\n")[2]
    assert A.training_estimate(ws, 2, 0) == measured


def test_the_loss_frame_has_integer_steps_in_order_with_validation_points() -> None:
    rows = [
        {"step": 2, "loss": 1.5, "total_steps": 4},
        {"step": 1, "loss": 2.0, "total_steps": 4},
        {"step": 2, "val_loss": 1.7},
    ]
    frame = A.loss_frame(rows)
    assert str(frame["step"].dtype) == "int64"
    assert frame.values.tolist() == [[1, 2.0, "train"], [2, 1.5, "train"], [2, 1.7, "validation"]]
    assert len(A.loss_frame(rows[:1])) == 1
