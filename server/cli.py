"""The `loa` command: one entry point with subcommands.

Imports are deferred into each subcommand so that `loa agent` runs on a Raspberry Pi where only the
agent's dependencies (paho-mqtt, httpx) are installed.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from schedules.errors import LoaError


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("alembic.runtime.plugins", "httpx", "apscheduler.executors.default"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def cmd_agent(args: argparse.Namespace) -> int:
    from agents.config import load_config
    from agents.runtime import AgentRuntime, run_until_signalled

    config = load_config(Path(args.config))
    asyncio.run(run_until_signalled([AgentRuntime(config)]))
    return 0


def cmd_server(args: argparse.Namespace) -> int:
    import uvicorn

    from server.app import create_app
    from server.settings import load_settings

    settings = load_settings(Path(args.config) if args.config else None)
    app = create_app(settings)
    uvicorn.run(app, host=settings.http_host, port=settings.http_port, log_level="info")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from server.demo import run_demo

    asyncio.run(run_demo(data_dir=Path(args.data_dir), port=args.port, broker_port=args.broker_port,
                         fresh=args.fresh))
    return 0


def cmd_sim(args: argparse.Namespace) -> int:
    from server.simulate import run_sim

    asyncio.run(run_sim(server=args.server, broker=args.broker, agents=args.agents, area=args.area,
                        username=args.username, password=args.password, state_dir=Path(args.state_dir)))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    import importlib

    sys.path.insert(0, os.getcwd())  # bench/ lives beside the packages, not inside them
    module = importlib.import_module(f"bench.{args.name}")
    module.main(list(args.bench_args))
    return 0


def cmd_admin_init(args: argparse.Namespace) -> int:
    """Create the root area and its first administrator in an empty installation."""
    import getpass

    from server.db import Database
    from server.directory import create_area, create_user
    from server.permissions import Role
    from server.settings import load_settings

    settings = load_settings(Path(args.config) if args.config else None)
    password = os.environ.get("LOA_ADMIN_PASSWORD") or getpass.getpass(f"Password for {args.username}: ")
    database = Database(settings.effective_database_url)
    database.start()
    try:
        with database.session() as db:
            area = create_area(db, code=args.area_code, name=args.area_name, kind=args.kind, parent_code=None)
            create_user(db, username=args.username, password=password, full_name=args.full_name,
                        grants=[(Role.ADMIN, area.id)])
    finally:
        database.stop()
    print(f"created area {args.area_code} and administrator {args.username}")
    return 0


def cmd_admin_seed_areas(args: argparse.Namespace) -> int:
    """Add provinces, their communes and the former (pre-2025) commune codes from vietnamadminunits."""
    from server.admin_units import seed_areas
    from server.db import Database
    from server.settings import load_settings

    if not args.province and not args.all:
        print("loa: name at least one --province CODE, or --all", file=sys.stderr)
        return 2
    settings = load_settings(Path(args.config) if args.config else None)
    database = Database(settings.effective_database_url)
    database.start()
    try:
        with database.session() as db:
            report = seed_areas(db, None if args.all else args.province)
    finally:
        database.stop()
    print(f"added {report.provinces_added} province(s), {report.communes_added} commune(s), "
          f"{report.aliases_added} former commune code(s)")
    return 0


def cmd_test(args: argparse.Namespace) -> int:
    import pytest

    return int(pytest.main(list(args.pytest_args)))


def cmd_tts(args: argparse.Namespace) -> int:
    from audio.normalize import normalize

    if args.tts_command == "normalize":
        if args.text:
            print(normalize(" ".join(args.text)))
        else:
            for line in sys.stdin:
                print(normalize(line.rstrip("\n")))
        return 0
    from audio.render import render_speech
    from audio.tts import EspeakEngine, GttsEngine, TtsChain, default_chain

    engines = {"gtts": lambda: TtsChain([GttsEngine()]), "espeak-ng": lambda: TtsChain([EspeakEngine()]),
               "auto": lambda: default_chain()}
    rendered = render_speech(normalize(" ".join(args.text)), engines[args.engine]())
    Path(args.output).write_bytes(rendered.data)
    print(f"{args.output}: {rendered.duration_ms} ms, engine {rendered.engine}, voice {rendered.voice}, "
          f"sha256 {rendered.sha256}")
    return 0


def cmd_audio_prepare(args: argparse.Namespace) -> int:
    import json

    from audio.loudness import LoudnessTarget
    from audio.prepare import prepare_file
    from audio.probe import UploadLimits, check_upload

    source = Path(args.input)
    check_upload(source, UploadLimits())
    prepared = prepare_file(source, Path(args.output), target=LoudnessTarget(lufs=args.lufs,
                                                                             true_peak_db=args.true_peak))
    print(json.dumps({"duration_s": round(prepared.duration_ms / 1000, 3), "lufs": round(prepared.lufs, 2),
                      "true_peak_db": round(prepared.true_peak_db, 2), "sha256": prepared.sha256,
                      "codec": prepared.codec, "sample_rate": prepared.sample_rate}, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="loa", description="Loa: commune loudspeaker system")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="server + embedded broker + simulated agents + console, with demo data")
    demo.add_argument("--data-dir", default=os.environ.get("LOA_DEMO_DIR", "var/demo"))
    demo.add_argument("--port", type=int, default=8000)
    demo.add_argument("--broker-port", type=int, default=1884)
    demo.add_argument("--fresh", action="store_true", help="delete the demo data first")
    demo.set_defaults(func=cmd_demo)

    server = sub.add_parser("server", help="run the central server")
    server.add_argument("--config", help="TOML settings file (LOA_* environment variables override it)")
    server.set_defaults(func=cmd_server)

    agent = sub.add_parser("agent", help="run one agent (on a Raspberry Pi)")
    agent.add_argument("--config", required=True, help="the agent's TOML configuration")
    agent.set_defaults(func=cmd_agent)

    sim = sub.add_parser("sim", help="run N simulated agents against a server")
    sim.add_argument("--agents", type=int, default=10)
    sim.add_argument("--server", default="http://127.0.0.1:8000")
    sim.add_argument("--broker", default="mqtt://127.0.0.1:1884")
    sim.add_argument("--area", required=True, help="area code where the simulated clusters are registered")
    sim.add_argument("--username", required=True, help="an admin of that area (registers the devices)")
    sim.add_argument("--password", default=os.environ.get("LOA_SIM_PASSWORD", ""))
    sim.add_argument("--state-dir", default="var/sim")
    sim.set_defaults(func=cmd_sim)

    bench = sub.add_parser("bench", help="run a benchmark from bench/ (arguments go to it)")
    bench.add_argument("name", nargs="?", default="fanout",
                       choices=("fanout", "audio_prepare", "tts_letter", "schedule_compile", "agent_start",
                                "intelligibility"))
    bench.add_argument("bench_args", nargs=argparse.REMAINDER)
    bench.set_defaults(func=cmd_bench)

    admin = sub.add_parser("admin", help="installation tasks")
    admin_sub = admin.add_subparsers(dest="admin_command", required=True)
    init = admin_sub.add_parser("init", help="create the root area and its first administrator")
    init.add_argument("--config", help="server settings file")
    init.add_argument("--area-code", required=True)
    init.add_argument("--area-name", required=True)
    init.add_argument("--kind", default="province", choices=("province", "district", "commune"))
    init.add_argument("--username", default="admin")
    init.add_argument("--full-name", default="Quản trị hệ thống")
    init.set_defaults(func=cmd_admin_init)
    seed = admin_sub.add_parser("seed-areas", help="add provinces and communes (2025 list, former codes as aliases)")
    seed.add_argument("--config", help="server settings file")
    seed.add_argument("--province", action="append", default=[], help="two-digit province code (repeatable)")
    seed.add_argument("--all", action="store_true", help="all 34 provinces and 3,321 communes")
    seed.set_defaults(func=cmd_admin_seed_areas)

    test = sub.add_parser("test", help="run the whole test suite (arguments go to pytest)")
    test.add_argument("pytest_args", nargs=argparse.REMAINDER)
    test.set_defaults(func=cmd_test)

    tts = sub.add_parser("tts", help="Vietnamese text normalisation and speech")
    tts_sub = tts.add_subparsers(dest="tts_command", required=True)
    normalize = tts_sub.add_parser("normalize", help="print the spoken form (reads stdin lines without TEXT)")
    normalize.add_argument("text", nargs="*")
    say = tts_sub.add_parser("say", help="synthesise TEXT into an mp3")
    say.add_argument("text", nargs="+")
    say.add_argument("-o", "--output", required=True)
    say.add_argument("--engine", choices=("auto", "gtts", "espeak-ng"), default="auto")
    tts.set_defaults(func=cmd_tts)

    audio = sub.add_parser("audio", help="audio files")
    audio_sub = audio.add_subparsers(dest="audio_command", required=True)
    prepare = audio_sub.add_parser("prepare", help="turn any audio file into the broadcast format; prints JSON")
    prepare.add_argument("input")
    prepare.add_argument("-o", "--output", required=True)
    prepare.add_argument("--lufs", type=float, default=-16.0, help="integrated loudness target")
    prepare.add_argument("--true-peak", type=float, default=-1.5, help="true-peak ceiling in dBTP")
    prepare.set_defaults(func=cmd_audio_prepare)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    # `loa test …` and `loa bench NAME …` hand every later argument, options included, to the tool.
    if argv[:1] == ["test"]:
        args = argparse.Namespace(func=cmd_test, pytest_args=argv[1:], verbose=False)
    elif argv[:1] == ["bench"] and len(argv) > 1 and not argv[1].startswith("-"):
        args = parser.parse_args(argv[:2])
        args.bench_args = argv[2:]
    else:
        args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    try:
        return int(args.func(args))
    except LoaError as exc:
        print(f"loa: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
