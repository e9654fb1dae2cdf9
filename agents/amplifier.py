"""The amplifier's relay and the output volume: switched on before audio, off when nothing is scheduled.

Two seams, each with a real implementation and a stand-in:

- `Relay`: `GpioRelay` drives a GPIO pin through gpiozero (its MockFactory pin factory in tests);
  `MemoryRelay` only remembers its state (the simulator, and a Pi without a relay).
- `Mixer`: `AmixerMixer` sets an ALSA simple control with ``amixer``; `FileMixer` writes the level to
  a file (tests, simulator); both behind the same two-method interface.

`Amplifier` owns the timing rule: the relay goes on ``warmup_s`` before audio (a cold amplifier clips
the first syllables) and off ``hold_s`` after the last audio, so back-to-back items do not click it.
Hardware failures never stop playback: they are logged and surface as faults.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from agents.atomic import write_atomic
from agents.errors import HardwareError
from agents.host import CommandRunner, run_command

log = logging.getLogger(__name__)


class Relay(Protocol):
    def start(self) -> None: ...

    def stop(self) -> None: ...

    def set(self, on: bool) -> None:
        """Switch the relay; MAY raise HardwareError."""
        ...


class MemoryRelay:
    """No hardware: keeps the state and every switching instant (for tests and the simulator)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self.on = False
        self.switches: list[tuple[float, bool]] = []

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def set(self, on: bool) -> None:
        if on != self.on:
            self.on = on
            self.switches.append((self._clock(), on))


class GpioRelay:
    """A relay on a BCM GPIO pin, driven through gpiozero (installed with ``loa[pi]``).

    ``pin_factory`` is gpiozero's seam: None picks the Pi's (lgpio on bookworm); tests pass MockFactory.
    The relay starts off, and is switched off again when the agent stops.
    """

    def __init__(self, pin: int, *, active_high: bool = True, pin_factory: Any = None) -> None:
        self._pin = pin
        self._active_high = active_high
        self._pin_factory = pin_factory
        self._device: Any = None

    def start(self) -> None:
        try:
            from gpiozero import OutputDevice

            self._device = OutputDevice(self._pin, active_high=self._active_high, initial_value=False,
                                        pin_factory=self._pin_factory)
        except Exception as exc:  # gpiozero raises its own tree (BadPinFactory, GPIOPinInUse, ImportError...)
            raise HardwareError(f"GPIO {self._pin}: {type(exc).__name__}: {exc}") from exc

    def stop(self) -> None:
        if self._device is not None:
            try:
                self._device.off()
                self._device.close()
            except Exception as exc:
                log.warning("could not release GPIO %d: %s", self._pin, exc)
            self._device = None

    def set(self, on: bool) -> None:
        if self._device is None:
            raise HardwareError(f"GPIO {self._pin} is not open")
        try:
            self._device.on() if on else self._device.off()
        except Exception as exc:
            raise HardwareError(f"GPIO {self._pin}: {type(exc).__name__}: {exc}") from exc


class Mixer(Protocol):
    async def set_percent(self, percent: int) -> None:
        """Set the output level; MAY raise HardwareError."""
        ...


class NullMixer:
    async def set_percent(self, percent: int) -> None:
        pass


class FileMixer:
    """Writes the level (a decimal number) to a file: what tests and the simulator read back."""

    def __init__(self, path: Path) -> None:
        self.path = path

    async def set_percent(self, percent: int) -> None:
        write_atomic(self.path, f"{percent}\n".encode())


class AmixerMixer:
    """``amixer -c CARD sset CONTROL N%``: the ALSA simple mixer control of the sound card."""

    def __init__(self, *, card: str = "0", control: str = "PCM", runner: CommandRunner = run_command) -> None:
        self._card = card
        self._control = control
        self._runner = runner

    def argv(self, percent: int) -> list[str]:
        return ["amixer", "-q", "-c", self._card, "sset", self._control, f"{percent}%"]

    async def set_percent(self, percent: int) -> None:
        result = await self._runner(self.argv(percent))
        if not result.ok:
            raise HardwareError(f"amixer {self._control} {percent}%: {result.stderr.strip() or result.returncode}")


