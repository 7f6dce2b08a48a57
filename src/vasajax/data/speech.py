"""Offline speech with phoneme timings: a small ctypes binding to libespeak-ng.

SynthTalk (DESIGN.md, "SynthTalk") needs speech whose phoneme timings are known exactly, so that mouth
shapes can be rendered in sync and lip-sync can be measured. VASA-1 (§3.2, §4.1) conditions motion on real
speech; no recorded speech can be had offline here, so we synthesise it with espeak-ng, whose synthesis
callback reports every phoneme with its position in the audio (milliseconds).

The library and its voice data come from the ``espeakng-loader`` wheel (PyPI); Debian's ``libespeak-ng1``
also works (``VASAJAX_ESPEAK_LIB`` / ``VASAJAX_ESPEAK_DATA`` override the paths). libespeak-ng keeps global
state, so all calls go through one lock. Output is resampled from 22,050 Hz to 16 kHz mono float32.

    speech = synthesize_speech("Hello there.", Voice(name="en-us", variant="f3", rate=160))
    speech.audio_16k, speech.phonemes[0]  # (PhonemeEvent(name='h', start_s=0.0, end_s=0.06, ...), ...)
"""

from __future__ import annotations

import ctypes
import dataclasses
import os
import threading

import numpy as np

from vasajax.errors import UserError

SAMPLE_RATE = 16_000
"""Sample rate (Hz) of the audio returned by :func:`synthesize_speech`."""

LANGUAGES = ("en-us", "en", "en-gb-x-rp", "en-gb-scotland", "en-029", "en-us-nyc")
"""English voices of espeak-ng that SynthTalk samples from."""

VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5")
"""espeak-ng voice variants (``voices/!v``): male m1–m7, female f1–f5."""

# espeak-ng constants (speak_lib.h).
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INIT_PHONEME_EVENTS = 0x0001
_INIT_PHONEME_IPA = 0x0002
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
PAUSE = "_"
"""Name given to pauses (espeak-ng reports them as phonemes without a name)."""
_PARAM_RATE, _PARAM_VOLUME, _PARAM_PITCH, _PARAM_RANGE = 1, 2, 3, 4
_EVENT_LIST_TERMINATED, _EVENT_WORD, _EVENT_PHONEME = 0, 1, 7


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


@dataclasses.dataclass(frozen=True, kw_only=True)
class Voice:
    """An espeak-ng voice setting."""

    name: str = "en-us"
    """espeak-ng language/voice name, e.g. ``en-us`` or ``en-gb``."""
    variant: str = ""
    """Voice variant (``m1``–``m7``, ``f1``–``f5``); empty for the language default."""
    rate: int = 170
    """Speaking rate in words per minute (espeak-ng accepts 80–450)."""
    pitch: int = 50
    """Base pitch, 0–100."""
    pitch_range: int = 50
    """Pitch range (intonation), 0–100; 0 is monotone."""

    @property
    def espeak_name(self) -> str:
        return f"{self.name}+{self.variant}" if self.variant else self.name

    @classmethod
    def random(cls, rng: np.random.Generator) -> Voice:
        """A varied but natural-sounding voice: any English accent, any variant, rate 140–200 wpm."""
        variant = str(rng.choice(VARIANTS))
        base_pitch = 35 if variant.startswith("m") else 55
        return cls(
            name=str(rng.choice(LANGUAGES)),
            variant=variant,
            rate=int(rng.integers(140, 201)),
            pitch=int(np.clip(base_pitch + rng.integers(-15, 16), 0, 100)),
            pitch_range=int(rng.integers(35, 81)),
        )


