"""Chat with a model in the terminal, in-process (no controller, no worker server).

``python -m services.model_worker.cli --model-path <folder or hub id> [--style simple|rich|
programmatic]``. The chat loop knows nothing about the screen: a ``ChatIO`` reads messages and
shows streamed answers, so the same loop serves a human at a terminal (simple, rich) and a
program driving stdin/stdout (programmatic). Unlike the original, ``!exit`` and ``!reset`` work.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TextIO

from pydantic import ValidationError

from services.model_worker.args import load_configured_model, with_default_model
from shared.cli import SettingsParser
from shared.constants import ErrorCode
from shared.schemas import GenerateParams
from shared.settings import ModelSettings

if TYPE_CHECKING:
    from shared.conversation import Conversation

EXIT_COMMAND = "!exit"
RESET_COMMAND = "!reset"
EXIT_MESSAGE = "exit..."
RESET_NOTICE = "Conversation reset: history cleared."
# Ends each input message in programmatic style, so a message may span lines; unlikely to occur
# in real text.
PROGRAMMATIC_TERMINATOR = "9745805894023423"
STYLES = ("simple", "rich", "programmatic")

GenerateFn = Callable[..., Iterable[dict[str, Any]]]


class ChatIO(Protocol):
    """How one style talks to the user; the chat loop only goes through these calls."""

    def prompt_for_input(self, role: str) -> str:
        """Read one user message; ``""`` at end of input."""
        ...

    def prompt_for_output(self, role: str) -> None:
        """Show that the model's answer starts."""
        ...

    def stream_output(self, texts: Iterable[str]) -> str:
        """Show cumulative snapshots as they grow; return the final text."""
        ...

    def print_message(self, text: str) -> None:
        """Show a line that is not part of the dialogue (notices, errors, debug)."""
        ...


class WordStreamer:
    """Turns growing snapshots into word-sized pieces, so a half-decoded word never shows.

    A word counts as complete once a space follows it; the rest is printed by ``finish``.
    """

    def __init__(self) -> None:
        self._words: list[str] = []
        self._printed = 0

    def feed(self, snapshot: str) -> str:
        self._words = snapshot.lstrip().split(" ")
        complete = len(self._words) - 1
        if complete <= self._printed:
            return ""
        piece = " ".join(self._words[self._printed : complete]) + " "
        self._printed = complete
        return piece

    def finish(self) -> str:
        return " ".join(self._words[self._printed :])


def stream_words(texts: Iterable[str], out: TextIO) -> str:
    """Print snapshots word by word on ``out``, end the line, and return the stripped text."""
    streamer = WordStreamer()
    last = ""
    for text in texts:
        last = text
        piece = streamer.feed(text)
        if piece:
            out.write(piece)
            out.flush()
    out.write(streamer.finish() + "\n")
    out.flush()
    return last.strip()


