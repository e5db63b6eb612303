"""A rainforest-like background: coloured noise with insect lines, a pulsing insect chorus, sometimes rain.

Each component is a stationary noise, written as a Fourier series on a period that does not depend on
the sample rate (whole seconds), times a time envelope sampled on a fixed grid and linearly
interpolated. The same :class:`BackgroundSpec` therefore renders to the same continuous signal at 48 and
at 32 kHz, and the in-band noise power at any time is known exactly (:meth:`Background.band_power`),
which is what a call's SNR is measured against.

Components (drawn per recording by :func:`draw_background`):

* **ambience**: pink-ish noise (slope 0.7-1.5), a low rumble, a broad "distant chorus" hump between 1.5 and
  7 kHz and 0-3 steady narrow insect lines between 2.5 and 13 kHz; its level drifts slowly (+-4 dB over
  tens of seconds); overall level -44 to -32 dBFS;
* **insect chorus** (half of the recordings): a narrow band (2.5-10 kHz) pulsing at 6-50 Hz that switches
  on and off over tens of seconds;
* **rain** (a fifth of the recordings): broadband hiss with drops (exponentially decaying bursts);
* **distant biophony**: 5-40 faint sounds a minute (-12 to 0 dB in their band) from species that are not
  among the 24: random short sweeps and note series between 300 Hz and 13.5 kHz. They are not in truth/.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rfcx_kit.data.synth.calls import F_CAP, CallSpec, Note, Pattern, build_call, render_call

ENV_RATE = 2000.0  # Hz: grid of the time envelopes (fine enough for 50 Hz pulsing and 2 ms drops)


PSD_STEP = 5.0  # Hz: the spectral shapes are drawn on this grid and interpolated to the Fourier grid


@dataclass
class NoiseComponent:
    """One stationary noise times an envelope.

    ``coef`` ``(K,)`` complex64: Fourier coefficients at ``(k0 + j) / period`` Hz for ``j < K``; ``env``
    ``(E,)``: the envelope every ``1 / ENV_RATE`` s from 0; ``cum_power`` ``(K + 1,)``: running sum of
    ``2 |c|^2``, so the mean power of any band is two look-ups.
    """

    coef: np.ndarray
    k0: int
    env: np.ndarray
    cum_power: np.ndarray

    @classmethod
    def make(cls, coef_k0: tuple[np.ndarray, int], env: np.ndarray) -> NoiseComponent:
        coef, k0 = coef_k0
        power = 2 * (np.square(coef.real) + np.square(coef.imag))
        return cls(coef, k0, env, np.concatenate([[0.0], np.cumsum(power, dtype=np.float64)]))

    def band_power(self, period: float, f_lo: float, f_hi: float) -> float:
        """Mean power of the stationary part between ``f_lo`` and ``f_hi`` Hz (before the envelope)."""
        j_lo = int(np.clip(np.ceil(f_lo * period) - self.k0, 0, self.coef.size))
        j_hi = int(np.clip(np.floor(f_hi * period) - self.k0 + 1, j_lo, self.coef.size))
        return float(self.cum_power[j_hi] - self.cum_power[j_lo])


@dataclass
class Background:
    """The background of one recording: ``seconds`` long, Fourier ``period`` (whole seconds >= seconds)."""

    seconds: float
    period: float
    components: list[NoiseComponent]
    rain: bool
    insects: bool
    clutter: list[tuple[float, CallSpec, float]]  # (start s, sound, in-band SNR dB) of the distant sounds

    def band_power(self, f_lo: float, f_hi: float, t0: float, t1: float) -> float:
        """Mean noise power between ``f_lo`` and ``f_hi`` Hz over the time span ``[t0, t1]`` s."""
        i0 = int(np.floor(t0 * ENV_RATE))
        i1 = max(int(np.ceil(t1 * ENV_RATE)), i0 + 1)
        total = 0.0
        for comp in self.components:
            env_power = float(np.mean(comp.env[i0 : i1 + 1] ** 2))
            total += comp.band_power(self.period, f_lo, f_hi) * env_power
        return total

    def render(self, sr: int) -> np.ndarray:
        """The background at ``sr`` Hz: ``(round(seconds * sr),)`` float32."""
        n = int(round(self.seconds * sr))
        size = int(round(self.period * sr))
        out = np.zeros(n, dtype=np.float32)
        for comp in self.components:
            full = np.zeros(size // 2 + 1, dtype=np.complex64)
            full[comp.k0 : comp.k0 + comp.coef.size] = comp.coef * np.float32(size)  # numpy's "forward" norm is slow
            out += np.fft.irfft(full, size)[:n] * upsample_linear(comp.env, sr, n)
        for start, spec, snr_db in self.clutter:
            add_sound(out, sr, spec, start, snr_db, self.band_power(*spec.band, start, start + spec.duration))
        return out


def add_sound(wave: np.ndarray, sr: int, spec: CallSpec, t_min: float, snr_db: float, noise_power: float) -> None:
    """Add ``spec`` starting at ``t_min`` s to ``wave`` (in place), scaled so that its mean power over its
    length is ``snr_db`` above ``noise_power``. Samples land on ``ceil(t_min * sr) / sr`` onwards, evaluated
    at their exact call-relative times, so the sound is the same at any sample rate."""
    first = int(np.ceil(t_min * sr - 1e-9))
    offset = first / sr - t_min  # where the first sample falls after the sound starts, in [0, 1/sr)
    count = min(int(np.floor((spec.duration - offset) * sr)) + 1, wave.size - first)
    if count <= 0:
        return
    sound = render_call(spec, sr, offset, count)
    unit_power = float(np.mean(np.square(sound, dtype=np.float64)))
    if unit_power > 0:
        wave[first : first + count] += sound * np.float32(np.sqrt(noise_power * 10 ** (snr_db / 10) / unit_power))


def upsample_linear(env: np.ndarray, sr: int, n: int) -> np.ndarray:
    """Linear interpolation of ``env`` (every ``1 / ENV_RATE`` s from 0) at ``m / sr``, ``m < n``: ``(n,)`` float32.

    ``sr`` must be a multiple of :data:`ENV_RATE`; each grid interval then holds the same sample offsets, so
    this is ``np.interp`` done as one broadcast product.
    """
    factor = int(round(sr / ENV_RATE))
    if factor * ENV_RATE != sr:
        raise ValueError(f"sample rate {sr} is not a multiple of {ENV_RATE:g}")
    frac = np.arange(factor, dtype=np.float32) / factor
    e = env.astype(np.float32)
    count = -(-n // factor)
    return (e[:count, None] * (1 - frac) + e[1 : count + 1, None] * frac).reshape(-1)[:n]


def _coefficients(rng: np.random.Generator, psd_grid: np.ndarray, period: float,
                  power: float) -> tuple[np.ndarray, int]:
    """Gaussian Fourier coefficients whose variance follows ``psd_grid`` (a spectral shape every
    :data:`PSD_STEP` Hz), scaled to mean power ``power`` (``2 sum |c|^2``).

    Only the support of the shape (where it exceeds 1e-8 of its peak) is drawn, so a narrow band costs
    little. Returns ``(coef (K,) complex64, k0)``: coefficient ``j`` sits at ``(k0 + j) / period`` Hz.
    """
    support = np.flatnonzero(psd_grid > 1e-8 * psd_grid.max())
    k0 = max(int(np.floor(support[0] * PSD_STEP * period)), 1)
    k1 = min(int(np.ceil(support[-1] * PSD_STEP * period)), int(F_CAP * period))
    freqs = np.arange(k0, k1 + 1) / period
    amplitude = np.sqrt(np.interp(freqs, np.arange(psd_grid.size) * PSD_STEP, psd_grid)).astype(np.float32)
    coef = rng.standard_normal(2 * freqs.size, dtype=np.float32).view(np.complex64) * amplitude
    total = 2.0 * float(np.sum(np.square(coef.view(np.float32)), dtype=np.float64))
    coef *= np.float32(np.sqrt(power / max(total, 1e-30)))
    return coef, k0


def _cap(freqs: np.ndarray) -> np.ndarray:
    """Cosine taper from ``F_CAP - 500`` Hz to ``F_CAP`` (and nothing below 20 Hz)."""
    x = np.clip((freqs - (F_CAP - 500.0)) / 500.0, 0.0, 1.0)
    return np.cos(0.5 * np.pi * x) ** 2 * (freqs >= 20.0)


def _band_power(psd: np.ndarray, f_lo: float, f_hi: float) -> float:
    """Sum of a spectral shape on the :data:`PSD_STEP` grid between ``f_lo`` and ``f_hi`` (relative units)."""
    return float(psd[int(f_lo / PSD_STEP) : int(f_hi / PSD_STEP) + 1].sum())


def draw_background(rng: np.random.Generator, seconds: float) -> Background:
    """Draw one recording's background (all random choices here; rendering is deterministic)."""
    period = float(np.ceil(seconds))
    freqs = np.arange(int(F_CAP / PSD_STEP) + 1) * PSD_STEP  # the grid the shapes are drawn on
    n_env = int(np.ceil(period * ENV_RATE)) + 2
    grid = np.arange(n_env) / ENV_RATE
    level = 10 ** (rng.uniform(-44.0, -32.0) / 10)  # mean power of the ambience

    # Ambience: pink slope, rumble, distant-chorus hump, steady insect lines.
    pink = (np.maximum(freqs, 150.0) / 1000.0) ** -rng.uniform(0.7, 1.5)
    psd = pink * (1 + 10 ** (rng.uniform(0.5, 1.5)) * np.exp(-((freqs / rng.uniform(150, 350)) ** 2)))
    hump_fc = np.exp(rng.uniform(np.log(1500.0), np.log(7000.0)))
    hump = np.exp(-0.5 * (np.log2(np.maximum(freqs, 1.0) / hump_fc) / rng.uniform(0.3, 1.0)) ** 2)
    psd = psd * (1 + 10 ** (rng.uniform(0.3, 1.5)) * hump)
    for _ in range(int(rng.choice(4, p=[0.3, 0.35, 0.25, 0.1]))):
        fc, bw = rng.uniform(2500.0, 13000.0), rng.uniform(50.0, 400.0)
        local = np.interp(fc, freqs, psd)
        psd = psd + local * 10 ** (rng.uniform(1.0, 2.5)) * np.exp(-0.5 * ((freqs - fc) / bw) ** 2)
    psd *= _cap(freqs)
    drift_db = sum(rng.uniform(0.5, 2.0) * np.sin(2 * np.pi * grid / rng.uniform(8, 60) + rng.uniform(0, 2 * np.pi))
                   for _ in range(3))
    components = [NoiseComponent.make(_coefficients(rng, psd, period, level), 10 ** (drift_db / 20))]

    insects = bool(rng.random() < 0.5)
    if insects:
        fc, bw = rng.uniform(2500.0, 10000.0), rng.uniform(150.0, 1200.0)
        band = np.exp(-0.5 * ((freqs - fc) / bw) ** 2) * _cap(freqs)
        # In-band level 3-20 dB above the ambience there.
        power = level * _band_power(psd, fc - bw, fc + bw) / psd.sum() * 10 ** (rng.uniform(0.5, 2.0))
        pulses = (0.5 - 0.5 * np.cos(2 * np.pi * rng.uniform(6.0, 50.0) * grid)) ** rng.uniform(1.0, 4.0)
        gate = np.clip((np.sin(2 * np.pi * grid / rng.uniform(10, 40) + rng.uniform(0, 2 * np.pi))
                        - rng.uniform(-0.8, 0.3)) / 0.2, 0.0, 1.0)
        env = pulses * gate
        env /= max(np.sqrt(np.mean(env**2)), 1e-9)  # env keeps the component's mean power at ``power``
        components.append(NoiseComponent.make(_coefficients(rng, band, period, power), env))

    rain = bool(rng.random() < 0.2)
    if rain:
        hiss = (np.maximum(freqs, 500.0) / 1000.0) ** -0.3 * (1 - np.exp(-((freqs / 800.0) ** 2))) * _cap(freqs)
        power = level * 10 ** (rng.uniform(-0.5, 1.0))
        n_drops = rng.poisson(rng.uniform(10.0, 80.0) * period)
        impulses = np.zeros(n_env)
        np.add.at(impulses, rng.integers(0, n_env, n_drops), rng.lognormal(0.0, 0.7, n_drops))
        decay = np.exp(-np.arange(int(0.05 * ENV_RATE)) / (rng.uniform(0.002, 0.008) * ENV_RATE))
        env = rng.uniform(0.3, 1.0) + np.convolve(impulses, decay)[:n_env]
        env /= np.sqrt(np.mean(env**2))
        components.append(NoiseComponent.make(_coefficients(rng, hiss, period, power), env))
    clutter = []
    for _ in range(rng.poisson(rng.uniform(5.0, 40.0) * seconds / 60.0)):
        lo = np.exp(rng.uniform(np.log(300.0), np.log(11000.0)))
        band = (lo, min(lo * rng.uniform(1.2, 2.5), F_CAP - 500.0))
        note = rng.uniform(0.03, 0.3)
        # Pitch path inside the band (u in [0.25, 0.75], bow <= 0.25), so nothing passes F_CAP.
        notes = [Note(note, rng.uniform(0.02, 0.2), rng.uniform(0.25, 0.75), rng.uniform(0.25, 0.75),
                      rng.uniform(-0.25, 0.25))]
        pattern = Pattern(notes, harmonics=(1.0, 0.3) if rng.random() < 0.3 else (1.0,), shape=rng.uniform(0.5, 1.5))
        duration = note * rng.integers(1, 6) * rng.uniform(1.0, 1.8)
        spec = build_call(pattern, band, duration, rng)
        clutter.append((float(rng.uniform(0, seconds - duration)), spec, float(rng.uniform(-12.0, 0.0))))
    return Background(seconds, period, components, rain, insects, clutter)
