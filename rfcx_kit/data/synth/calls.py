"""The 24 synthetic call shapes and their confusers, as closed-form functions of continuous time.

Every call is a *note series*: notes at fixed offsets inside the call, each with a quadratic frequency path
``f(tau) = c0 + c1 tau + c2 tau^2`` (plus optional sinusoidal FM), a smooth envelope, optional pulsing
(AM), and either a harmonic tone carrier ``sum_h a_h sin(h Phi(tau))`` or a band-limited noise carrier.
All phases are integrated in closed form and the noise carrier is a Fourier series whose period does not
depend on the sample rate, so the same :class:`CallSpec` rendered at 48 kHz (then resampled) and at
32 kHz gives the same signal: that is what makes the FLAC and npy formats agree.

Shapes follow the figures of the real ``train_tp.csv`` (``rfcx_kit.core.species.species_table()``): each
species sounds inside its median box band ``[f_min, f_max]`` and lasts within its box-length range.
Patterns are written in band-relative frequency ``u`` (0 = ``f_min``, 1 = ``f_max``).

A *confuser* of species ``s`` shares its band and its duration but not its pattern: a band-limited noise
burst, irregular noise pulses, or a "mirrored" tonal figure (frequency path flipped, rhythm changed). A
band-energy template detector fires on all of them; a model that sees the pattern can tell them apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from rfcx_kit.core.species import species_table

# Highest frequency any synthetic sound reaches. soxr's HQ 48 -> 32 kHz resampler is flat (< 1e-6 dB)
# to 14.5 kHz and cuts above, so content kept below it survives the FLAC path unchanged.
F_CAP = 14000.0

# Song types of the real train_tp.csv: s16 only uses 4; s17 and s23 use 1 and 4.
SONGTYPES: dict[int, tuple[int, ...]] = {16: (4,), 17: (1, 4), 23: (1, 4)}
# Where the two song types of a species differ in box length (seconds, from the real boxes).
SONGTYPE_SECONDS: dict[tuple[int, int], tuple[float, float]] = {
    (17, 1): (6.453, 6.453),
    (17, 4): (2.533, 3.779),
    (23, 1): (6.084, 6.084),
    (23, 4): (7.924, 7.924),
}
# Expected extra calls per minute of a present species (a species calls 1 + Poisson(rate * seconds / 60)
# times): choruses of frogs repeat, long bird songs less so.
CALLS_PER_MINUTE = np.array(
    [4, 4, 4, 10, 4, 3, 3, 3, 2, 2, 3, 4, 4, 4, 5, 5, 3, 2, 6, 3, 2, 4, 4, 2], dtype=np.float64
)


@dataclass
class Note:
    """One note template of a pattern: duration and gap after it (s), band-relative start/end pitch."""

    dur: float
    gap: float
    u0: float
    u1: float
    bend: float = 0.0  # quadratic bow of the frequency path, band-relative (+ = arched up)


@dataclass
class Pattern:
    """A species' call pattern: note templates cycled over the call, and how they sound.

    ``notes`` with a single template whose ``dur`` is 0 means "one note as long as the call".
    ``drift`` shifts the pitch of successive notes linearly from ``drift[0]`` to ``drift[1]`` (band-relative)
    over the call. ``f0_hz``, if given, fixes the fundamental of a harmonic stack in Hz (the band then holds
    its harmonics) instead of ``u0``/``u1``.
    """

    notes: list[Note]
    harmonics: tuple[float, ...] = (1.0,)
    fm: tuple[float, float] = (0.0, 0.0)  # (depth band-relative, rate Hz)
    am: tuple[float, float] = (0.0, 0.0)  # (depth 0..1, rate Hz): pulsing inside a note
    drift: tuple[float, float] = (0.0, 0.0)
    shape: float = 1.0  # envelope sin(pi tau / d) ** shape: < 1 square-ish, > 1 soft
    noise: bool = False  # band-limited noise carrier between u0 and u1 instead of a tone
    f0_hz: tuple[float, float] | None = None


def _one(u0: float, u1: float, bend: float = 0.0) -> list[Note]:
    return [Note(0.0, 0.0, u0, u1, bend)]


# The 24 species (bands in Hz and box lengths in s from the real train_tp.csv are in the comments).
PATTERNS: dict[tuple[int, int], Pattern] = {
    # s0 5906-8250, 0.8-1.3 s: fast trill of down-slurred notes
    (0, 1): Pattern([Note(0.035, 0.030, 0.90, 0.20)]),
    # s1 3844-5625, 0.9 s: rising whistle with a slight arch
    (1, 1): Pattern(_one(0.15, 0.85, -0.10), harmonics=(1.0,), shape=0.7),
    # s2 469-3000, 1.8 s: pulsed harmonic croak (f0 ~ 500 Hz)
    (2, 1): Pattern(_one(0, 0), harmonics=(1.0, 0.8, 0.6, 0.5, 0.35), am=(1.0, 25.0), f0_hz=(520.0, 500.0)),
    # s3 1031-2813, 0.74 s: two-note "co-qui": a low tone, then a rising high note
    (3, 1): Pattern([Note(0.11, 0.18, 0.06, 0.10), Note(0.30, 0.15, 0.50, 0.90)], shape=0.6),
    # s4 2344-4219, 1.9-2.2 s: train of short steady tones
    (4, 1): Pattern([Note(0.060, 0.070, 0.48, 0.52)], shape=0.8),
    # s5 4781-10406, 2.4-3.1 s: descending series of down-slurred notes
    (5, 1): Pattern([Note(0.12, 0.08, 0.95, 0.80)], drift=(0.0, -0.65)),
    # s6 563-4406, 2.0-2.1 s: noisy pulsed croak
    (6, 1): Pattern([Note(0.09, 0.11, 0.05, 0.95)], noise=True, shape=0.5),
    # s7 4688-11438, 3.1 s: slow warble around the band centre
    (7, 1): Pattern(_one(0.50, 0.50), fm=(0.30, 5.0), shape=0.6),
    # s8 3750-5531, 4.1 s: long trill (12 Hz FM, slow enough to show in 16 ms frames)
    (8, 1): Pattern(_one(0.45, 0.55), fm=(0.2, 12.0), shape=0.5),
    # s9 844-5719, 2.8-3.6 s: falling harmonic wail (f0 1.4 -> 1.1 kHz)
    (9, 1): Pattern(_one(0, 0, 0.0), harmonics=(1.0, 0.7, 0.5, 0.3), f0_hz=(1400.0, 1100.0), shape=0.8),
    # s10 948-10853, 2.4 s: broadband click train (~20 clicks/s)
    (10, 1): Pattern([Note(0.004, 0.046, 0.05, 0.95)], noise=True, shape=1.0),
    # s11 1809-5685, 1.1 s: chevron (up then down)
    (11, 1): Pattern(_one(0.15, 0.20, 0.75), shape=0.7),
    # s12 563-3281, 3.1 s: ratchet of short harmonic pulses (f0 ~ 600 Hz, ~12 /s)
    (12, 1): Pattern([Note(0.030, 0.050, 0, 0)], harmonics=(1.0, 0.8, 0.6, 0.4, 0.3), f0_hz=(620.0, 600.0)),
    # s13 94-844, 0.6-3.9 s: low hoot with its octave (~330 Hz)
    (13, 1): Pattern(_one(0, 0), harmonics=(1.0, 0.4), f0_hz=(360.0, 310.0), shape=0.7),
    # s14 2813-5531, 0.3-0.9 s: one to a few fast down-chirps
    (14, 1): Pattern([Note(0.09, 0.05, 0.95, 0.05)], shape=0.8),
    # s15 94-1125, 3.3 s: low drumming (4 /s, f0 ~ 250 Hz with harmonics)
    (15, 1): Pattern([Note(0.08, 0.17, 0, 0)], harmonics=(1.0, 0.6, 0.4, 0.25), f0_hz=(260.0, 240.0), shape=0.6),
    # s16 3094-4594, 1.8 s (song type 4): series of up-sweeps
    (16, 4): Pattern([Note(0.15, 0.12, 0.10, 0.90)], shape=0.8),
    # s17 1313-3938: song type 1 (6.5 s) descending whistles; song type 4 (2.5-3.8 s) rising series
    (17, 1): Pattern([Note(0.35, 0.25, 0.90, 0.75)], drift=(0.0, -0.55), shape=0.8),
    (17, 4): Pattern([Note(0.20, 0.15, 0.20, 0.40)], drift=(0.0, 0.50), shape=0.8),
    # s18 3188-5063, 0.7 s: two-tone whistle, high then low
    (18, 1): Pattern([Note(0.28, 0.10, 0.85, 0.80), Note(0.28, 0.0, 0.25, 0.20)], shape=0.6),
    # s19 281-2813, 1.6 s: steady nasal harmonic stack (f0 ~ 380 Hz)
    (19, 1): Pattern(_one(0, 0), harmonics=(1.0, 0.9, 0.8, 0.6, 0.5, 0.4, 0.3), f0_hz=(385.0, 375.0), shape=0.5),
    # s20 2344-5719, 3.4-5.4 s: slow trill of arched notes (~6 /s)
    (20, 1): Pattern([Note(0.12, 0.05, 0.20, 0.30, 0.60)], shape=0.8),
    # s21 3281-4125, 1.1 s: steady tone with a light vibrato
    (21, 1): Pattern(_one(0.50, 0.50), fm=(0.08, 8.0), shape=0.5),
    # s22 10688-13688, 1.6 s: rapid series of up-sweeps (~10 /s)
    (22, 1): Pattern([Note(0.050, 0.050, 0.10, 0.85)], shape=0.8),
    # s23 6848-11456: song type 1 (6.1 s) chevron series; song type 4 (7.9 s) long falling trill
    (23, 1): Pattern([Note(0.25, 0.15, 0.10, 0.15, 0.80)], shape=0.8),
    (23, 4): Pattern(_one(0.90, 0.10), fm=(0.06, 20.0), shape=0.5),
}


@dataclass
class CallSpec:
    """A concrete call, ready to render. Times in s from the call start, frequencies in Hz.

    Note arrays have shape ``(N,)``; ``harmonics`` ``(H,)``; ``noise_coef`` ``(K,)`` complex Fourier
    coefficients of the noise carrier on the grid ``(k0 + k) / noise_period`` Hz (empty for tonal calls);
    ``band`` the ``(low, high)`` Hz band the sound was drawn for.
    """

    duration: float
    starts: np.ndarray
    durs: np.ndarray
    c0: np.ndarray
    c1: np.ndarray
    c2: np.ndarray
    fm_depth: np.ndarray
    fm_rate: np.ndarray
    am_depth: float
    am_rate: float
    amp: np.ndarray
    harmonics: np.ndarray
    shape: float
    band: tuple[float, float]
    noise_coef: np.ndarray = field(default_factory=lambda: np.zeros(0, np.complex128))
    noise_k0: int = 0
    noise_period: float = 1.0


@lru_cache(maxsize=1)
def _figures() -> dict[str, np.ndarray]:
    """The species table as plain arrays (pandas row access is too slow for per-call use)."""
    table = species_table()
    return {c: table[c].to_numpy(dtype=np.float64) for c in ("f_min", "f_max", "call_min_s", "call_max_s")}


def band_of(species: int) -> tuple[float, float]:
    """The species' box band ``(f_min, f_max)`` in Hz (median of the real TP boxes)."""
    fig = _figures()
    return float(fig["f_min"][species]), float(fig["f_max"][species])