class SimpleChatIO:
    """Plain ``ROLE: text`` lines; reads with ``input()`` (line editing) on a real terminal."""

    def __init__(self, inp: TextIO | None = None, out: TextIO | None = None) -> None:
        self._inp = inp
        self._out = out

    @property
    def out(self) -> TextIO:
        return self._out or sys.stdout

    def prompt_for_input(self, role: str) -> str:
        if self._inp is None and self._out is None:
            try:
                return input(f"{role}: ")
            except EOFError:
                return ""
        self.out.write(f"{role}: ")
        self.out.flush()
        return (self._inp or sys.stdin).readline().rstrip("\n")

    def prompt_for_output(self, role: str) -> None:
        self.out.write(f"{role}: ")
        self.out.flush()

    def stream_output(self, texts: Iterable[str]) -> str:
        return stream_words(texts, self.out)

    def print_message(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()


class ProgrammaticChatIO(SimpleChatIO):
    """For programs driving the chat: tagged turns, messages may span lines.

    Each input message ends with ``PROGRAMMATIC_TERMINATOR`` (stripped) or with end of input.
    """

    def prompt_for_input(self, role: str) -> str:
        self.out.write(f"[!OP:{role}]: ")
        self.out.flush()
        inp = self._inp or sys.stdin
        contents = ""
        while not contents.endswith(PROGRAMMATIC_TERMINATOR):
            char = inp.read(1)
            if not char:  # end of input: whatever arrived is the last message
                return contents
            contents += char
        return contents[: -len(PROGRAMMATIC_TERMINATOR)]

    def prompt_for_output(self, role: str) -> None:
        self.out.write(f"[!OP:{role}]: ")
        self.out.flush()


def markdown_line_breaks(text: str) -> str:
    """Markdown joins single newlines; two trailing spaces keep them as line breaks.

    Code-fence lines are left alone so fences still open and close. Splits on line feeds only:
    ``str.splitlines`` would also break at control characters a model may emit.
    """
    lines = []
    for line in text.split("\n"):
        lines.append(line + ("\n" if line.lstrip().startswith("```") else "  \n"))
    return "".join(lines)


class RichChatIO:
    """A comfortable terminal: line editor with history, suggestions, completion of the chat
    commands, and answers rendered live as Markdown."""

    def __init__(self, console: Any = None, session: Any = None) -> None:
        from prompt_toolkit import PromptSession
        from prompt_toolkit.completion import WordCompleter
        from prompt_toolkit.history import InMemoryHistory
        from rich.console import Console

        self._session = session or PromptSession(history=InMemoryHistory())
        self.completer = WordCompleter([EXIT_COMMAND, RESET_COMMAND], sentence=True)
        self._console = console or Console()

    def prompt_for_input(self, role: str) -> str:
        from prompt_toolkit.auto_suggest import AutoSuggestFromHistory

        self._console.print(f"[bold]{role}:")
        try:
            text = self._session.prompt(
                completer=self.completer,
                multiline=False,
                auto_suggest=AutoSuggestFromHistory(),
            )
        except EOFError:
            return ""
        self._console.print()
        return text

    def prompt_for_output(self, role: str) -> None:
        self._console.print(f"[bold]{role}:")

    def stream_output(self, texts: Iterable[str]) -> str:
        from rich.live import Live
        from rich.markdown import Markdown

        last = ""
        with Live(console=self._console, refresh_per_second=4, vertical_overflow="visible") as live:
            for text in texts:
                last = text
                live.update(Markdown(markdown_line_breaks(text)))
        self._console.print()
        return last.strip()

    def print_message(self, text: str) -> None:
        self._console.print(text, markup=False, highlight=False, soft_wrap=True)


def make_chat_io(style: str) -> ChatIO:
    if style == "simple":
        return SimpleChatIO()
    if style == "rich":
        return RichChatIO()
    if style == "programmatic":
        return ProgrammaticChatIO()
    raise ValueError(f"unknown style {style!r}; choose one of {', '.join(STYLES)}")


@dataclass(frozen=True)
class GenerationSettings:
    temperature: float = 0.7
    repetition_penalty: float = 1.0
    max_new_tokens: int = 512
    stream_interval: int = 2
    seed: int | None = None
    debug: bool = False

    def params(self, prompt: str, stop: str | list[str] | None) -> GenerateParams:
        return GenerateParams(
            prompt=prompt,
            temperature=self.temperature,
            repetition_penalty=self.repetition_penalty,
            max_new_tokens=self.max_new_tokens,
            stop=stop,
            echo=False,
            seed=self.seed,
        )


class _Turn:
    """Passes the texts of one generation through and remembers why it failed, if it did."""

    def __init__(self) -> None:
        self.error: str | None = None

    def texts(self, chunks: Iterable[dict[str, Any]]) -> Iterator[str]:
        try:
            for chunk in chunks:
                if chunk.get("error_code", 0):
                    self.error = f"{chunk.get('text', '')} (error_code={chunk['error_code']})"
                    return
                yield chunk["text"]
        except Exception as exc:  # shown to the user; the chat goes on
            self.error = f"{type(exc).__name__}: {exc} (error_code={int(ErrorCode.INTERNAL_ERROR)})"


def chat_loop(
    model: Any,
    tokenizer: Any,
    context_len: int,
    conv_template: Conversation,
    io: ChatIO,
    settings: GenerationSettings,
    generate: GenerateFn | None = None,
) -> None:
    """Talk until the user leaves. The whole history is re-sent every turn; the generator
    left-truncates it to fit ``context_len``. ``generate`` defaults to ``generate_stream``."""
    if generate is None:
        from services.model_worker.generation import generate_stream as generate
    conv = conv_template.copy()
    try:
        while True:
            text = io.prompt_for_input(conv.roles[0]).strip()
            if not text or text == EXIT_COMMAND:
                io.print_message(EXIT_MESSAGE)
                return
            if text == RESET_COMMAND:
                conv = conv_template.copy()
                io.print_message(RESET_NOTICE)
                continue
            conv.append_message(conv.roles[0], text)
            conv.append_message(conv.roles[1], None)
            prompt = conv.get_prompt()
            chunks = generate(
                model,
                tokenizer,
                settings.params(prompt, conv.stop_str),
                context_len=context_len,
                stream_interval=settings.stream_interval,
                extra_stop_token_ids=list(conv.stop_token_ids),
            )
            io.prompt_for_output(conv.roles[1])
            turn = _Turn()
            outputs = io.stream_output(turn.texts(chunks)).strip()
            if turn.error is not None:
                del conv.messages[-2:]  # a failed turn must not poison later prompts
                io.print_message(f"error: {turn.error}")
                continue
            conv.update_last_message(outputs)
            if settings.debug:
                io.print_message(
                    json.dumps({"prompt": prompt, "outputs": outputs}, ensure_ascii=False)
                )
    except KeyboardInterrupt:
        io.print_message(EXIT_MESSAGE)


# This session's sampling flags: each sets the GenerationSettings field of the same name.
_SAMPLING_FLAGS: tuple[tuple[str, type, str], ...] = (
    ("--temperature", float, "below 1e-5: greedy"),
    ("--repetition-penalty", float, "above 1.0: repeated tokens are less likely"),
    ("--max-new-tokens", int, "longest answer, in tokens"),
)


def build_parser() -> SettingsParser:
    """The model flags come from ``ModelSettings`` (``WORKER_*``, as the worker reads them); the
    sampling and display flags belong to this chat session only."""
    cli = SettingsParser(
        "Chat with a model in the terminal (in-process, no servers). "
        f"Type {EXIT_COMMAND} or an empty line to leave, {RESET_COMMAND} to start over.",
        ModelSettings,
        aliases={"--repetition_penalty": "--repetition-penalty"},
        prog="python -m services.model_worker.cli",
    )
    parser = cli.parser
    defaults = GenerationSettings()
    for flag, kind, help_text in _SAMPLING_FLAGS:
        field = flag.removeprefix("--").replace("-", "_")
        parser.add_argument(
            flag,
            type=kind,
            default=getattr(defaults, field),
            help=f"{help_text} (default: %(default)s)",
        )
    parser.add_argument(
        "--style",
        choices=STYLES,
        default="simple",
        help="simple: plain lines; rich: line editor and Markdown; programmatic: for programs "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--debug", action="store_true", help='print {"prompt", "outputs"} after each turn'
    )
    return cli


def main(argv: list[str] | None = None) -> None:
    cli = build_parser()
    args = cli.parse(argv)
    model = with_default_model(cli.settings(ModelSettings))
    gen = GenerationSettings(
        temperature=args.temperature,
        repetition_penalty=args.repetition_penalty,
        max_new_tokens=args.max_new_tokens,
        stream_interval=model.stream_interval,
        seed=model.seed,
        debug=args.debug,
    )
    try:  # bad sampling values fail now, not after the model has loaded
        gen.params("", None)
    except ValidationError as exc:
        cli.parser.error(str(exc))

    from shared.logging_setup import configure_logging

    configure_logging("cli", "WARNING", to_file=False)
    try:
        loaded, conv = load_configured_model(cli.parser, model)
    except KeyboardInterrupt:
        print(EXIT_MESSAGE)
        return
    if not loaded.generates:
        cli.parser.exit(
            2,
            f"error: {model.model_path} is an embedding model (an encoder): it cannot chat; "
            "serve it with python -m services.model_worker for /v1/embeddings\n",
        )
    if gen.max_new_tokens >= loaded.context_len:
        cli.parser.exit(
            2,
            f"error: --max-new-tokens {gen.max_new_tokens} leaves no room for the prompt in the "
            f"model's context of {loaded.context_len} tokens\n",
        )
    chat_loop(
        loaded.model, loaded.tokenizer, loaded.context_len, conv, make_chat_io(args.style), gen
    )


if __name__ == "__main__":
    main()