@dataclasses.dataclass(frozen=True, kw_only=True)
class PhonemeEvent:
    """One phoneme as reported by espeak-ng."""

    name: str
    """IPA name, possibly with stress marks (``ˈ``, ``ˌ``) and length marks (``ː``); ``_`` is a pause."""
    start_s: float
    """Start time in the audio, seconds."""
    end_s: float
    """End time (the next phoneme's start, or the end of the speech), seconds."""
    word: int
    """Index of the word this phoneme belongs to (-1 before the first word event)."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Speech:
    """Synthesised speech with its timing."""

    audio_16k: np.ndarray
    """float32 samples in [-1, 1] at :data:`SAMPLE_RATE`."""
    phonemes: tuple[PhonemeEvent, ...]
    """Phonemes in time order, all inside the audio."""
    words: tuple[tuple[str, float], ...]
    """(word text, start seconds) per word."""
    text: str
    voice: Voice

    @property
    def duration_s(self) -> float:
        return len(self.audio_16k) / SAMPLE_RATE


class _Espeak:
    """A freshly loaded and initialised libespeak-ng; :meth:`close` unloads it.

    espeak-ng keeps state across syntheses in static variables that ``espeak_Terminate`` does not reset
    (e.g. the pitch-flutter phase), so the same text would come out a few samples different each call.
    Loading the library afresh for every synthesis (~6 ms) makes audio and timings reproducible.
    """

    def __init__(self) -> None:
        lib_path, data_path = _library_paths()
        try:
            self.lib = ctypes.CDLL(lib_path)
        except OSError as e:
            raise UserError(
                f"cannot load libespeak-ng from {lib_path} ({e}); `pip install espeakng-loader`"
                " or set VASAJAX_ESPEAK_LIB"
            ) from None
        lib = self.lib
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_CALLBACK]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        # espeak-ng jitters pitch periods with rand(); seeding it makes audio and timings reproducible.
        self._seed = getattr(lib, "espeak_ng_SetRandSeed", None)
        if self._seed is not None:
            self._seed.argtypes = [ctypes.c_long]
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
            ctypes.c_void_p, ctypes.c_void_p,
        ]  # fmt: skip
        options = _INIT_PHONEME_EVENTS | _INIT_PHONEME_IPA
        data = data_path.encode() if data_path else None
        self.sample_rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data, options)
        if self.sample_rate <= 0:
            raise UserError(f"libespeak-ng failed to initialise with data at {data_path}; reinstall espeakng-loader")
        self._pcm: list[np.ndarray] = []
        self._events: list[tuple[int, int, int, str]] = []
        self._callback = _CALLBACK(self._on_synth)  # keep a reference: the library holds the pointer
        lib.espeak_SetSynthCallback(self._callback)

    def _on_synth(self, pcm, n, events) -> int:
        if n > 0:
            self._pcm.append(np.ctypeslib.as_array(pcm, shape=(n,)).copy())
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            ev = events[i]
            if ev.type == _EVENT_PHONEME:
                name = bytes(ev.id.string).split(b"\0")[0].decode("utf-8", "replace")
                self._events.append((ev.type, ev.audio_position, ev.text_position, name))
            elif ev.type == _EVENT_WORD:
                self._events.append((ev.type, ev.audio_position, ev.text_position, str(ev.length)))
            i += 1
        return 0

    def close(self) -> None:
        self.lib.espeak_Terminate()
        try:
            import _ctypes

            (getattr(_ctypes, "dlclose", None) or _ctypes.FreeLibrary)(self.lib._handle)
        except (ImportError, AttributeError, OSError):  # pragma: no cover - platform without dlclose
            pass

    def synth(self, text: str, voice: Voice, seed: int) -> tuple[np.ndarray, list[tuple[int, int, int, str]]]:
        lib = self.lib
        if self._seed is not None:
            self._seed(seed)
        if lib.espeak_SetVoiceByName(voice.espeak_name.encode()) != 0:
            raise UserError(f"espeak-ng has no voice {voice.espeak_name!r}; use one of {LANGUAGES} + {VARIANTS}")
        lib.espeak_SetParameter(_PARAM_RATE, int(np.clip(voice.rate, 80, 450)), 0)
        lib.espeak_SetParameter(_PARAM_PITCH, int(np.clip(voice.pitch, 0, 100)), 0)
        lib.espeak_SetParameter(_PARAM_RANGE, int(np.clip(voice.pitch_range, 0, 100)), 0)
        lib.espeak_SetParameter(_PARAM_VOLUME, 100, 0)
        self._pcm, self._events = [], []
        buf = ctypes.create_string_buffer(text.encode("utf-8"))
        lib.espeak_Synth(buf, len(buf), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        lib.espeak_Synchronize()
        pcm = np.concatenate(self._pcm) if self._pcm else np.zeros(0, np.int16)
        return pcm, self._events


def _library_paths() -> tuple[str, str | None]:
    lib, data = os.environ.get("VASAJAX_ESPEAK_LIB"), os.environ.get("VASAJAX_ESPEAK_DATA")
    if lib is None:
        try:
            import espeakng_loader
        except ImportError:
            raise UserError("espeak-ng is missing: `pip install espeakng-loader` (or set VASAJAX_ESPEAK_LIB)") from None
        lib, data = espeakng_loader.get_library_path(), data or espeakng_loader.get_data_path()
    return lib, data


_LOCK = threading.Lock()


def synthesize_speech(text: str, voice: Voice = Voice(), seed: int = 0) -> Speech:
    """Speak ``text`` with espeak-ng; return 16 kHz audio and the timed phonemes and words.

    Deterministic for a given ``seed`` (it seeds espeak-ng's random generator) as long as nothing else in the
    process holds the same libespeak-ng loaded (see :class:`_Espeak`).
    """
    import scipy.signal

    text = " ".join(text.split())
    if not text:
        raise UserError("cannot synthesise empty text; give a sentence with at least one word")
    with _LOCK:
        engine = _Espeak()
        try:
            pcm, raw = engine.synth(text, voice, int(seed) & 0x7FFFFFFF)
            rate = engine.sample_rate
        finally:
            engine.close()
    audio = scipy.signal.resample_poly(pcm.astype(np.float32) / 32768.0, SAMPLE_RATE, rate).astype(np.float32)
    duration = len(audio) / SAMPLE_RATE
    text_bytes = text.encode("utf-8")
    words, phones, word = [], [], -1
    for kind, pos_ms, text_pos, payload in raw:
        t = min(pos_ms / 1000.0, duration)
        if kind == _EVENT_WORD:
            start = max(text_pos - 1, 0)  # espeak counts characters from 1
            word_text = text_bytes.decode("utf-8")[start : start + int(payload)]
            words.append((word_text, t))
            word = len(words) - 1
        else:
            name = payload.strip() or PAUSE  # espeak-ng reports pauses as phonemes without a name
            if not (name == PAUSE and phones and phones[-1][0] == PAUSE):
                phones.append((name, t, word))
    events = []
    for i, (name, t, w) in enumerate(phones):
        end = phones[i + 1][1] if i + 1 < len(phones) else duration
        if end > t:  # drop zero-length events so that start times strictly increase
            events.append(PhonemeEvent(name=name, start_s=t, end_s=end, word=w))
    return Speech(audio_16k=audio, phonemes=tuple(events), words=tuple(words), text=text, voice=voice)
