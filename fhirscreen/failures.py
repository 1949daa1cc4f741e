"""How a command ends: every failure class becomes one clear line on stderr and its exit code.

The codes are ``fhirscreen.exitcodes``. An unexpected exception is a bug: one line naming its type and
where it happened, exit 1; the traceback only with ``-v``, and even then without the exception's
message (which may quote input data, and input data is patient data). SIGTERM is turned into the same
exception as Ctrl-C (SIGINT), so that ``finally`` blocks run (temporary files of patient data are
removed) and the run ends with 130; what was already written stays.
"""

from __future__ import annotations

import signal
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from types import FrameType
from typing import IO, Any, NoReturn, TypeVar

import click

from fhirscreen.exitcodes import (
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_NOTHING_USABLE,
    EXIT_OUTPUT_FAILED,
    EXIT_PARTIAL,
    EXIT_SOURCE_UNREACHABLE,
    EXIT_USAGE,
    outcome_code,
)
from fhirscreen.quality import DATA_LOST, NO_CONDITIONS, DataQuality, lost_parts
from fhirscreen.report.jsonio import OutputError, OutputWriteError
from fhirscreen.sources.base import ConfigurationError, NothingUsableError, SourceError

F = TypeVar("F", bound=Callable[..., Any])


def error_line(message: str) -> str:
    """Every error of the tool reads the same: ``fhirscreen: error: ...`` (on stderr)."""
    return f"fhirscreen: error: {message}"


def write_stdout(text: str | bytes) -> str | None:
    """Write ``text`` to standard output; the reason it could not be (ENOSPC from ``> /dev/full``, EPIPE
    from a closed pipe), else None. After a failure standard output is pointed at /dev/null, so that
    the interpreter's last flush as it exits cannot fail again with a traceback."""
    try:
        click.echo(text, nl=False)
        sys.stdout.flush()  # where click.echo wrote (a test runner's stream, when one is in place)
    except OSError as exc:
        _stdout_to_devnull()
        return exc.strerror or type(exc).__name__  # never the text being written
    return None


def _stdout_to_devnull() -> None:
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # no file descriptor (a test runner's capture)
        pass


def warning_line(message: str) -> str:
    """A warning of the tool (on stderr), in the format of ``error_line``."""
    return f"fhirscreen: warning: {message}"


def fail(message: str, code: int) -> NoReturn:
    click.echo(error_line(message), err=True)
    sys.exit(code)


class ToolUsageError(click.UsageError):
    """click's usage error (a bad option, a missing argument, no such command) in the tool's error
    format: click's usage line and help hint, then ``fhirscreen: error: ...`` instead of ``Error: ...``.
    The exit code stays click's (2)."""

    def show(self, file: IO[Any] | None = None) -> None:
        ctx = self.ctx  # ``err``: stderr unless click names another file
        if ctx is not None:
            hint = ""
            if ctx.command.get_help_option(ctx) is not None:
                names = ctx.command.get_help_option_names(ctx)
                hint = f"Try '{ctx.command_path} {max(names, key=len)}' for help.\n"
            click.echo(f"{ctx.get_usage()}\n{hint}", file=file, err=True, color=ctx.color)
        click.echo(error_line(self.format_message()), file=file, err=True, color=ctx.color if ctx else None)


