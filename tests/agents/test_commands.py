"""Commands: duplicates ignored by id even across a restart, expired ones refused, reboot guarded."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from agents.commands import CommandHandler
from agents.core import AgentSettings
from agents.host import CommandOutput
from agents.protocol import Command, CommandResult, Topics, encode
from tests.agents.fakes import Harness, make_agent

AGENT = "test-agent"


def command(command_id: str, name: str, *, expired: bool = False, **args: object) -> bytes:
    now = datetime.now(UTC) - (timedelta(minutes=10) if expired else timedelta())
    return encode(Command(id=command_id, name=name, issued_at=now,  # type: ignore[arg-type]
                          expires_at=now + timedelta(minutes=5), args=args))


def results(h: Harness) -> list[CommandResult]:
    return [m for m in (p.message() for p in h.link.on("cmd/result")) if isinstance(m, CommandResult)]


class Reboots:
    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    async def __call__(self, argv: Sequence[str]) -> CommandOutput:
        self.calls.append(list(argv))
        return CommandOutput(0, "")


async def agent_with_reboot(tmp_path: Path, *, allow: bool, runner: Reboots) -> Harness:
    settings = AgentSettings(agent_id=AGENT, heartbeat_s=3600, outbox_resend_s=3600, allow_reboot=allow,
                             reboot_command=("sudo", "systemctl", "reboot"))
    return await make_agent(tmp_path, settings=settings, commands=CommandHandler(runner=runner, reboot_delay_s=0.05))


async def test_reboot_is_refused_unless_allowed_and_confirmed(tmp_path: Path) -> None:
    runner = Reboots()
    h = await agent_with_reboot(tmp_path / "a", allow=False, runner=runner)
    allowed = await agent_with_reboot(tmp_path / "b", allow=True, runner=runner)
    try:
        h.agent.on_message(Topics.command(AGENT), command("r1", "reboot", confirm=AGENT))
        allowed.agent.on_message(Topics.command(AGENT), command("r2", "reboot"))
        allowed.agent.on_message(Topics.command(AGENT), command("r3", "reboot", confirm="another-agent"))
        await asyncio.sleep(0.2)
        assert runner.calls == []
        assert "not allowed" in results(h)[0].error
        assert [r.status for r in results(allowed)] == ["error", "error"]
        allowed.agent.on_message(Topics.command(AGENT), command("r4", "reboot", confirm=AGENT))
        await asyncio.sleep(0.2)
        assert runner.calls == [["sudo", "systemctl", "reboot"]]
        assert results(allowed)[-1].status == "ok"
    finally:
        await h.close()
        await allowed.close()


async def test_a_command_redelivered_after_a_restart_is_not_run_again(tmp_path: Path) -> None:
    runner = Reboots()
    first = await agent_with_reboot(tmp_path, allow=True, runner=runner)
    first.agent.on_message(Topics.command(AGENT), command("r1", "reboot", confirm=AGENT))
    await asyncio.sleep(0.2)
    await first.close()
    second = await agent_with_reboot(tmp_path, allow=True, runner=runner)
    try:
        second.agent.on_message(Topics.command(AGENT), command("r1", "reboot", confirm=AGENT))
        await asyncio.sleep(0.2)
        assert len(runner.calls) == 1 and results(second) == []
    finally:
        await second.close()


async def test_an_expired_command_is_refused_with_its_reason_and_changes_nothing(tmp_path: Path) -> None:
    h = await make_agent(tmp_path)
    try:
        h.agent.on_message(Topics.command(AGENT), command("v1", "set_volume", expired=True, percent=5))
        (result,) = results(h)
        assert result.status == "error" and result.error.startswith("expired at")
        assert h.agent.volume_percent == 80
    finally:
        await h.close()


async def test_volume_is_kept_across_restarts_and_levels_are_validated(tmp_path: Path) -> None:
    first = await make_agent(tmp_path)
    first.agent.on_message(Topics.command(AGENT), command("v1", "set_volume", percent=45))
    first.agent.on_message(Topics.command(AGENT), command("v2", "set_volume", percent=90, level="emergency"))
    first.agent.on_message(Topics.command(AGENT), command("v3", "set_volume", percent=101))
    first.agent.on_message(Topics.command(AGENT), command("v4", "set_volume", percent=50, level="loud"))
    assert [r.status for r in results(first)] == ["ok", "ok", "error", "error"]
    assert first.agent.volume.emergency_percent == 90
    await first.close()
    second = await make_agent(tmp_path)
    try:
        assert second.agent.volume_percent == 45
    finally:
        await second.close()
