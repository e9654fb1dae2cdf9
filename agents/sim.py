"""Many agents in one process: the same `Agent` core, a file sink per agent, one event loop.

Used by `loa sim`, the demo and the benchmarks, so load tests exercise the real agent logic.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from dataclasses import dataclass, replace
from pathlib import Path

import httpx

from agents.config import AgentConfig
from agents.runtime import AgentRuntime
from agents.start_timing import PREROLL_S

log = logging.getLogger(__name__)

PREROLL_PER_AGENT_S = 0.001


@dataclass(frozen=True)
class SimulatedAgent:
    agent_id: str
    token: str


def sim_config(agent: SimulatedAgent, *, root: Path, mqtt_url: str, heartbeat_s: float = 30.0) -> AgentConfig:
    state_dir = root / agent.agent_id
    # No host probes (a thousand chronyc calls would measure the same clock) and a journal that survives a
    # crash of the process but not a power cut: the simulated agents share one disk.
    return AgentConfig(agent_id=agent.agent_id, state_dir=state_dir, mqtt_url=mqtt_url,
                       mqtt_username=agent.agent_id, mqtt_password=agent.token, token=agent.token,
                       player_backend="file", sink_path=state_dir / "sink.jsonl", heartbeat_s=heartbeat_s,
                       probe_host=False, durable_journal=False, memory_journal=True)


class Simulator:
    def __init__(self, configs: list[AgentConfig], *, ramp_per_s: float = 200.0) -> None:
        # Every agent's pre-start checks share one event loop: give the whole fleet time to finish them
        # before the common start instant (measured here: ~0.3 ms of loop time per agent under load).
        preroll = PREROLL_S + PREROLL_PER_AGENT_S * len(configs)
        self._configs = [replace(c, preroll_s=max(c.preroll_s, preroll)) for c in configs]
        self._ramp_per_s = ramp_per_s
        self.runtimes: list[AgentRuntime] = []
        self._http: httpx.AsyncClient | None = None

    async def start(self) -> None:
        # One connection pool for all simulated agents, as a real fleet shares the server's capacity.
        self._http = httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=20))
        slots = asyncio.Semaphore(20)
        for index, config in enumerate(self._configs):
            runtime = AgentRuntime(config, http=self._http, download_slots=slots)
            await runtime.start()
            self.runtimes.append(runtime)
            # Ramp connections: a broker's listen backlog (100 on Mosquitto) overflows otherwise.
            if self._ramp_per_s and (index + 1) % 50 == 0:
                await asyncio.sleep(50 / self._ramp_per_s)
        # Thousands of long-lived agents make every full garbage collection a pause of tens of ms on the
        # shared loop; what exists now lives as long as the simulator, so take it out of collection.
        gc.collect()
        gc.freeze()

    async def wait_connected(self, timeout_s: float = 30.0) -> int:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while asyncio.get_running_loop().time() < deadline:
            connected = sum(1 for r in self.runtimes if r.link is not None and r.link.connected)
            if connected == len(self.runtimes):
                return connected
            await asyncio.sleep(0.1)
        return sum(1 for r in self.runtimes if r.link is not None and r.link.connected)

    async def stop(self) -> None:
        await asyncio.gather(*(runtime.stop() for runtime in self.runtimes), return_exceptions=True)
        if self._http is not None:
            await self._http.aclose()
