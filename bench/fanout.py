"""Emergency fan-out: one immediate broadcast to N agents, receive latency, against raw MQTT.

N simulated agents (the real agent core, one asyncio process) listen on a group topic. Each round the
"server" publishes one emergency `play_now` command on that group topic, exactly as the server's
bridge encodes it; an agent's receive time is when its core has decoded, validated and accepted the
command. The reference, in the same run on the same broker and the same connections: a raw paho
publish of a payload of the same size, timed when paho hands it to the connection's callback (no
decoding, no agent logic). Ratio = Loa / raw.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import hashlib
import logging
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from agents.protocol import AudioRef, Command, PlanItem, Topics, encode
from agents.sim import SimulatedAgent, Simulator, sim_config
from bench.common import file_server, mosquitto, summary
from schedules import Priority

GROUP = "area-bench"
RAW_TOPIC = "bench/raw"


@contextlib.contextmanager
def broker(kind: str, agents: int) -> Iterator[str]:
    if kind == "mosquitto":
        with mosquitto(agents) as url:
            yield url
        return
    from bench.common import free_port
    from server.broker import EmbeddedBroker

    port = free_port()
    embedded = EmbeddedBroker("127.0.0.1", port)
    loop = asyncio.new_event_loop()
    import threading

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(embedded.start(), loop).result(30)
    try:
        yield f"mqtt://127.0.0.1:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(embedded.stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)


def emergency_command(audio_url: str, sha256: str, size: int) -> Command:
    now = datetime.now(UTC)
    item = PlanItem(id=f"bench-{uuid.uuid4().hex[:8]}", broadcast_id=1, title="Bão số 3", priority=Priority.EMERGENCY,
                    play_at=now + timedelta(seconds=30),
                    audio=AudioRef(sha256=sha256, url=audio_url, duration_ms=1000, size_bytes=size))
    return Command(id=uuid.uuid4().hex, name="play_now", issued_at=now, expires_at=now + timedelta(minutes=5),
                   args={"item": item.to_dict()})


async def run(agents: int, rounds: int, broker_kind: str) -> dict[str, list[float]]:
    logging.getLogger("agents").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory() as tmp, broker(broker_kind, agents) as url:
        root = Path(tmp)
        audio = b"\xff\xfb" + bytes(4000)
        sha = hashlib.sha256(audio).hexdigest()
        (root / "audio").mkdir()
        (root / "audio" / sha).write_bytes(audio)
        with file_server(root / "audio") as http_base:
            configs = [dataclasses.replace(sim_config(SimulatedAgent(f"bench-{i:05d}", "b" * 32), root=root / "a",
                                                      mqtt_url=url, heartbeat_s=3600), groups=(GROUP,))
                       for i in range(agents)]
            # The publisher connects first: paho's threaded loop uses select(), which cannot watch a file
            # descriptor above 1023, and a thousand agents open many descriptors.
            publisher = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="bench-server")
            host, port = url.removeprefix("mqtt://").split(":")
            publisher.connect(host, int(port))
            publisher.loop_start()
            simulator = Simulator(configs)
            raw_seen: dict[str, dict[str, float]] = {}
            await simulator.start()
            for runtime in simulator.runtimes:
                link = runtime.link
                assert link is not None
                forward = link._on_message_cb
                seen = raw_seen.setdefault(runtime.config.agent_id, {})

                def tap(topic: str, payload: bytes, forward=forward, seen=seen) -> None:  # type: ignore[no-untyped-def]
                    if topic == RAW_TOPIC:
                        seen[payload[:32].decode()] = time.time()
                        return
                    forward(topic, payload)

                link._on_message_cb = tap
                link.subscribe([(RAW_TOPIC, 1)])
            connected = await simulator.wait_connected(120)
            print(f"  {connected}/{agents} agents connected to {broker_kind}", flush=True)
            await asyncio.sleep(2.0)  # let subscriptions settle

            latencies: dict[str, list[float]] = {"loa": [], "raw": []}
            try:
                for round_ in range(rounds):
                    command = emergency_command(f"{http_base}/{sha}", sha, len(audio))
                    payload = encode(command)
                    raw_key = uuid.uuid4().hex
                    raw_payload = (raw_key.ljust(32) + "x" * (len(payload) - 32)).encode()

                    sent = time.time()
                    publisher.publish(RAW_TOPIC, raw_payload, qos=1)
                    await _wait(lambda k=raw_key: sum(k in s for s in raw_seen.values()) >= connected, 30)
                    latencies["raw"] += [(s[raw_key] - sent) * 1000 for s in raw_seen.values() if raw_key in s]

                    sent = time.time()
                    publisher.publish(Topics.group_command(GROUP), payload, qos=1)
                    agents_seen = [r.agent.stats.seen_commands for r in simulator.runtimes if r.agent]
                    await _wait(lambda c=command.id, a=agents_seen: sum(c in s for s in a) >= connected, 30)
                    latencies["loa"] += [(s[command.id] - sent) * 1000 for s in agents_seen if command.id in s]
                    print(f"  round {round_ + 1}: raw reached {sum(raw_key in s for s in raw_seen.values())}, "
                          f"Loa reached {sum(command.id in s for s in agents_seen)} agents", flush=True)
                    await asyncio.sleep(1.0)
            finally:
                publisher.loop_stop()
                publisher.disconnect()
                await simulator.stop()
    return latencies


async def _wait(condition: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not condition():  # type: ignore[operator]
        await asyncio.sleep(0.005)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--broker", choices=("mosquitto", "embedded"), default="mosquitto")
    args = parser.parse_args(argv)
    print(f"fan-out: {args.agents} agents, {args.rounds} rounds, broker {args.broker}", flush=True)
    latencies = asyncio.run(run(args.agents, args.rounds, args.broker))
    from bench.common import percentile

    print(f"  raw paho publish   {summary(latencies['raw'])}")
    print(f"  Loa emergency cmd  {summary(latencies['loa'])}")
    for q in (50, 99):
        raw, loa = percentile(latencies["raw"], q), percentile(latencies["loa"], q)
        print(f"  ratio Loa/raw p{q}: {loa / raw:.2f}")


if __name__ == "__main__":
    main()
