"""The terminal chat: streaming printers, the chat loop with scripted I/O, and the real CLI."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from services.model_worker.cli import (
    EXIT_MESSAGE,
    PROGRAMMATIC_TERMINATOR,
    RESET_NOTICE,
    GenerationSettings,
    ProgrammaticChatIO,
    RichChatIO,
    SimpleChatIO,
    chat_loop,
    markdown_line_breaks,
    stream_words,
)
from shared.conversation import get_conv_template
from tests.support import REPO_ROOT

# ---------------------------------------------------------------- streaming printers


class RecordingStream(io.StringIO):
    """Remembers every write, to see what appeared when."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, s: str) -> int:
        self.writes.append(s)
        return super().write(s)


def test_stream_words_prints_completed_words_then_the_rest() -> None:
    out = RecordingStream()
    snapshots = ["Hel", "Hello wo", "Hello world, how", "Hello world, how are you?"]

    final = stream_words(snapshots, out)

    assert out.writes == ["Hello ", "world, ", "how are ", "you?\n"]
    assert out.getvalue() == "Hello world, how are you?\n"
    assert final == "Hello world, how are you?"


def test_stream_words_strips_and_handles_an_empty_stream() -> None:
    out = RecordingStream()
    assert stream_words([" Hi", " Hi there\n"], out) == "Hi there"
    assert out.getvalue().rstrip() == "Hi there"

    empty = RecordingStream()
    assert stream_words([], empty) == ""
    assert empty.getvalue() == "\n"


def test_markdown_line_breaks_keep_single_newlines_but_not_in_fences() -> None:
    text = "line one\nline two\n```python\nx = 1\n```"
    assert markdown_line_breaks(text) == "line one  \nline two  \n```python\nx = 1  \n```\n"
    # Control characters that str.splitlines treats as line ends stay inside the line.
    assert markdown_line_breaks("a\x1cb") == "a\x1cb  \n"


# ---------------------------------------------------------------- styles with fake streams


def test_programmatic_input_is_terminator_delimited_and_stops_at_eof() -> None:
    t = PROGRAMMATIC_TERMINATOR
    out = io.StringIO()
    chat_io = ProgrammaticChatIO(io.StringIO(f"first\nline{t}second{t}tail"), out)

    assert chat_io.prompt_for_input("USER") == "first\nline"
    assert chat_io.prompt_for_input("USER") == "second"
    assert chat_io.prompt_for_input("USER") == "tail"
    assert chat_io.prompt_for_input("USER") == ""
    assert out.getvalue() == "[!OP:USER]: " * 4

    chat_io.prompt_for_output("ASSISTANT")
    assert chat_io.stream_output(["a", "a b", "a b c"]) == "a b c"
    assert out.getvalue().endswith("[!OP:ASSISTANT]: a b c\n")


def test_simple_io_prefixes_roles() -> None:
    out = io.StringIO()
    chat_io = SimpleChatIO(io.StringIO("hello\n"), out)

    assert chat_io.prompt_for_input("USER") == "hello"
    assert chat_io.prompt_for_input("USER") == ""
    chat_io.prompt_for_output("ASSISTANT")
    chat_io.stream_output(["Hi", "Hi there"])
    assert out.getvalue() == "USER: USER: ASSISTANT: Hi there\n"


def test_rich_io_reads_with_prompt_toolkit_and_renders_markdown() -> None:
    from prompt_toolkit import PromptSession
    from prompt_toolkit.completion import CompleteEvent
    from prompt_toolkit.document import Document
    from prompt_toolkit.history import InMemoryHistory
    from prompt_toolkit.input import create_pipe_input
    from prompt_toolkit.output import DummyOutput
    from rich.console import Console

    console = Console(file=io.StringIO(), width=60, force_terminal=False)
    with create_pipe_input() as pipe:
        pipe.send_text("hello rich\r")
        session = PromptSession(history=InMemoryHistory(), input=pipe, output=DummyOutput())
        chat_io = RichChatIO(console=console, session=session)
        assert chat_io.prompt_for_input("USER") == "hello rich"

    completions = chat_io.completer.get_completions(Document("!"), CompleteEvent())
    assert {c.text for c in completions} == {"!exit", "!reset"}
    assert chat_io.stream_output(["**bold**", "**bold**\nnext line "]) == "**bold**\nnext line"
    rendered = console.file.getvalue()
    assert "USER:" in rendered
    assert "bold" in rendered and "**" not in rendered
    assert "next line" in rendered


