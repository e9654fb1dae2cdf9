"""Running the Pi's own programs (amixer, chronyc, timedatectl, mmcli, systemctl) behind one seam.

Tests and the simulator replace `CommandRunner` with a function returning captured outputs, so every
parser is exercised on real samples without the programs being installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class CommandOutput:
    returncode: int
    stdout: str
    stderr: str = ""

    @property
    def ok(self) -> bool:
        return self.returncode == 0


CommandRunner = Callable[[Sequence[str]], Awaitable[CommandOutput]]
"""Runs one command; MUST NOT raise for a missing program or a failure (return code 127 / non-zero)."""


async def run_command(argv: Sequence[str], timeout_s: float = 10.0) -> CommandOutput:
    """The real runner: no shell, a timeout, and a missing program reported as return code 127."""
    if not argv or shutil.which(argv[0]) is None:
        return CommandOutput(127, "", f"{argv[0] if argv else '(empty)'}: not found")
    try:
        process = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
    except OSError as exc:
        return CommandOutput(126, "", str(exc))
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=timeout_s)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        return CommandOutput(124, "", f"{argv[0]}: timed out after {timeout_s} s")
    return CommandOutput(process.returncode if process.returncode is not None else 1,
                         stdout.decode("utf-8", "replace"), stderr.decode("utf-8", "replace"))
