"""`loa sim`: register N simulated clusters through the API, then run them with the real agent core."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from pathlib import Path

import httpx

from agents.sim import SimulatedAgent, Simulator, sim_config
from server.errors import ConfigError


def provision(server: str, *, agents: int, area: str, username: str, password: str,
              tokens_file: Path) -> list[SimulatedAgent]:
    """Register ``sim-<area>-NNNN`` devices that are not yet known; tokens are kept in a 0600 file."""
    tokens: dict[str, str] = json.loads(tokens_file.read_text()) if tokens_file.exists() else {}
    wanted = [f"sim-{area.lower()}-{i:04d}" for i in range(1, agents + 1)]
    missing = [a for a in wanted if a not in tokens]
    if missing:
        with httpx.Client(base_url=server, timeout=30) as client:
            login = client.post("/api/v1/auth/login", json={"username": username, "password": password})
            if login.status_code != 200:
                raise ConfigError(f"cannot log in to {server} as {username}: {login.text}")
            headers = {"Authorization": f"Bearer {login.json()['token']}"}
            for agent_id in missing:
                response = client.post("/api/v1/devices", headers=headers, json={
                    "agent_id": agent_id, "name": f"Simulated {agent_id}", "area_code": area})
                if response.status_code != 201:
                    raise ConfigError(f"cannot register {agent_id}: {response.text}")
                tokens[agent_id] = response.json()["token"]
        tokens_file.parent.mkdir(parents=True, exist_ok=True)
        tokens_file.write_text(json.dumps(tokens, indent=1))
        os.chmod(tokens_file, 0o600)
    return [SimulatedAgent(a, tokens[a]) for a in wanted]


async def run_sim(*, server: str, broker: str, agents: int, area: str, username: str, password: str,
                  state_dir: Path) -> None:
    simulated = await asyncio.to_thread(provision, server, agents=agents, area=area, username=username,
                                        password=password, tokens_file=state_dir / "tokens.json")
    simulator = Simulator([sim_config(a, root=state_dir, mqtt_url=broker) for a in simulated])
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await simulator.start()
    connected = await simulator.wait_connected(60)
    print(f"{connected}/{len(simulated)} simulated agents connected to {broker}; Ctrl+C stops them", flush=True)
    await stop.wait()
    await simulator.stop()
