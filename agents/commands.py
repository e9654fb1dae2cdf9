"""Commands from the server: deduplicated by id (across restarts), refused when expired, always answered.

| name | args | effect |
|---|---|---|
| play_now | item | play the item at its ``play_at``; preempts lower priorities |
| stop | broadcast_id? | stop what plays (only if it belongs to that broadcast); never resumed |
| set_volume | percent, level? | set the ``normal`` (default) or ``emergency`` output level; kept across restarts |
| resync | — | resubscribe to the plan topic |
| rebirth | — | publish the birth again |
| amplifier | state | ``on`` / ``off`` hold the relay until ``auto``; ``off`` is refused while an emergency plays |
| reboot | confirm | reboot the Pi; only with ``allow_reboot = true`` and ``confirm`` equal to the agent id |
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from agents.errors import AgentError, ProtocolError
from agents.host import CommandRunner, run_command
from agents.protocol import QOS_AT_LEAST_ONCE, Command, CommandResult, Topics, encode
from schedules.model import Priority

if TYPE_CHECKING:
    from agents.core import Agent

log = logging.getLogger(__name__)


class CommandHandler:
    """Executes commands on an `Agent`. ``runner`` runs the reboot command (a fake in tests)."""

    def __init__(self, *, runner: CommandRunner = run_command, reboot_delay_s: float = 1.0) -> None:
        self._runner = runner
        self._reboot_delay_s = reboot_delay_s
        self._background: set[asyncio.Task[Any]] = set()

    def handle(self, agent: Agent, command: Command) -> None:
        if not agent.remember_command(command.id):
            return  # duplicate delivery (QoS 1), or a group and a direct copy of one order
        if command.expires_at.timestamp() < agent.clock.time():
            self._reply(agent, command, error=f"expired at {command.expires_at.isoformat()}")
            return
        try:
            data = self._execute(agent, command)
        except (AgentError, ValueError, TypeError) as exc:
            self._reply(agent, command, error=str(exc))
        else:
            self._reply(agent, command, data=data)

    def _execute(self, agent: Agent, command: Command) -> dict[str, object]:
        args = command.args
        if command.name == "play_now":
            item = command.play_item()
            agent.add_extra(item)
            return {"item_id": item.id}
        if command.name == "stop":
            broadcast_id = args.get("broadcast_id")
            if broadcast_id is not None and (isinstance(broadcast_id, bool) or not isinstance(broadcast_id, int)):
                raise ValueError("broadcast_id must be an integer")
            return {"stopped": agent.stop_playing(f"stopped by command {command.id}", broadcast_id)}
        if command.name == "set_volume":
            return self._set_volume(agent, args)
        if command.name == "resync":
            agent.resubscribe_plan()
            return {}
        if command.name == "rebirth":
            agent.publish_birth()
            return {}
        if command.name == "amplifier":
            state = args.get("state")
            if state not in ("on", "off", "auto"):
                raise ValueError("state must be 'on', 'off' or 'auto'")
            playing = agent.now_playing
            if state == "off" and playing is not None and playing.priority >= Priority.EMERGENCY:
                raise ValueError(f"an emergency is playing ({playing.id}); the amplifier stays on")
            agent.amplifier.force({"on": True, "off": False, "auto": None}[state])
            agent.notify_change()  # back to automatic: the playout decides (and releases the relay if idle)
            return {"amplifier_on": agent.amplifier.is_on, "forced": state != "auto"}
        if command.name == "reboot":
            if not agent.settings.allow_reboot:
                raise ValueError("reboot is not allowed on this agent (allow_reboot = false)")
            if args.get("confirm") != agent.settings.agent_id:
                raise ValueError("reboot needs args.confirm equal to the agent id")
            self._spawn(self._reboot(agent.settings.reboot_command))
            return {"rebooting_in_s": self._reboot_delay_s}
        raise ProtocolError(f"unsupported command {command.name}")

    def _set_volume(self, agent: Agent, args: Any) -> dict[str, object]:
        percent = args.get("percent")
        if not isinstance(percent, int) or isinstance(percent, bool) or not 0 <= percent <= 100:
            raise ValueError("percent must be an integer from 0 to 100")
        level = args.get("level", "normal")
        if level not in ("normal", "emergency"):
            raise ValueError("level must be 'normal' or 'emergency'")
        volume = agent.volume
        if level == "normal":
            volume.normal_percent = percent
            agent.save_volume(percent)
        else:
            volume.emergency_percent = percent
        playing = agent.now_playing
        playing_level = None if playing is None else (
            "emergency" if playing.priority >= Priority.EMERGENCY else "normal")
        if playing_level in (None, level) and (playing is not None or level == "normal"):
            self._spawn(volume.set(percent))
        return {"percent": percent, "level": level}

    async def _reboot(self, argv: Sequence[str]) -> None:
        await asyncio.sleep(self._reboot_delay_s)  # let the command result leave first
        log.warning("rebooting on command: %s", " ".join(argv))
        result = await self._runner(argv)
        if not result.ok:
            log.error("reboot command failed (%d): %s", result.returncode, result.stderr.strip())

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    @staticmethod
    def _reply(agent: Agent, command: Command, *, data: dict[str, object] | None = None, error: str = "") -> None:
        agent_id = agent.settings.agent_id
        if error:
            log.warning("%s refused command %s (%s): %s", agent_id, command.id, command.name, error)
        result = CommandResult(id=command.id, agent_id=agent_id, status="error" if error else "ok",
                               data=data or {}, error=error)
        agent.link.publish(Topics.command_result(agent_id), encode(result), qos=QOS_AT_LEAST_ONCE)