# ---------------------------------------------------------------- chat loop, scripted


class ScriptedIO:
    """Answers prompts from a script; raises what the script holds (EOF-like "" or exceptions)."""

    def __init__(self, inputs: list[str | BaseException]) -> None:
        self.inputs = list(inputs)
        self.events: list[tuple[str, str]] = []

    def prompt_for_input(self, role: str) -> str:
        item = self.inputs.pop(0) if self.inputs else ""
        if isinstance(item, BaseException):
            raise item
        self.events.append(("in", item))
        return item

    def prompt_for_output(self, role: str) -> None:
        self.events.append(("role", role))

    def stream_output(self, texts: Iterable[str]) -> str:
        seen = list(texts)
        last = seen[-1] if seen else ""
        self.events.append(("out", last))
        return last.strip()

    def print_message(self, text: str) -> None:
        self.events.append(("msg", text))


class FakeGenerate:
    """Stands in for generate_stream: records prompts, answers from a list of behaviours."""

    def __init__(self, behaviours: list[str]) -> None:
        self.behaviours = list(behaviours)
        self.calls: list[dict[str, Any]] = []

    def __call__(self, model: Any, tokenizer: Any, params: Any, **kwargs: Any) -> Iterator[dict]:
        self.calls.append({"params": params, **kwargs})
        behaviour = self.behaviours.pop(0)
        if behaviour == "error-chunk":
            yield {"text": "Al", "error_code": 0}
            yield {"text": "out of memory", "error_code": 50002}
        elif behaviour == "raise":
            yield {"text": "Al", "error_code": 0}
            raise RuntimeError("boom")
        else:
            yield {"text": behaviour[:2], "error_code": 0}
            yield {"text": f" {behaviour} ", "error_code": 0, "finish_reason": "stop"}


def run_loop(inputs: list[str | BaseException], behaviours: list[str], **settings: Any):
    chat_io, generate = ScriptedIO(inputs), FakeGenerate(behaviours)
    template = get_conv_template("vicuna_v1.1")
    chat_loop(
        None, None, 2048, template, chat_io, GenerationSettings(**settings), generate=generate
    )
    assert template.messages == []  # the template itself is never changed
    return chat_io, generate


def test_chat_loop_keeps_history_resets_and_exits() -> None:
    chat_io, generate = run_loop(
        ["hi", "more", "!reset", "  again  ", "!exit", "never read"],
        ["one", "two", "three"],
        temperature=0.0,
        max_new_tokens=8,
    )

    prompts = [c["params"].prompt for c in generate.calls]
    assert len(prompts) == 3
    assert prompts[1].endswith("USER: hi ASSISTANT: one</s>USER: more ASSISTANT:")
    assert "hi" not in prompts[2] and prompts[2].endswith("USER: again ASSISTANT:")
    params = generate.calls[0]["params"]
    assert (params.echo, params.temperature, params.max_new_tokens) == (False, 0.0, 8)
    assert generate.calls[0]["context_len"] == 2048
    assert ("msg", RESET_NOTICE) in chat_io.events
    assert chat_io.events[-1] == ("msg", EXIT_MESSAGE)
    assert chat_io.inputs == ["never read"]


