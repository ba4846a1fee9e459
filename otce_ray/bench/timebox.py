"""Time-boxed steps: a function in a process of its own, or a command, stopped when it runs past its limit.

A step that hangs (a kernel that never returns, an autotuner on a huge shape) or dies (out of memory, a crash in a
native library) must not take the steps after it down. Each function runs in a child process of a forkserver
(started once, with the modules named in ``preload`` imported, so a child starts in milliseconds instead of the
seconds torch takes to import; CUDA is never initialised before the fork, which a forked child requires). The child
leads a process group of its own, so a step that runs past its limit is killed with anything it started.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import subprocess
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import Any


class StepTimeout(Exception):
    """The step ran past its limit and was killed."""


class StepFailed(Exception):
    """The step raised (the message names the exception and where), exited non-zero, or its process died."""


def call(function: Callable[..., Any], args: Sequence[Any], limit: float, preload: Sequence[str] = ()) -> Any:
    """``function(*args)`` in a child process; its return value (picklable), or StepTimeout / StepFailed."""
    context = mp.get_context("forkserver")
    context.set_forkserver_preload(list(preload))
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_child, args=(sender, function, tuple(args)))
    child.start()
    sender.close()
    try:
        if not receiver.poll(limit):
            _kill(child)
            raise StepTimeout(f"over its {limit:.0f} s limit")
        try:
            succeeded, value = receiver.recv()
        except EOFError:
            child.join(5)
            raise StepFailed(f"its process died (exit code {child.exitcode})") from None
    finally:
        child.join()
        receiver.close()
    if not succeeded:
        raise StepFailed(value)
    return value


def _kill(child: Any) -> None:
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except ProcessLookupError:  # killed before it made its group
        child.kill()


def _child(sender: Any, function: Callable[..., Any], args: tuple) -> None:
    os.setpgid(0, 0)  # a group of its own: a timeout kills whatever the step started too
    try:
        sender.send((True, function(*args)))
    except BaseException as error:  # noqa: BLE001 - every failure becomes the step's message
        sender.send((False, describe(error)))
    finally:
        sender.close()


def describe(error: BaseException) -> str:
    """``Type: message (at file:line)``, the innermost frame of the traceback: one line for a report row."""
    frames = traceback.extract_tb(error.__traceback__)
    where = f" (at {os.path.basename(frames[-1].filename)}:{frames[-1].lineno})" if frames else ""
    message = " ".join(str(error).split())
    return f"{type(error).__name__}: {message}{where}"


def command(argv: Sequence[str], limit: float, env: Mapping[str, str] | None = None) -> str:
    """Run a command; its output (stdout and stderr) when it exits 0, else StepFailed with its last line, or
    StepTimeout (the command is killed)."""
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=limit, env=dict(env or os.environ),
                              check=False)
    except subprocess.TimeoutExpired:
        raise StepTimeout(f"over its {limit:.0f} s limit") from None
    output = (done.stdout + done.stderr).strip()
    if done.returncode != 0:
        last = output.splitlines()[-1] if output else ""
        raise StepFailed(f"exit code {done.returncode}: {last}")
    return output
