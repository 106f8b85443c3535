"""What every CLI module shares: the console, and turning errors into one line + exit code.

Only CLI modules print. An error is one line on stderr (what, where, what to do) and the
documented exit code; a bug is one line saying so; a traceback only with ``--debug``.

Both consoles print text as is (rich markup off): keys, messages and command output come
from storage, configs and shell steps, and a ``[/x]`` in them must never be read as a tag
(it would raise instead of printing). Styling goes through `rich.text.Text`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from functools import wraps
from typing import Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.segment import Segment

from bascule.config import Config
from bascule.errors import BasculeError, ExitCode, JournalError
from bascule.logging import redact_text
from bascule.tuning import tune_allocator as tune_allocator  # re-exported for the CLI
from bascule.tuning import tune_gc as tune_gc


class RedactingConsole(Console):
    """A rich Console whose every printed text goes through the log redactor.

    Strings are redacted before rendering (so that wrapping cannot split a secret), and the
    rendered text of any renderable (tables, progress) once more before it is written."""

    def print(self, *objects: Any, **kwargs: Any) -> None:
        super().print(*(redact_text(o) if isinstance(o, str) else o for o in objects), **kwargs)

    def _render_buffer(self, buffer: Iterable[Segment]) -> str:
        return redact_text(super()._render_buffer(buffer))


# markup off: text from storage, steps and configs is printed as it is, never as rich tags
console = RedactingConsole(highlight=False, markup=False)
err_console = RedactingConsole(stderr=True, highlight=False, markup=False)


def echo(text: str) -> None:
    """Print machine-readable text (JSON, YAML) on stdout, secrets redacted, no styling."""
    typer.echo(redact_text(text))


P = ParamSpec("P")
R = TypeVar("R")

_state = {"debug": False, "verbose": False}


def set_debug(enabled: bool) -> None:
    _state["debug"] = enabled


def set_verbose(enabled: bool) -> None:
    _state["verbose"] = enabled


def fail(message: str, code: ExitCode) -> typer.Exit:
    """Print one error line to stderr (secrets redacted) and return the Exit to raise."""
    err_console.print(f"error: {message}", markup=False, soft_wrap=True)
    return typer.Exit(int(code))


def handle_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Decorator for commands: BasculeError -> one line + its exit code; Ctrl-C -> exit 4.

    Any other exception is a bug (the connectors map their SDK's errors, nothing else): one
    line saying so, exit 1 (as Python's own exit for an uncaught exception, which is what
    ``--debug`` gives, with the traceback)."""

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except BasculeError as exc:
            if _state["debug"]:
                raise
            raise fail(str(exc), exc.exit_code) from None
        except KeyboardInterrupt:
            if _state["debug"]:
                raise
            raise fail(
                "interrupted; run the same command again to resume", ExitCode.INTERRUPTED
            ) from None
        except OSError as exc:
            if _state["debug"]:
                raise
            where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
            raise fail(f"{exc.strerror or exc}{where}", ExitCode.STORAGE) from None
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except Exception as exc:
            if _state["debug"]:
                raise
            raise fail(
                f"internal error, a bug in bascule ({type(exc).__name__}: {exc}); "
                "re-run with --debug for the traceback and report it",
                ExitCode.FAILED,
            ) from None

    return wrapper


def setup_logging(cfg: Config) -> None:
    """JSON log file beside the journal, secrets from the config's env variables redacted."""
    from bascule.config import secret_values
    from bascule.logging import configure_logging, register_secret

    log_dir = cfg.journal.parent / "logs"
    try:
        # The console shows the command's own output and, on failure, one error line; the
        # event log goes to the JSON file (and to the console with --verbose).
        level = "info" if _state["verbose"] else "critical"
        # Per-object events are debug lines: in the file only with --debug.
        file_level = "debug" if _state["debug"] else "info"
        configure_logging(log_dir, console_level=level, file_level=file_level)
    except OSError as exc:
        raise JournalError(
            f"{log_dir}: cannot create the journal and log directory ({exc.strerror}); "
            "choose a writable directory for `journal:` in the config"
        ) from None
    for value in secret_values(cfg):
        register_secret(value)


def stdout_is_tty() -> bool:
    return sys.stdout.isatty()