@pytest.mark.parametrize("ending", ["", EOFError(), KeyboardInterrupt()])
def test_chat_loop_exit_on_empty_input_eof_and_ctrl_c(ending: str | BaseException) -> None:
    inputs: list[str | BaseException] = [ending]
    if isinstance(ending, EOFError):  # the styles turn EOF into "" themselves
        inputs = []
    chat_io, generate = run_loop(inputs, [])
    assert generate.calls == []
    assert chat_io.events[-1] == ("msg", EXIT_MESSAGE)


@pytest.mark.parametrize("failure", ["error-chunk", "raise"])
def test_chat_loop_drops_a_failed_turn(failure: str) -> None:
    chat_io, generate = run_loop(["bad", "good", ""], [failure, "fine"], debug=True)

    errors = [text for kind, text in chat_io.events if kind == "msg" and text.startswith("error:")]
    assert len(errors) == 1
    assert ("out of memory" if failure == "error-chunk" else "boom") in errors[0]
    second_prompt = generate.calls[1]["params"].prompt
    assert "bad" not in second_prompt and second_prompt.endswith("USER: good ASSISTANT:")
    debug = [json.loads(t) for kind, t in chat_io.events if kind == "msg" and t.startswith("{")]
    assert debug == [{"prompt": second_prompt, "outputs": "fine"}]


# ---------------------------------------------------------------- the real CLI, tiny model


def run_cli(model_dir: Path, stdin: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "services.model_worker.cli",
            "--model-path",
            str(model_dir),
            "--max-new-tokens",
            "8",
            "--temperature",
            "0",
            *extra,
        ],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        timeout=120,
    )


def test_cli_simple_session_with_reset_and_exit(tiny_model_dir: Path) -> None:
    proc = run_cli(tiny_model_dir, "Hello there\n!reset\nWhat is up?\n!exit\n", "--style", "simple")

    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    # The tiny model talks gibberish: check the shape of the dialogue, not its content.
    assert sum(line.startswith("user: assistant: ") for line in lines) == 2
    assert f"user: {RESET_NOTICE}" in lines
    assert lines[-1] == f"user: {EXIT_MESSAGE}"


def test_cli_debug_shows_prompts_and_reset_forgets(tiny_model_dir: Path) -> None:
    stdin = "first message\nsecond message\n!reset\nthird message\n\n"
    proc = run_cli(tiny_model_dir, stdin, "--debug")

    assert proc.returncode == 0, proc.stderr
    turns = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith('{"prompt"')]
    assert len(turns) == 3
    assert "first message" in turns[0]["prompt"]
    assert "first message" in turns[1]["prompt"] and "second message" in turns[1]["prompt"]
    assert turns[0]["outputs"] in turns[1]["prompt"]
    assert "third message" in turns[2]["prompt"]
    assert "first message" not in turns[2]["prompt"]
    assert "second message" not in turns[2]["prompt"]
    assert proc.stdout.rstrip().endswith(EXIT_MESSAGE)


def test_cli_programmatic_session(tiny_model_dir: Path) -> None:
    t = PROGRAMMATIC_TERMINATOR
    stdin = f"line one\nline two{t}!reset{t}after reset{t}!exit{t}"
    proc = run_cli(tiny_model_dir, stdin, "--style", "programmatic", "--debug")

    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.count("[!OP:user]: [!OP:assistant]: ") == 2
    assert f"[!OP:user]: {RESET_NOTICE}\n" in out
    assert out.endswith(f"[!OP:user]: {EXIT_MESSAGE}\n")
    turns = [json.loads(line) for line in out.splitlines() if line.startswith('{"prompt"')]
    assert "line one\nline two" in turns[0]["prompt"] and t not in turns[0]["prompt"]
    assert "line one" not in turns[1]["prompt"] and "after reset" in turns[1]["prompt"]


def test_cli_rejects_bad_sampling_values_before_loading(tmp_path: Path) -> None:
    proc = run_cli(tmp_path / "no-model", "", "--temperature", "-1")
    assert proc.returncode == 2
    assert "temperature" in proc.stderr