def songtypes_of(species: int) -> tuple[int, ...]:
    """The song types a species uses in the real ``train_tp.csv``."""
    return SONGTYPES.get(species, (1,))


def duration_range(species: int, songtype: int) -> tuple[float, float]:
    """Box-length range ``(shortest, longest)`` in s of the real TP boxes of this species / song type."""
    if (species, songtype) in SONGTYPE_SECONDS:
        return SONGTYPE_SECONDS[(species, songtype)]
    fig = _figures()
    return float(fig["call_min_s"][species]), float(fig["call_max_s"][species])


def draw_duration(rng: np.random.Generator, species: int, songtype: int) -> float:
    """A call length: uniform over the real range widened by 10 % on both sides."""
    lo, hi = duration_range(species, songtype)
    return float(rng.uniform(0.9 * lo, 1.1 * hi))


def _series_layout(pattern: Pattern, duration: float, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Cycle the note templates over ``duration``: ``(template index, start, dur)`` arrays of the notes.

    Note and gap lengths are jittered by +-10 % per call and then scaled so the last note ends exactly at
    ``duration`` (the call fills its box).
    """
    if len(pattern.notes) == 1 and pattern.notes[0].dur == 0.0:
        return np.zeros(1, int), np.zeros(1), np.array([duration])
    scale = rng.uniform(0.9, 1.1)
    durs = np.array([n.dur for n in pattern.notes]) * scale
    gaps = np.array([n.gap for n in pattern.notes]) * scale
    period = durs + gaps
    # How many notes fit: whole cycles plus as many notes of the next cycle as end before ``duration``.
    ends = np.cumsum(period) - gaps
    n_cycles = int(duration // period.sum())
    n_notes = n_cycles * len(durs) + int(np.sum(ends <= duration - n_cycles * period.sum()))
    n_notes = max(n_notes, 1)
    index = np.arange(n_notes) % len(durs)
    starts = np.concatenate([[0.0], np.cumsum(period[index])[:-1]])
    note_durs = durs[index]
    stretch = duration / (starts[-1] + note_durs[-1])
    return index, starts * stretch, note_durs * stretch


def build_call(pattern: Pattern, band: tuple[float, float], duration: float, rng: np.random.Generator) -> CallSpec:
    """Draw one call of ``pattern`` in ``band`` lasting ``duration`` s (per-call jitter of pitch and rhythm)."""
    lo, hi = band
    width = hi - lo
    index, starts, durs = _series_layout(pattern, duration, rng)
    n = len(starts)
    pitch = rng.uniform(-0.04, 0.04)  # per-call pitch offset, band-relative
    position = starts / max(duration, 1e-9)
    drift = pattern.drift[0] + (pattern.drift[1] - pattern.drift[0]) * position
    notes = pattern.notes
    u0 = np.array([notes[i].u0 for i in index]) + drift + pitch
    u1 = np.array([notes[i].u1 for i in index]) + drift + pitch
    bend = np.array([notes[i].bend for i in index])
    harmonics = np.asarray(pattern.harmonics, dtype=np.float64)
    if pattern.f0_hz is not None:
        f_start = np.full(n, pattern.f0_hz[0]) * (1 + pitch)
        f_end = np.full(n, pattern.f0_hz[1]) * (1 + pitch)
        bend_hz = np.zeros(n)
    else:
        f_start, f_end, bend_hz = lo + u0 * width, lo + u1 * width, bend * width
    # f(tau) = f_start + (f_end - f_start) x + 4 bend x (1 - x), x = tau / d, as a polynomial in tau.
    c0 = f_start
    c1 = (f_end - f_start + 4 * bend_hz) / durs
    c2 = -4 * bend_hz / durs**2
    fm_rate = np.full(n, pattern.fm[1] * rng.uniform(0.9, 1.1))
    fm_depth = np.full(n, pattern.fm[0] * width)
    amp = rng.uniform(0.8, 1.0, n)
    spec = CallSpec(duration, starts, durs, c0, c1, c2, fm_depth, fm_rate, float(pattern.am[0]),
                    float(pattern.am[1] * rng.uniform(0.9, 1.1)), amp, harmonics, pattern.shape, (lo, hi))
    if pattern.noise:
        f_lo = lo + width * float(np.clip(min(u0.min(), u1.min()), 0, 1))
        f_hi = lo + width * float(np.clip(max(u0.max(), u1.max()), 0, 1))
        _attach_noise(spec, f_lo, f_hi, rng)
    _keep_in_band(spec, band)
    return spec


def _attach_noise(spec: CallSpec, f_lo: float, f_hi: float, rng: np.random.Generator) -> None:
    """Give ``spec`` a band-limited noise carrier: random Fourier coefficients between ``f_lo`` and ``f_hi``.

    The period is the call length rounded up to a multiple of 1/16000 s, so it holds a whole number of
    samples at both 32 and 48 kHz and the same coefficients describe the same continuous signal; the
    multiple is 5-smooth so both inverse FFTs are fast.
    """
    period = _smooth_at_least(int(np.ceil(spec.duration * 16000.0)) + 1) / 16000.0
    k0, k1 = int(np.ceil(f_lo * period)), int(np.floor(min(f_hi, F_CAP) * period))
    k1 = max(k1, k0 + 1)
    # A soft spectral shape (tapered edges, random tilt) so bursts do not look like flat rectangles.
    f = (k0 + np.arange(k1 - k0)) / period
    x = (f - f_lo) / max(f_hi - f_lo, 1.0)
    shape = np.sin(np.pi * np.clip(x, 0, 1)) ** 0.5 * np.exp(rng.uniform(-1.0, 1.0) * (x - 0.5))
    coef = (rng.standard_normal(k1 - k0) + 1j * rng.standard_normal(k1 - k0)) * shape
    coef *= np.sqrt(0.25 / max(np.sum(np.abs(coef) ** 2), 1e-30))  # power 2 sum |c|^2 = 0.5, as a unit sine
    spec.noise_coef, spec.noise_k0, spec.noise_period = coef, k0, float(period)


def _smooth_at_least(m: int) -> int:
    """The smallest ``2^a 3^b 5^c >= m``."""
    best = 1 << max(m - 1, 0).bit_length()
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            p235 = p35 << max(0, (-(-m // p35) - 1).bit_length())
            best = min(best, p235)
            p35 *= 3
        p5 *= 5
    return best


def _keep_in_band(spec: CallSpec, band: tuple[float, float]) -> None:
    """Drop harmonics that would leave the band (or pass ``F_CAP``) anywhere in the call."""
    if spec.noise_coef.size:
        return
    tau = np.linspace(0, 1, 33)[None, :] * spec.durs[:, None]
    f = spec.c0[:, None] + spec.c1[:, None] * tau + spec.c2[:, None] * tau**2
    f_max = float((f + spec.fm_depth[:, None]).max())
    ceiling = min(band[1] * 1.02, F_CAP)
    keep = np.arange(1, len(spec.harmonics) + 1) * f_max <= ceiling
    keep[0] = True
    spec.harmonics = spec.harmonics[keep]


def species_call(rng: np.random.Generator, species: int, songtype: int, duration: float) -> CallSpec:
    """One call of ``species`` (song type ``songtype``) lasting ``duration`` s."""
    return build_call(PATTERNS[(species, songtype)], band_of(species), duration, rng)


CONFUSER_KINDS = ("noise_burst", "noise_pulses", "mirror")


def confuser_pattern(species: int, songtype: int, kind: str, rng: np.random.Generator) -> Pattern:
    """A pattern that fills ``species``' band but is not its call.

    * ``noise_burst``: one band-limited noise burst over a random sub-band covering >= 60 % of the band.
    * ``noise_pulses``: band-limited noise pulses, 2-15 per second; for the noise-carried species (s6
      pulses, s10 clicks) a continuous noise with a fast 30-60 Hz flutter instead, so it is not their call.
    * ``mirror``: the species' tonal figure turned around: the frequency path flipped (u -> 1 - u) and the
      rhythm changed (a note series becomes one continuous glide); a figure without much pitch change or
      bow becomes a glide across the band, a harmonic stack a pure glide, and the noise-carried species get a
      steady low harmonic hum.
    """
    own = PATTERNS[(species, songtype)]
    if kind == "noise_burst":
        a = rng.uniform(0.0, 0.4)
        return Pattern(_one(a, a + rng.uniform(0.6, 1.0 - a)), noise=True, shape=rng.uniform(0.5, 1.5))
    if kind == "noise_pulses":
        if own.noise:
            return Pattern(_one(0.1, 0.9), noise=True, am=(0.8, rng.uniform(30.0, 60.0)), shape=0.7)
        dur = rng.uniform(0.04, 0.15)
        return Pattern([Note(dur, rng.uniform(0.6, 2.0) * dur, 0.1, 0.9)], noise=True, shape=0.7)
    if own.noise:
        return Pattern(_one(0.15, 0.15), harmonics=(1.0, 0.7, 0.5), shape=0.5)
    if own.f0_hz is not None:
        return Pattern(_one(0.8, 0.2), shape=0.7)
    first, last = own.notes[0], own.notes[-1]
    u0, u1 = 1 - (first.u0 + own.drift[0]), 1 - (last.u1 + own.drift[1])
    bend = -first.bend if len(own.notes) == 1 else 0.0
    if abs(u1 - u0) < 0.3 and abs(bend) < 0.3:  # no pitch figure to flip: glide across the band
        u0, u1, bend = 0.2, 0.8, 0.0
    return Pattern(_one(u0, u1, bend), shape=0.7)


def confuser_call(rng: np.random.Generator, species: int, songtype: int, kind: str, duration: float) -> CallSpec:
    """One confuser of ``species`` of the given ``kind`` (one of :data:`CONFUSER_KINDS`) lasting ``duration`` s."""
    return build_call(confuser_pattern(species, songtype, kind, rng), band_of(species), duration, rng)


def render_call(spec: CallSpec, sr: int, offset: float, n: int) -> np.ndarray:
    """Evaluate ``spec`` at call-relative times ``offset + m / sr`` for ``m < n``: ``(n,)`` float32, unit scale.

    Vectorised over samples: each sample finds its note by ``searchsorted`` and evaluates that note's
    closed-form phase (float64) and envelope (float32); samples between notes are silent. ``offset`` (in
    ``[0, 1/sr)``) is where the first sample falls after the call start, so a call lands on the same
    continuous signal at any rate.
    """
    t = offset + np.arange(n) / sr
    if len(spec.starts) == 1:  # one note: no per-sample look-ups
        i, tau = 0, t
    else:
        i = np.maximum(np.searchsorted(spec.starts, t, side="right") - 1, 0)
        tau = t - spec.starts[i]
    x = np.minimum(tau / spec.durs[i], 1.0).astype(np.float32)
    env = np.sin(np.float32(np.pi) * x)
    if spec.shape != 1.0:
        np.power(np.maximum(env, 0, out=env), np.float32(spec.shape), out=env)
    env *= spec.amp[i].astype(np.float32)
    if spec.am_depth > 0:
        pulse = np.square(0.5 - 0.5 * np.cos((2 * np.pi * spec.am_rate) * tau)).astype(np.float32)
        env *= np.float32(1.0 - spec.am_depth) + np.float32(spec.am_depth) * pulse
    if spec.noise_coef.size:
        return env * _noise_carrier(spec, sr, offset, n).astype(np.float32)
    # Phase of f(tau) = c0 + c1 tau + c2 tau^2 + depth sin(2 pi rate tau), integrated in closed form.
    phase = (2 * np.pi) * tau * (spec.c0[i] + tau * (spec.c1[i] / 2 + tau * (spec.c2[i] / 3)))
    if np.any(spec.fm_depth > 0):
        rate = spec.fm_rate[i]
        phase += spec.fm_depth[i] / rate * (1 - np.cos((2 * np.pi) * rate * tau))
    # Harmonics by the Chebyshev recursion sin((h+1) p) = 2 cos(p) sin(h p) - sin((h-1) p): one sin, one cos.
    current = np.sin(phase).astype(np.float32)
    if len(spec.harmonics) == 1:
        return env * current * np.float32(spec.harmonics[0])
    carrier = np.float32(spec.harmonics[0]) * current
    twice_cos, previous = (2 * np.cos(phase)).astype(np.float32), np.zeros_like(current)
    for weight in spec.harmonics[1:]:
        current, previous = twice_cos * current - previous, current
        carrier += np.float32(weight) * current
    return env * carrier


def _noise_carrier(spec: CallSpec, sr: int, offset: float, n: int) -> np.ndarray:
    """The noise Fourier series at ``offset + m / sr``: ``(n,)``, by one inverse real FFT of ``period * sr``.

    The coefficients are phase-shifted by ``offset`` (exact, no interpolation).
    """
    size = int(round(spec.noise_period * sr))
    k = spec.noise_k0 + np.arange(spec.noise_coef.size)
    full = np.zeros(size // 2 + 1, dtype=np.complex128)
    keep = k < full.size
    full[k[keep]] = (spec.noise_coef * np.exp(2j * np.pi * k * offset / spec.noise_period))[keep] * size
    return np.fft.irfft(full, size)[:n]  # x(t) = sum_k c_k e^{2 pi i k t / period} + c.c.