class ToolClickError(click.ClickException):
    """Any other error click reports itself, in the tool's error format, with click's exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        _set_exit_code(self, exit_code)

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(error_line(self.format_message()), file=file, err=True)


@contextmanager
def click_errors_in_tool_format() -> Iterator[None]:
    """Re-raise click's own errors as ``ToolUsageError`` / ``ToolClickError`` (the help click shows
    when a group gets no command at all stays as it is)."""
    try:
        yield
    except (ToolUsageError, ToolClickError, click.exceptions.NoArgsIsHelpError):
        raise
    except click.UsageError as exc:
        usage = ToolUsageError(exc.format_message(), exc.ctx)
        _set_exit_code(usage, exc.exit_code)
        raise usage from None
    except click.ClickException as exc:
        raise ToolClickError(exc.format_message(), exc.exit_code) from None


def guarded(fn: F) -> F:
    """Run a command with the failure classes mapped to their exit codes (see the module docstring)."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        verbose = bool(kwargs.get("verbose"))
        try:
            with signals_as_interrupts():
                return fn(*args, **kwargs)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except ConfigurationError as exc:
            fail(str(exc), EXIT_USAGE)
        except NothingUsableError as exc:
            fail(str(exc), EXIT_NOTHING_USABLE)
        except SourceError as exc:
            fail(str(exc), EXIT_SOURCE_UNREACHABLE)
        except OutputWriteError as exc:
            fail(str(exc), EXIT_OUTPUT_FAILED)
        except OutputError as exc:
            fail(str(exc), EXIT_USAGE)
        except KeyboardInterrupt as exc:
            _clear_cpython_interrupt_mark()
            why = str(exc) or "SIGINT"
            fail(f"interrupted ({why}); outputs already written are kept, nothing else was", EXIT_INTERRUPTED)
        except Exception as exc:  # a bug: say so in one line, never with the input's data
            internal_error(exc, verbose)

    return wrapper  # type: ignore[return-value]


def _clear_cpython_interrupt_mark() -> None:
    """CPython marks the process to end by SIGINT at exit when a KeyboardInterrupt leaves code that
    ``exec`` ran from a string, even when the interrupt is caught further up; dataclasses build their
    methods that way at import time, so a SIGTERM in the first half second of a run (the criteria
    modules importing) ended it "killed by SIGINT" instead of with 130. Every ``exec`` of a string
    clears the mark as it starts, and this one ends normally."""
    exec("None")  # a constant string: nothing from outside is run


def internal_error(exc: BaseException, verbose: bool) -> NoReturn:
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" at {Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""
    if verbose:
        # The stack without the exception's message: it may quote a value from the input.
        click.echo("Traceback (most recent call last):", err=True)
        click.echo("".join(traceback.format_list(frames)).rstrip("\n"), err=True)
        click.echo(type(exc).__name__, err=True)
    hint = "" if verbose else " (run with -v for the stack)"
    fail(
        f"internal error {type(exc).__name__}{where}: a bug in fhirscreen, please report it{hint}",
        EXIT_INTERNAL,
    )


@contextmanager
def signals_as_interrupts() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt("SIGTERM") in the main thread while the command runs."""

    def on_term(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt("SIGTERM")

    try:
        previous = signal.signal(signal.SIGTERM, on_term)
    except ValueError:  # not the main thread (an embedding application): leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def finish(patients_read: int, quality: DataQuality, source: str, screened: int = 0) -> None:
    """End a screening command after its outputs are written: 4 when nothing usable was read (no patient,
    or no Condition at all), 5 when data was lost after retries (the outputs are partial), else return
    (exit 0). The rule is ``exitcodes.outcome_code``."""
    code = outcome_code(patients_read, quality, screened)
    lost = sum(1 for f in quality.findings if f.problem == DATA_LOST)
    if code == EXIT_NOTHING_USABLE:
        fail(f"nothing usable in {source}: {_why_nothing_usable(quality, lost)}", code)
    if code == EXIT_PARTIAL:
        fail(
            f"partial data from {source}: {lost_parts(lost)}; the outputs were written without them "
            f"(findings '{DATA_LOST}')",
            code,
        )


def _why_nothing_usable(quality: DataQuality, lost: int) -> str:
    missing = next((f.message for f in quality.findings if f.problem == NO_CONDITIONS), None)
    if missing is None:
        return "no patient was read (see the data-quality findings above)"
    if lost:
        missing += (
            f"; {lost_parts(lost)} and may hold them (findings '{DATA_LOST}')"
        )
    return missing


def _set_exit_code(error: click.ClickException, code: int) -> None:
    """Give one error its own exit code. Click 8.5 declares ``exit_code`` a class variable, so a typed
    assignment on an instance is refused; click itself reads it from the instance, as before."""
    setattr(error, "exit_code", code)  # noqa: B010  (a plain assignment fails the type check)
