"""The whole audio path works with the pip-shipped ffmpeg (no ffprobe) and with a system ffmpeg + ffprobe.

Each toolset runs in its own process, chosen by LOA_FFMPEG / LOA_FFPROBE, so nothing cached in this
process decides which binaries are used. `.ci/run` installs Debian's ffmpeg, so CI tests both.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = r"""
import json, sys
from pathlib import Path
from audio.ffmpeg import ffmpeg_exe, ffprobe_exe, decode_file
from audio.probe import probe
from audio.prepare import prepare_file
from audio.render import render_speech
from audio.tts import EspeakEngine, TtsChain
import subprocess
work = Path(sys.argv[1])
source = work / "upload.m4a"
subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i", "sine=frequency=300:duration=3",
                "-ac", "2", "-c:a", "aac", str(source)], check=True)
facts = probe(source)
prepared = prepare_file(source, work / "out.mp3")
decoded = decode_file(prepared.path)
speech = render_speech("Xin chào bà con.", TtsChain([EspeakEngine()]))
print(json.dumps({"ffmpeg": ffmpeg_exe(), "ffprobe": ffprobe_exe(), "probe_codec": facts.codec,
                  "lufs": prepared.lufs, "true_peak_db": prepared.true_peak_db, "channels": decoded.channels,
                  "rate": decoded.frame_rate, "speech_lufs": speech.lufs, "speech_peak": speech.true_peak_db}))
"""


def toolsets() -> list[tuple[str, str | None, str | None]]:
    import imageio_ffmpeg

    return [("pip", imageio_ffmpeg.get_ffmpeg_exe(), "none"),
            ("system", shutil.which("ffmpeg", path="/usr/bin:/usr/local/bin"),
             shutil.which("ffprobe", path="/usr/bin:/usr/local/bin"))]


@pytest.mark.parametrize(("name", "ffmpeg", "ffprobe"), toolsets(), ids=lambda v: v if v in ("pip", "system") else "")
def test_audio_path_works_with_each_ffmpeg(name: str, ffmpeg: str | None, ffprobe: str | None, tmp_path: Path) -> None:
    if ffmpeg is None or ffprobe is None:
        message = f"no {name} ffmpeg/ffprobe here (Debian package 'ffmpeg'; .ci/run installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    env = {**os.environ, "LOA_FFMPEG": ffmpeg, "LOA_FFPROBE": ffprobe}
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    facts = json.loads(result.stdout.strip().splitlines()[-1])
    assert facts["ffmpeg"] == ffmpeg
    assert facts["ffprobe"] == (None if name == "pip" else ffprobe)
    assert facts["probe_codec"] == "aac"
    assert abs(facts["lufs"] + 16) <= 1 and facts["true_peak_db"] <= -1.5
    assert facts["channels"] == 1 and facts["rate"] == 32000
    assert abs(facts["speech_lufs"] + 16) <= 1 and facts["speech_peak"] <= -1.5
