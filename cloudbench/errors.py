"""One error model: every error of the toolkit says what it names and how the command ends.

Every layer imports this module, the kernel's side too (``protocols``, ``data``: a remote
kernel gets it staged beside them), so it uses the standard library only. An error class
of the toolkit derives from one of the classes here by what it means, and the `study`
command turns it into its exit code in one place (cli.exits); :data:`EXIT_CODES` is the
table that the README's "Exit codes" shows (a test keeps the two equal).
"""

from __future__ import annotations

from typing import ClassVar

EXIT_OK = 0
#: The paper could not be built, or the toolkit could not go on (also Python's own status
#: for an unexpected exception, a bug, which keeps its traceback).
EXIT_FAILED = 1
EXIT_INPUT = 2
EXIT_RUNS_NOT_OK = 3
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for a process Ctrl-C stopped
EXIT_TERMINATED = 143  # 128 + SIGTERM

#: The exit codes of the `study` command and what each means: the README's table.
EXIT_CODES: dict[int, str] = {
    EXIT_OK: "done, and every planned run is ok",
    EXIT_FAILED: "the paper could not be built (the LaTeX log's errors are quoted), or the "
                 "toolkit could not go on: a command it needs is missing, a machine or a "
                 "service failed outside any run, or an internal error (with its traceback)",
    EXIT_INPUT: "the input was refused (a study file, an argument, a CSV, an archive: the "
                "message names the file, the key or the value); nothing ran",
    EXIT_RUNS_NOT_OK: "(`study run`, `study all`) the study went through but some planned "
                      "runs are not ok (failed, timeout, wrong_device): their records say "
                      "why, and the same command retries them. A run out of memory (`oom`) is "
                      "a result, not retried and not counted here",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C): the run in flight is stopped, its kernel too; "
                      "completed runs are kept, and the same command resumes",
    EXIT_TERMINATED: "terminated (SIGTERM, as a scheduler or `kill` sends it): as for "
                     "Ctrl-C, completed runs are kept and the same command resumes",
}


class CloudbenchError(Exception):
    """An error the toolkit expected: the command prints its message, never a traceback,
    and exits with its class's `code`.

    `path`, `key` and `value` are the file, the key and the value it names, when it names
    them; the message then reads "PATH: KEY: why", so the user finds the place at once.
    """

    code: ClassVar[int] = EXIT_FAILED
    path: str | None = None
    key: str | None = None
    value: object = None

    def __init__(self, message: str = "", *, path: object = None, key: str | None = None,
                 value: object = None) -> None:
        # Only what is given is set: a subclass may have set `key` before calling this.
        if path is not None:
            self.path = str(path)
        if key is not None:
            self.key = key
        if value is not None:
            self.value = value
        self.reason = message
        where = [str(part) for part in (path, key) if part]
        super().__init__(": ".join([*where, message]) if where else message)


class InputError(CloudbenchError):
    """Refused input (a study file, an argument, a CSV, an archive, a notebook, a dataset):
    nothing ran because of it, and only the user can correct it."""

    code = EXIT_INPUT


class BuildError(CloudbenchError):
    """The paper (or another output) could not be built from input that was accepted."""

    code = EXIT_FAILED


class InfrastructureError(CloudbenchError):
    """A machine, a session, a kernel, a client or a command the toolkit needs failed: not
    the input's fault, and trying again may work. Inside a run it is that run's failure."""

    code = EXIT_FAILED


# Interruptions derive from KeyboardInterrupt, not Exception, on purpose: code that keeps
# going after a failed run (`except Exception`) must never swallow one, and every cleanup
# written for Ctrl-C (kernels killed, sessions closed, remote jobs cancelled) runs for them.
class Interrupted(KeyboardInterrupt):
    """The study was stopped from outside; completed runs are kept."""

    code: ClassVar[int] = EXIT_INTERRUPTED
    verb: ClassVar[str] = "interrupted"

    @property
    def message(self) -> str:
        """The one line the command prints."""
        return f"{self.verb}: completed runs are kept; run the same command to resume"


class Terminated(Interrupted):
    """SIGTERM (a scheduler's stop, `kill`): stops the study as Ctrl-C does."""

    code = EXIT_TERMINATED
    verb = "terminated"


__all__ = ["EXIT_CODES", "EXIT_FAILED", "EXIT_INPUT", "EXIT_INTERRUPTED", "EXIT_OK",
           "EXIT_RUNS_NOT_OK", "EXIT_TERMINATED", "BuildError", "CloudbenchError",
           "InfrastructureError", "InputError", "Interrupted", "Terminated"]
