"""Keyboard handling as a pure function: ``handle_key(state, key, now) -> (state, actions)``.

Keys: e next effect (style, portrait-blur, background, style-background, blur-faces);
n / p next / previous style; 0-9 pick a style (two digits within a second pick 10-25);
b blend the current style with the previous one (again: back to one style); s screenshot;
r record on/off; f fp32/int8 toggle (where int8 cannot run, a HUD note says why); q or Esc quit.
With ``--style-image`` the style keys only show a note (the built-in styles are not loaded).
Side effects (files, writers, reloading a plan) are returned as ``Action``s for the app to carry out,
so the whole key map runs in tests from a scripted list of (time, key) events.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, replace

from demo_style_transfer.styles import NUM_STYLES, label

NOTE_SECONDS = 3.0
DIGIT_SECONDS = 1.0   # NOTE: a second digit within this time extends the first ("1", "9" -> 19)
ESC = 27


class Action(enum.Enum):
    SCREENSHOT = "screenshot"
    START_RECORDING = "start_recording"
    STOP_RECORDING = "stop_recording"
    RELOAD = "reload"          # the precision changed: the app loads the other plan
    EFFECT = "effect"          # the effect changed: the app loads its models (first use)
    QUIT = "quit"


@dataclass(frozen=True)
class DemoState:
    """What the user controls. ``blend`` (tuple of (index, weight)) overrides ``style`` when set."""
    style: int = 0
    previous: int | None = None
    blend: tuple | None = None
    saved_blend: tuple | None = None   # a --blend given on the command line, restored by 'b'
    precision: str = "fp32"
    int8_available: bool = False
    int8_note: str = "int8 is not available"   # shown on 'f' when int8_available is False
    style_image: str | None = None              # the --style-image label: style keys are off
    recording: bool = False
    quit: bool = False
    note: str = ""
    note_until: float = 0.0
    pending_digit: int | None = None
    pending_until: float = 0.0
    effect: str = "style"
    effects: tuple = ("style",)                 # what 'e' cycles through

    def mix(self) -> dict[int, float]:
        return dict(self.blend) if self.blend else {self.style: 1.0}

    def style_label(self) -> str:
        return self.style_image if self.style_image else label(self.mix())

    def note_at(self, now: float) -> str:
        return self.note if now < self.note_until else ""

    def with_note(self, text: str, now: float) -> "DemoState":
        return replace(self, note=text, note_until=now + NOTE_SECONDS)


def initial_state(style: int = 0, blend: dict | None = None, precision: str = "fp32",
                  int8_available: bool = False, int8_note: str | None = None,
                  style_image: str | None = None, effect: str = "style",
                  effects: tuple | None = None) -> DemoState:
    """The state at start; a ``--blend`` starts blended and 'b' can bring it back."""
    extra = dict(precision=precision, int8_available=int8_available, style_image=style_image,
                 effect=effect, effects=tuple(effects) if effects else (effect,))
    if int8_note:
        extra["int8_note"] = int8_note
    if blend:
        mix = tuple(sorted(blend.items()))
        main = max(blend, key=blend.get)
        return DemoState(style=main, blend=mix, saved_blend=mix, **extra)
    return DemoState(style=style, **extra)


def _select(state: DemoState, index: int, now: float) -> DemoState:
    index %= NUM_STYLES
    previous = state.style if index != state.style else state.previous
    return replace(state, style=index, previous=previous, blend=None, saved_blend=None,
                   note="", note_until=0.0)


def handle_key(state: DemoState, key: int, now: float) -> tuple[DemoState, tuple[Action, ...]]:
    """The next state and the actions for one key code (``cv2.waitKey`` value; -1 = no key)."""
    if key is None or key < 0:
        return state, ()
    ch = chr(key & 0xFF).lower() if key != ESC else "\x1b"
    if state.style_image and (ch.isdigit() or ch in "npb"):
        return state.with_note("style keys are off with --style-image", now), ()
    if ch.isdigit():
        d = int(ch)
        if state.pending_digit is not None and now <= state.pending_until \
                and state.pending_digit * 10 + d < NUM_STYLES:
            return replace(_select(state, state.pending_digit * 10 + d, now), pending_digit=None), ()
        pending = d if d * 10 < NUM_STYLES else None
        return replace(_select(state, d, now), pending_digit=pending,
                       pending_until=now + DIGIT_SECONDS), ()
    state = replace(state, pending_digit=None)
    if ch in ("q", "\x1b"):
        return replace(state, quit=True), (Action.QUIT,)
    if ch == "n":
        return _select(state, state.style + 1, now), ()
    if ch == "p":
        return _select(state, state.style - 1, now), ()
    if ch == "b":
        if state.blend:
            return replace(state, blend=None), ()
        if state.saved_blend:
            return replace(state, blend=state.saved_blend), ()
        other = state.previous if state.previous not in (None, state.style) \
            else (state.style + 1) % NUM_STYLES
        mix = tuple(sorted({other: 0.5, state.style: 0.5}.items()))
        return replace(state, blend=mix), ()
    if ch == "e":
        if len(state.effects) < 2:
            return state.with_note("no other effect", now), ()
        k = state.effects.index(state.effect) if state.effect in state.effects else -1
        effect = state.effects[(k + 1) % len(state.effects)]
        return replace(state, effect=effect).with_note(f"effect {effect}", now), (Action.EFFECT,)
    if ch == "s":
        return state, (Action.SCREENSHOT,)
    if ch == "r":
        if state.recording:
            return replace(state, recording=False), (Action.STOP_RECORDING,)
        return replace(state, recording=True), (Action.START_RECORDING,)
    if ch == "f":
        if not state.int8_available:
            return state.with_note(state.int8_note, now), ()
        precision = "int8" if state.precision == "fp32" else "fp32"
        return replace(state, precision=precision).with_note(f"switching to {precision}", now), \
            (Action.RELOAD,)
    return state, ()


class ScriptedKeys:
    """A key source for tests and scripted runs: ``{frame_number: "keys"}`` or [(frame, key)]."""

    def __init__(self, script) -> None:
        items = script.items() if isinstance(script, dict) else script
        self._at: dict[int, list[int]] = {}
        for frame, keys in items:
            codes = [ord(k) for k in keys] if isinstance(keys, str) else [int(keys)]
            self._at.setdefault(int(frame), []).extend(codes)

    def poll(self, frame_number: int) -> list[int]:
        return self._at.pop(frame_number, [])
