"""Intelligibility: sentences of the official letter, spoken by espeak-ng, transcribed offline, word error rate.

Dev-only. The transcriber is the ``viet-asr`` package: it runs offline (its 69 MB model is embedded in
the wheel; it ran here in a network namespace with no network at all), but its model licence is
unstated, so it is never a Loa dependency and is in no extra of pyproject.toml. Install it in a
separate virtual environment and point the bench at that interpreter::

    python3 -m venv /tmp/asr && /tmp/asr/bin/pip install viet-asr numpy cffi
    PYTHONPATH=. .venv/bin/python -m bench.intelligibility --asr-python /tmp/asr/bin/python

Without it the bench says so and exits cleanly.

Each sentence is rendered twice with `audio.render.render_speech` (the broadcast MP3 the loudspeakers
play): (a) the written text handed to espeak-ng as it is, (b) Loa's spoken form (`audio.normalize`).
Both are decoded to 16 kHz mono and transcribed. The reference for both is the spoken form, what a
listener should hear; the transcript goes through the same normaliser (in case the recogniser writes
digits) before words are compared. WER = word-level edit distance / words in the reference, over all
sentences, on lower-case text without punctuation.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from audio.ffmpeg import decode_bytes
from audio.normalize import normalize
from audio.render import render_speech
from audio.tts import EspeakEngine

LETTER = Path(__file__).resolve().parent.parent / "tests" / "data" / "cong-van-thong-tin-co-so-2021.txt"

# Runs in the interpreter that has viet-asr: transcribes the WAV files named on the command line.
_TRANSCRIBE = r"""
import json, sys
try:
    import vietasr
except ImportError:
    print(json.dumps({"missing": True}))
    sys.exit(0)
pipe = vietasr.Pipeline.preset("transcribe")
print(json.dumps({"texts": [pipe.transcribe(path).text for path in sys.argv[1:]]}))
"""

_WORD_RE = re.compile(r"\w+")


def words(text: str) -> list[str]:
    return _WORD_RE.findall(text.lower())


def edit_distance(reference: list[str], hypothesis: list[str]) -> int:
    previous = list(range(len(hypothesis) + 1))
    for i, ref in enumerate(reference, 1):
        current = [i]
        for j, hyp in enumerate(hypothesis, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref != hyp)))
        previous = current
    return previous[-1]


def sentences(count: int) -> list[str]:
    """Lines of the letter that carry what normalisation is for: numbers, dates, document symbols."""
    picked = []
    for line in LETTER.read_text("utf-8").splitlines():
        line = line.strip(" -+\t")
        if 30 <= len(line) <= 220 and re.search(r"\d", line):
            picked.append(line)
    return picked[:count]


def transcribe(asr_python: str, wavs: list[Path]) -> list[str] | None:
    proc = subprocess.run(
        [asr_python, "-c", _TRANSCRIBE, *map(str, wavs)], capture_output=True, text=True, timeout=900, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"viet-asr failed: {proc.stderr.strip()[-2000:]}")
    answer = json.loads(proc.stdout.strip().splitlines()[-1])
    return None if answer.get("missing") else list(answer["texts"])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--asr-python", default=sys.executable, help="interpreter that has viet-asr installed")
    parser.add_argument("--sentences", type=int, default=8)
    parser.add_argument("--show", action="store_true", help="print every reference and transcript")
    args = parser.parse_args(argv)
    picked = sentences(args.sentences)
    engine = EspeakEngine()
    with tempfile.TemporaryDirectory(prefix="loa-intelligibility-") as tmp:
        wavs: list[Path] = []
        for index, sentence in enumerate(picked):
            for label, text in (("raw", sentence), ("normalised", normalize(sentence))):
                rendered = render_speech(text, engine)
                speech = decode_bytes(rendered.data).set_frame_rate(16000).set_channels(1).set_sample_width(2)
                wav = Path(tmp) / f"{index:02d}-{label}.wav"
                speech.export(str(wav), format="wav")
                wavs.append(wav)
        texts = transcribe(args.asr_python, wavs)
    if texts is None:
        print(f"intelligibility: viet-asr is not installed for {args.asr_python}; skipped "
              "(dev-only: see the docstring of bench/intelligibility.py)")  # fmt: skip
        return
    errors = {"raw": 0, "normalised": 0}
    total = 0
    for index, sentence in enumerate(picked):
        reference = words(normalize(sentence))
        total += len(reference)
        for offset, label in enumerate(("raw", "normalised")):
            hypothesis = words(normalize(texts[2 * index + offset]))
            errors[label] += edit_distance(reference, hypothesis)
            if args.show:
                print(f"[{index}] {label:10s} {' '.join(hypothesis)}")
        if args.show:
            print(f"[{index}] reference  {' '.join(reference)}")
    print(f"intelligibility: {len(picked)} sentences of {LETTER.name}, {total} reference words, "
          f"espeak-ng ({engine.voice}) -> broadcast MP3 -> viet-asr")  # fmt: skip
    for label in ("raw", "normalised"):
        print(f"  WER, text {'as written' if label == 'raw' else 'normalised by Loa':18s} {errors[label] / total:6.1%}")


if __name__ == "__main__":
    main()
