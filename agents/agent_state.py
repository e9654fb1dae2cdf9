"""What every part of the agent shares: its settings, seams and state (`AgentState`).

The agent is built in layers, each a module, each using the ones below it: `agents.reporting` (as-run
events, the outbox, heartbeats, faults), `agents.playout` (starting items on time, preemption),
`agents.plan_handling` (plans, prefetching), and `agents.core` (the link callbacks and lifecycle).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from agents.amplifier import Amplifier, MemoryRelay, NullMixer, Volume
from agents.cache import AudioCache
from agents.clock import UNKNOWN, Clock, NtpProbe, NtpStatus, ServerOffset
from agents.commands import CommandHandler
from agents.journal import Journal
from agents.link import Link
from agents.player import Player, Prepared
from agents.protocol import (
    AsRunEvent,
    AsRunKind,
    Plan,
    PlanItem,
)
from agents.start_timing import PREROLL_S, START_GUARD_S
from agents.telemetry import LinkQuality, ModemProbe


@dataclass
class AgentSettings:
    agent_id: str
    heartbeat_s: float = 30.0
    outbox_resend_s: float = 15.0
    groups: tuple[str, ...] = ()
    """Group topics from the configuration file, on top of those the plan names."""
    fallback_file: Path | None = None
    """Played in place of an item whose audio is missing or fails to play, until the item's slot ends."""
    allow_reboot: bool = False
    reboot_command: tuple[str, ...] = ("systemctl", "reboot")
    ntp_fault_ms: float = 50.0
    server_clock_fault_ms: float = 250.0
    missing_retry_s: float = 30.0
    """First delay before audio that could not be fetched is tried again (doubling, with jitter)."""
    state_dir: Path | None = None
    """Where disk use is measured for the heartbeat."""
    preroll_s: float = PREROLL_S
    """The checks before a start run this long ahead; the output itself starts from a timer at play_at."""
    start_guard_s: float = START_GUARD_S
    """The start timer fires this long before play_at and then holds the event loop until play_at."""
    play_overrun_s: float = 10.0
    """A play still running this long after its item's end is stopped and reported as failed."""
    output_latency_s: float = 0.0
    """The output path's delay to sound (config player.output_latency_ms): the output starts this much
    before play_at, so that neighbouring clusters with different sound cards are heard in step."""


@dataclass
class Running:
    """The item playing now and, once it ends, how it ended (set by whichever path stops it)."""

    item: PlanItem
    started_at: float
    offset_ms: int = 0
    task: asyncio.Task[None] = field(init=False)
    cancel_kind: AsRunKind = "preempted"
    cancel_detail: str = ""
    resumable: bool = True
    fallback: bool = False
    announced: asyncio.Event = field(default_factory=asyncio.Event)
    settled: bool = False
    stop_timer: asyncio.TimerHandle | None = None

    def position_ms(self, now: float) -> int:
        return self.offset_ms + max(0, round((now - self.started_at) * 1000))


@dataclass
class AgentStats:
    rejected_messages: int = 0
    plans_applied: int = 0
    last_rejection: str = ""
    started_items: int = 0
    seen_commands: dict[str, float] = field(default_factory=dict)
    """Command id → when it arrived (this run); the journal remembers them across restarts."""


def resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class AgentState:
    """The seams and the mutable state of one agent; the layers above add behaviour, never state."""

    def __init__(self, settings: AgentSettings, *, link: Link, player: Player, cache: AudioCache,
                 journal: Journal, clock: Clock | None = None,
                 on_event: Callable[[AsRunEvent], None] | None = None,
                 amplifier: Amplifier | None = None, volume: Volume | None = None,
                 ntp: NtpProbe | None = None, modem: ModemProbe | None = None,
                 commands: CommandHandler | None = None) -> None:
        self.settings = settings
        self._link = link
        self._player = player
        self._cache = cache
        self._journal = journal
        self._clock = clock or Clock()
        self._on_event = on_event
        # Without a configured relay there is nothing to warm up.
        self.amplifier = amplifier or Amplifier(MemoryRelay(), warmup_s=0.0, hold_s=0.0)
        self.volume = volume or Volume(NullMixer())
        self._ntp_probe = ntp
        self._modem_probe = modem
        self._commands = commands or CommandHandler()
        self.stats = AgentStats()
        self._plan: Plan | None = None
        self._extra: dict[str, PlanItem] = {}  # play_now items outside the plan
        self._prepared: dict[str, Prepared] = {}
        self._running: Running | None = None
        self._dirty = False
        self._waiter: asyncio.Future[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._fetches: dict[str, asyncio.Task[None]] = {}
        self._session = 0
        self._seq = 0
        self._started_monotonic = time.monotonic()
        self._subscribed_groups: set[str] = set()
        self._missing: set[str] = set()
        self._fallback_sha = ""
        self.server_offset = ServerOffset()
        self.ntp: NtpStatus = UNKNOWN
        self.link_quality: LinkQuality | None = None
        self.faults: tuple[str, ...] = ()