class Amplifier:
    """When the amplifier is on, and how long it has been warming up.

    The playout calls `switch_on` ``warmup_s`` before an item it knows in advance, `wait_warm` right
    before starting output (a no-op then; for an unannounced item it waits out the warm-up), and
    `release` whenever nothing is playing or due soon. `force` is the operator's manual override.
    """

    def __init__(self, relay: Relay, *, warmup_s: float = 2.0, hold_s: float = 10.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._relay = relay
        self.warmup_s = warmup_s
        self.hold_s = hold_s
        self._monotonic = monotonic
        self._on_since: float | None = None
        self._off_timer: asyncio.TimerHandle | None = None
        self.forced: bool | None = None
        """None: automatic. True/False: held on/off by an ``amplifier`` command until the next one."""
        self.fault = ""

    @property
    def is_on(self) -> bool:
        return self._on_since is not None

    def start(self) -> None:
        try:
            self._relay.start()
            self._relay.set(False)
        except HardwareError as exc:
            self._fail(exc)

    def stop(self) -> None:
        self._cancel_off()
        self._switch(False)
        self._relay.stop()

    def switch_on(self) -> None:
        self._cancel_off()
        if self.forced is False:
            return
        self._switch(True)

    def warmup_left_s(self) -> float:
        if self._on_since is None:
            return self.warmup_s
        return max(0.0, self.warmup_s - (self._monotonic() - self._on_since))

    async def wait_warm(self) -> None:
        """Switch on if needed and return once warmed up."""
        self.switch_on()
        left = self.warmup_left_s()
        if left > 0 and self.is_on:
            await asyncio.sleep(left)

    def release(self) -> None:
        """Nothing plays and nothing is due within the warm-up: switch off after ``hold_s`` (idempotent)."""
        if self.forced is True or not self.is_on or self._off_timer is not None:
            return
        self._off_timer = asyncio.get_running_loop().call_later(self.hold_s, self._hold_expired)

    def force(self, on: bool | None) -> None:
        self.forced = on
        self._cancel_off()
        if on is True:
            self._switch(True)
        elif on is False:
            self._switch(False)

    def _hold_expired(self) -> None:
        self._off_timer = None
        if self.forced is not True:
            self._switch(False)

    def _cancel_off(self) -> None:
        if self._off_timer is not None:
            self._off_timer.cancel()
            self._off_timer = None

    def _switch(self, on: bool) -> None:
        if on == self.is_on:
            return
        try:
            self._relay.set(on)
        except HardwareError as exc:
            self._fail(exc)
            # Keep counting as switched: audio must go out anyway (the relay may be stuck closed).
        else:
            self.fault = ""
        self._on_since = self._monotonic() if on else None
        log.info("amplifier %s", "on" if on else "off")

    def _fail(self, exc: HardwareError) -> None:
        self.fault = f"amplifier relay: {exc}"
        log.warning("%s", self.fault)


class Volume:
    """The two output levels of Circular 39 practice: normal items, and emergencies (usually louder)."""

    def __init__(self, mixer: Mixer, *, normal_percent: int = 80, emergency_percent: int = 100) -> None:
        self._mixer = mixer
        self.normal_percent = normal_percent
        self.emergency_percent = emergency_percent
        self.current: int | None = None
        self.fault = ""

    async def apply(self, emergency: bool) -> None:
        await self.set(self.emergency_percent if emergency else self.normal_percent)

    async def set(self, percent: int) -> None:
        if percent == self.current:
            return
        try:
            await self._mixer.set_percent(percent)
        except HardwareError as exc:
            self.fault = f"mixer: {exc}"
            log.warning("%s", self.fault)
            return
        self.fault = ""
        self.current = percent
