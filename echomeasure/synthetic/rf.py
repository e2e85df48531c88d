"""The ``rf`` style family: B-mode images formed by a pulse-echo simulation on the beam grid.

Every other family paints grey levels per tissue class; here the grey levels come out of the
physics of a phased-array scanner, so that a wall is what a scanner makes of it: a specular echo
blurred by the pulse and the beam, and spread into dark blood by log compression.

Per frame, on the polar grid of the case (:class:`~.ultrasound.ScanConverter`: depth samples x
beams) and its tissue-class map (studio classes, :mod:`.anatomy`):

1. **RF line** on an axial grid ``m`` times finer than the display samples (fine enough for the
   pulse's upper band edge): random scatterers of each tissue class (amplitude by class:
   pericardium brightest, valves and fibrous tissue, myocardium, chest wall, blood 30-42 dB
   below myocardium), plus **specular reflections** where the acoustic impedance changes along
   the beam: the signed reflection coefficient ``(Z2 - Z1) / (Z2 + Z1)`` times a directivity
   ``exp(-(angle / roughness)^2)``, the angle between the beam and the interface normal (the
   gradient of the smoothed impedance map).  The chest wall is layered fat / muscle; its
   interfaces also echo again at 2x and 3x their depth (probe-face reverberation).
   Scatterers are a hash of their position: tissue of the heart is locked to the heart frame
   (PLAX: it moves with the heart's translation, rotation and twist; walls thickening still slide
   through it), extracardiac tissue to the probe, blood is drawn afresh every frame (it flows).
2. **Pulse**: Gaussian-modulated, centre frequency 1.7-4 MHz (harmonic mode: 3.4-4 MHz received
   from a 1.7-2 MHz transmit), fractional -6 dB bandwidth 0.4-0.9, applied by FFT along the
   line together with **frequency-dependent attenuation** (0.3-0.7 dB/cm/MHz; a Gaussian
   spectrum times ``exp(-a f z)`` shifts down with depth), evaluated in depth bands and blended.
3. **Envelope detection**: the analytic signal (Hilbert transform: the positive half of the
   spectrum, doubled) is taken straight to complex baseband at twice the display sampling
   (demodulation + decimation with a Gaussian anti-alias window, as a scanner's IQ path does).
4. **Lateral beam profile**, coherently across beams (FFT along the beam axis, one kernel per
   depth): transmit ``sinc(x / w_tx)`` focused at 6-14 cm (``w_tx`` = wavelength x F-number at
   the focus, widening before and after it), dynamic receive ``sinc(x / w_rx)`` with F-number
   1.5-2.5; harmonic mode squares the transmit profile (narrower, lower side lobes) and builds up
   with depth (cleaner near field).  Diffuse echo is brighter in the focal zone.
5. **Detection and display**: ``|IQ|``, electronic noise (fresh per frame), time-gain
   compensation that under- or over-corrects the attenuation (slope 0.7-1.0 of the true one
   plus slider errors of +-4 dB), log compression to a 40-70 dB dynamic range with a gain that
   puts myocardium at 45-65 % grey (:func:`~.ultrasound.log_compress`), blood near black above
   a visible noise floor that rises with depth.

Everything per case is drawn by :func:`sample_rf_look` from a generator the caller keys by the
case (:func:`~.styles.style_rng`); per frame only the frame index enters (blood scatterers and
electronic noise), so any subset of frames renders exactly as in the full clip.
"""

from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np

from echomeasure.synthetic import anatomy
from echomeasure.synthetic.ultrasound import ScanConverter, SpeckleSettings, log_compress

#: Depth spatial frequency of a round-trip echo per MHz: 2 f / c with c = 1540 m/s (cycles per cm).
NU_PER_MHZ = 2.0e6 / 154_000.0
_NP_PER_DB = math.log(10.0) / 20.0
#: Reference diffuse echo amplitude of myocardium in the focal zone (full scale is 1).
MYO_AMPLITUDE = 0.01
_BLOOD = (anatomy.E_LV, anatomy.E_RV, anatomy.E_LA, anatomy.E_AO, anatomy.E_DAO)
_HEART_TISSUE = (anatomy.E_SEPTUM, anatomy.E_MYO, anatomy.E_PERI, anatomy.E_VALVE, anatomy.E_FIBROUS,
                 anatomy.E_DAO_WALL, anatomy.E_CHORDAE)
_N_BANDS = 5  # depth bands of the frequency-dependent attenuation


@dataclasses.dataclass(frozen=True)
class RfLook:
    """Acquisition, tissue and display settings of one ``rf`` case (all JSON-able numbers)."""

    transmit_mhz: float
    centre_mhz: float  # received centre frequency (harmonic: twice the transmit)
    bandwidth: float  # fractional -6 dB bandwidth of the received pulse
    harmonic: bool
    focus_cm: float
    aperture_cm: float
    f_number_rx: float
    attenuation_db_cm_mhz: float
    tgc_slope: float  # fraction of the true attenuation the TGC makes up
    tgc_error_db: tuple[float, ...]  # slider errors at 6 depths, top to bottom
    dynamic_range_db: float
    myo_grey: float  # fraction of the display range at which focal-zone myocardium sits
    gamma: float
    noise_db: float  # electronic noise at the deepest sample, dB above the display floor
    specular_db: float  # scale of all specular reflections (interface smoothness)
    roughness_deg: float  # angular width of the specular directivity
    reverberation: float  # echo of a chest-wall interface again at 2x (and at 3x: squared)
    buildup_cm: float  # harmonic build-up depth (unused in fundamental mode)
    level_db: tuple[float, ...]  # diffuse echo per studio class, dB re myocardium
    impedance: tuple[float, ...]  # acoustic impedance per studio class, MRayl
    chest_layers: tuple[tuple[float, float, float], ...]  # (top as a fraction of the wall, MRayl, dB)

    @property
    def sigma_mhz(self) -> float:
        """Standard deviation of the Gaussian pulse spectrum (MHz)."""
        return self.bandwidth * self.centre_mhz / (2.0 * math.sqrt(2.0 * math.log(2.0)))

    @property
    def sigma_depth_cm(self) -> float:
        """Standard deviation of the pulse envelope along depth (cm, round trip)."""
        return 1.0 / (2.0 * math.pi * NU_PER_MHZ * self.sigma_mhz)

    @property
    def pulse_length_cm(self) -> float:
        """Full width of the pulse envelope at -20 dB, along depth (cm)."""
        return 2.0 * math.sqrt(2.0 * math.log(10.0)) * self.sigma_depth_cm

    def gain_db(self) -> float:
        """The display gain that puts focal-zone myocardium at :attr:`myo_grey` of the range."""
        return -20.0 * math.log10(MYO_AMPLITUDE) - self.dynamic_range_db * (1.0 - self.myo_grey)

    def display(self) -> SpeckleSettings:
        """Log-compression settings (:func:`~.ultrasound.log_compress`) of the case."""
        return SpeckleSettings(gain_db=self.gain_db(), dynamic_range_db=self.dynamic_range_db, gamma=self.gamma)

    def summary(self) -> dict:
        """The acquisition in the truth document (``truth["style"]["rf"]``)."""
        return {"transmit_mhz": round(self.transmit_mhz, 3), "centre_mhz": round(self.centre_mhz, 3),
                "bandwidth": round(self.bandwidth, 3), "harmonic": self.harmonic, "focus_cm": round(self.focus_cm, 2),
                "attenuation_db_cm_mhz": round(self.attenuation_db_cm_mhz, 3),
                "dynamic_range_db": round(self.dynamic_range_db, 1), "gain_db": round(self.gain_db(), 1)}


def sample_rf_look(r: np.random.Generator) -> RfLook:
    """Draw the settings of one case."""
    u = r.uniform
    harmonic = bool(r.random() < 0.5)
    if harmonic:
        tx = u(1.7, 2.0)
        fc, bw = 2.0 * tx, u(0.4, 0.6)
    else:
        tx = fc = u(1.7, 4.0)
        bw = u(0.4, 0.9)
    level = [0.0] * anatomy.N_ECHO_CLASSES
    imp = [0.0] * anatomy.N_ECHO_CLASSES
    blood_db, blood_z = u(-42.0, -30.0), u(1.60, 1.63)
    for k in _BLOOD:
        level[k], imp[k] = blood_db, blood_z
    myo_z = u(1.66, 1.70)
    level[anatomy.E_MYO], imp[anatomy.E_MYO] = 0.0, myo_z
    level[anatomy.E_SEPTUM], imp[anatomy.E_SEPTUM] = u(-2.0, 2.0), myo_z + u(-0.01, 0.01)
    level[anatomy.E_PERI], imp[anatomy.E_PERI] = u(10.0, 16.0), u(1.78, 1.92)
    level[anatomy.E_VALVE], imp[anatomy.E_VALVE] = u(4.0, 10.0), u(1.70, 1.76)
    level[anatomy.E_FIBROUS], imp[anatomy.E_FIBROUS] = u(4.0, 9.0), u(1.71, 1.77)
    level[anatomy.E_DAO_WALL], imp[anatomy.E_DAO_WALL] = u(3.0, 8.0), u(1.70, 1.75)
    level[anatomy.E_CHORDAE], imp[anatomy.E_CHORDAE] = u(-3.0, 3.0), u(1.68, 1.72)
    level[anatomy.E_BG], imp[anatomy.E_BG] = u(-20.0, -10.0), u(1.50, 1.60)  # mediastinal fat, lung edge
    layers = []
    n_layers = int(r.integers(3, 6))
    tops = np.sort(u(0.0, 1.0, n_layers))
    tops[0] = 0.0
    for j, top in enumerate(tops):
        fat = j % 2 == 0  # subcutaneous fat, then muscle, fat, ...
        layers.append((float(top), u(1.38, 1.45) if fat else u(1.64, 1.70), u(-16.0, -9.0) if fat else u(-5.0, 0.0)))
    return RfLook(
        transmit_mhz=float(tx), centre_mhz=float(fc), bandwidth=float(bw), harmonic=harmonic,
        focus_cm=u(6.0, 14.0), aperture_cm=u(1.4, 2.2), f_number_rx=u(1.5, 2.5), attenuation_db_cm_mhz=u(0.3, 0.7),
        tgc_slope=u(0.7, 1.0), tgc_error_db=tuple(float(x) for x in u(-4.0, 4.0, 6)),
        dynamic_range_db=u(40.0, 70.0), myo_grey=u(0.45, 0.65), gamma=u(1.0, 1.4), noise_db=u(4.0, 14.0),
        specular_db=u(-2.0, 6.0), roughness_deg=u(10.0, 30.0), reverberation=u(0.05, 0.3) * (0.3 if harmonic else 1.0),
        buildup_cm=u(1.0, 3.0), level_db=tuple(float(x) for x in level), impedance=tuple(float(x) for x in imp),
        chest_layers=tuple(layers),
    )


def _hash_uniform(keys: np.ndarray) -> np.ndarray:
    """Uniform(-sqrt 3, sqrt 3) (unit variance) float32 of uint64 keys (splitmix64 finaliser)."""
    with np.errstate(over="ignore"):
        z = keys.copy()
        z ^= z >> np.uint64(30)
        z *= np.uint64(0xBF58476D1CE4E5B9)
        z ^= z >> np.uint64(27)
        z *= np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
    top = (z >> np.uint64(40)).astype(np.float32)  # 24 bits
    return (top * np.float32(2.0 / 2**24) - np.float32(1.0)) * np.float32(math.sqrt(3.0))


def _sinc(x: np.ndarray) -> np.ndarray:
    return np.sinc(x).astype(np.float32)


class RfRenderer:
    """Forms the grey polar image of one case's frames from their tissue-class maps.

    Parameters
    ----------
    conv : ScanConverter
        The case's polar grid and scan conversion.
    look : RfLook
        From :func:`sample_rf_look`.
    noise_seed : int
        The case's noise seed (scatterer hashes, electronic noise).
    chest_wall_cm : float
        Thickness of the layered chest wall below the probe (background class only).
    """

    def __init__(self, conv: ScanConverter, look: RfLook, noise_seed: int, chest_wall_cm: float) -> None:
        self.conv = conv
        self.look = look
        self.noise_seed = int(noise_seed) & (2**63 - 1)
        g = conv.geometry
        n_s, n_b = g.n_samples, g.n_beams
        self.shape = (n_s, n_b)
        dr = conv.dr_cm
        lk = look
        sig = lk.sigma_mhz
        # axial grid: fine enough for the pulse's upper band edge (>= 2.2 samples per period)
        nu_hi = NU_PER_MHZ * (lk.centre_mhz + 3.5 * sig)
        self.m = m = max(2, int(math.ceil(dr * 2.2 * nu_hi)))
        self.q = q = 2  # IQ rows per display sample
        self.dz = dz = dr / m
        sigma_aa = 0.35 * dr
        pad = int(math.ceil(6.0 * math.hypot(lk.sigma_depth_cm, sigma_aa) / dr)) + 4
        s_pad = n_s + pad
        s_pad += s_pad % 2
        self.s_pad, self.n_fft = s_pad, m * s_pad
        n_fft = self.n_fft
        # ---- axial: pulse x attenuation per depth band, straight to baseband (analytic, decimated)
        dnu = 1.0 / (n_fft * dz)
        k_d = int(round(NU_PER_MHZ * lk.centre_mhz / dnu))
        n_iq = q * s_pad
        kappa = np.fft.fftfreq(n_iq, d=1.0 / n_iq).astype(np.int64)  # fft order offsets from the carrier bin
        k = k_d + kappa
        valid = (k > 0) & (k <= n_fft // 2)
        self.src = np.clip(k, 0, n_fft // 2)
        f_mhz = k * dnu / NU_PER_MHZ
        pulse = np.exp(-0.5 * ((f_mhz - lk.centre_mhz) / sig) ** 2)
        aa = np.exp(-0.5 * (2.0 * math.pi * (k - k_d) * dnu * sigma_aa) ** 2)
        base = np.where(valid, pulse * aa, 0.0)
        base /= (2.0 / n_fft) * base.sum()  # a unit reflector gives a unit envelope peak
        # IQ row j sits at depth z_iq[j]; fine sample f at (f - (m - 1) / 2) dz: read ahead by ``lead``
        z_iq = (np.arange(q * n_s) - (q - 1) / 2.0) * (dr / q)
        lead = ((m - 1) / 2.0 - (q - 1) * m / (2.0 * q)) * dz
        shift = np.exp(2j * math.pi * k * dnu * lead)
        # diffuse: fine white scatterers of unit variance give envelope RMS sqrt(4/N sum|H|^2)
        self.unit_scatter = 1.0 / math.sqrt(4.0 / n_fft * float(np.sum(base**2)))
        alpha_np = lk.attenuation_db_cm_mhz * _NP_PER_DB
        rx_ways, tx_loss = (1.0, 2.0 * lk.transmit_mhz) if lk.harmonic else (2.0, 0.0)
        self.band_depth = np.linspace(0.0, g.depth_cm, _N_BANDS)
        self.band_filters = [
            (2.0 * base * shift * np.exp(-alpha_np * (rx_ways * f_mhz + tx_loss) * z) * (q / m)).astype(np.complex64)[:, None]
            for z in self.band_depth
        ]
        self.z_iq = z_iq
        pos = np.interp(z_iq, self.band_depth, np.arange(_N_BANDS))
        lo = np.clip(np.floor(pos).astype(int), 0, _N_BANDS - 2)
        self.band_lo = lo
        self.band_w = (pos - lo).astype(np.float32)[:, None]
        # ---- lateral: two-way beam profile per IQ row, FFT across beams
        self.n_lat = n_lat = int(2 * n_b + 16)
        dtheta = conv.dbeam_rad
        offs = np.fft.fftfreq(n_lat, d=1.0 / n_lat)
        downshift = alpha_np * rx_ways * sig**2 * np.maximum(z_iq, 0.0)  # Gaussian x exp(-a f z): centre drops (MHz)
        f_rx = np.maximum(lk.centre_mhz - downshift, 0.6 * lk.centre_mhz)
        lam_rx = 0.154 / f_rx  # cm
        lam_tx = 0.154 / lk.transmit_mhz
        d_ap, z_f = lk.aperture_cm, lk.focus_cm
        r = np.maximum(z_iq, dr / q)
        w_tx = np.sqrt((lam_tx * r / d_ap) ** 2 + (0.5 * d_ap * (1.0 - r / z_f)) ** 2)
        w_rx = lam_rx * np.maximum(lk.f_number_rx, r / d_ap)
        x = offs[None, :] * (r * dtheta)[:, None]
        tx = _sinc(x / w_tx[:, None])
        prof = (tx * tx if lk.harmonic else tx) * _sinc(x / w_rx[:, None])
        prof /= prof.sum(axis=1, keepdims=True)
        self.lat_filter = np.fft.fft(prof, axis=1).astype(np.complex64)
        energy = (prof**2).sum(axis=1)
        # diffuse echo power goes as 1 / beam width: scatterers per beam scale with 1/sqrt(dx),
        # normalised so that focal-zone diffuse echo has the class's level
        dx = r * dtheta
        j_f = int(np.argmin(np.abs(z_iq - z_f)))
        focal = np.sqrt(dx[j_f] / dx) / math.sqrt(float(energy[j_f]))
        self.row_scale = focal.reshape(n_s, q).mean(axis=1).astype(np.float32)[:, None]
        # ---- depth: harmonic build-up, TGC, electronic noise
        build = (1.0 - np.exp(-r / lk.buildup_cm)) if lk.harmonic else np.ones_like(r)
        loss_db = 2.0 * lk.attenuation_db_cm_mhz * lk.centre_mhz * z_iq
        err = np.interp(z_iq, np.linspace(0.0, g.depth_cm, len(lk.tgc_error_db)), lk.tgc_error_db)
        tgc = 10.0 ** ((lk.tgc_slope * loss_db + err) / 20.0)
        self.buildup = build.astype(np.float32)[:, None]
        self.tgc = tgc.astype(np.float32)[:, None]
        settings = lk.display()
        floor = 10.0 ** ((-lk.dynamic_range_db + lk.noise_db - settings.gain_db) / 20.0)
        self.noise_amp = np.float32(floor / tgc[-1] / math.sqrt(2.0))
        self.settings = settings
        # ---- per-case maps: impedance / level of the chest-wall layers, fine probe coordinates
        z_probe = conv.polar_z_cm
        self.layer = np.full(self.shape, -1, dtype=np.int8)
        for j, (top, _z, _db) in enumerate(lk.chest_layers):
            self.layer[z_probe >= top * chest_wall_cm] = j
        self.layer[z_probe >= chest_wall_cm] = -1
        self.chest_rows = int(min(n_s, math.ceil(chest_wall_cm / dr) + 1))
        self.imp_lut = np.asarray(lk.impedance, dtype=np.float32)
        self.amp_lut = (MYO_AMPLITUDE * 10.0 ** (np.asarray(lk.level_db) / 20.0)).astype(np.float32)
        self.layer_imp = np.asarray([z for _t, z, _d in lk.chest_layers], dtype=np.float32)
        self.layer_amp = (MYO_AMPLITUDE * 10.0 ** (np.asarray([d for _t, _z, d in lk.chest_layers]) / 20.0)).astype(np.float32)
        self.heart_lut = np.zeros(anatomy.N_ECHO_CLASSES, dtype=bool)
        self.heart_lut[list(_HEART_TISSUE)] = True
        self.blood_lut = np.zeros(anatomy.N_ECHO_CLASSES, dtype=bool)
        self.blood_lut[list(_BLOOD)] = True
        rf_r = (np.arange(n_s * m, dtype=np.float32) - np.float32((m - 1) / 2.0)) * np.float32(dz)
        self.fine_x = (rf_r[:, None] * np.sin(conv.beam_angle_rad)[None, :]).astype(np.float32)
        self.fine_z = (rf_r[:, None] * np.cos(conv.beam_angle_rad)[None, :]).astype(np.float32)
        self.salt = np.uint64((self.noise_seed * 0x9E3779B97F4A7C15 + 0x5EED) % 2**64)
        self.static_keys = (np.arange(n_s * m, dtype=np.uint64)[:, None] * np.uint64(1 << 10)
                            + np.arange(n_b, dtype=np.uint64)[None, :])
        self.cos_tol = math.radians(lk.roughness_deg)

    # ----------------------------------------------------------------- per frame
    def impedance_map(self, cls: np.ndarray) -> np.ndarray:
        """Acoustic impedance (MRayl) of every polar sample, with the chest-wall layers."""
        imp = self.imp_lut[cls]
        chest = (self.layer >= 0) & (cls == anatomy.E_BG)
        imp[chest] = self.layer_imp[self.layer[chest]]
        return imp

    def specular(self, imp: np.ndarray) -> np.ndarray:
        """Specular reflection at the boundary above each polar sample (0 where none): signed
        reflection coefficient x directivity (beam vs interface normal) x smoothness."""
        refl = np.zeros(imp.shape, dtype=np.float32)
        refl[1:] = (imp[1:] - imp[:-1]) / (imp[1:] + imp[:-1])
        smooth = cv2.GaussianBlur(imp, (0, 0), sigmaX=1.2, sigmaY=1.5, borderType=cv2.BORDER_REPLICATE)
        conv = self.conv
        g_r = cv2.Sobel(smooth, cv2.CV_32F, 0, 1, ksize=3) / np.float32(8.0 * conv.dr_cm)
        r = np.maximum(conv.sample_depth_cm, conv.dr_cm)[:, None]
        g_t = cv2.Sobel(smooth, cv2.CV_32F, 1, 0, ksize=3) / (np.float32(8.0 * conv.dbeam_rad) * r)
        angle = np.arctan2(np.abs(g_t), np.abs(g_r) + np.float32(1e-12))
        direct = np.exp(-((angle / np.float32(self.cos_tol)) ** 2))
        return refl * direct * np.float32(10.0 ** (self.look.specular_db / 20.0))

    def rf_lines(self, cls: np.ndarray, index: int, heart=None) -> np.ndarray:
        """The RF scatterer-and-reflector line of every beam before the pulse: (n_s * m, n_beams) float32.

        ``heart(x_cm, z_cm) -> (s, t)`` maps probe to heart-frame coordinates at this frame
        (heart tissue scatterers are locked to them); None: they stay fixed to the probe.
        """
        m = self.m
        n_s, n_b = self.shape
        imp = self.impedance_map(cls)
        amp = self.amp_lut[cls]
        chest = (self.layer >= 0) & (cls == anatomy.E_BG)
        amp[chest] = self.layer_amp[self.layer[chest]]
        amp *= np.float32(self.unit_scatter) * self.row_scale
        keys = self.static_keys.copy()
        cls_f = np.repeat(cls, m, axis=0)
        blood = self.blood_lut[cls_f]
        keys[blood] += np.uint64((int(index) + 1) << 24) | np.uint64(1 << 60)
        if heart is not None:
            tissue = self.heart_lut[cls_f]
            s, t = heart(self.fine_x[tissue], self.fine_z[tissue])
            inv = np.float32(1.0 / self.dz)
            i_s = (np.floor(np.asarray(s) * inv).astype(np.int64) + (1 << 20)).astype(np.uint64)
            i_t = (np.floor(np.asarray(t) * inv).astype(np.int64) + (1 << 20)).astype(np.uint64)
            keys[tissue] = (i_s << np.uint64(21)) | i_t | np.uint64(2 << 60)
        with np.errstate(over="ignore"):
            line = _hash_uniform(keys ^ self.salt)
        line *= np.repeat(amp, m, axis=0)
        # specular reflectors half-way between the display samples where the impedance changes
        spec = self.specular(imp)
        line.reshape(n_s, m, n_b)[:-1, m - 1, :] += spec[1:]  # fine sample i m - 1: depth (i - 1/2) dr
        # probe-face reverberation of the chest-wall interfaces at 2x and 3x their depth
        rev = self.look.reverberation
        c = self.chest_rows
        if rev > 0 and c > 1:
            for order in (2, 3):
                fine = np.round(order * (np.arange(1, c) - 0.5) * m + (m - 1) / 2.0).astype(int)
                ok = fine < n_s * m
                line[fine[ok]] += spec[1:c][ok] * np.float32(rev ** (order - 1))
        return line

    def polar(self, cls: np.ndarray, index: int, heart=None) -> np.ndarray:
        """(n_samples, n_beams) float32 display grey 0-255 of one frame (class map ``cls``)."""
        n_s, n_b = self.shape
        line = self.rf_lines(cls, index, heart)
        buf = np.zeros((self.n_fft, n_b), dtype=np.float32)
        buf[: line.shape[0]] = line
        spec = np.fft.rfft(buf, axis=0)[self.src]
        rows = self.q * n_s
        iq = np.empty((rows, n_b), dtype=np.complex64)
        lo, w = self.band_lo, self.band_w
        iq[:] = 0
        for b, filt in enumerate(self.band_filters):  # linear blend of the two nearest depth bands
            cur = np.fft.ifft(spec * filt, axis=0)[:rows]
            near, far = lo == b, lo == b - 1
            iq[near] += cur[near] * (1 - w[near])
            iq[far] += cur[far] * w[far]
        lat = np.fft.ifft(np.fft.fft(iq, n=self.n_lat, axis=1) * self.lat_filter, axis=1)[:, :n_b]
        rng = np.random.default_rng([self.noise_seed, 41, int(index)])
        noise = rng.standard_normal((rows, n_b, 2), dtype=np.float32).view(np.complex64)[..., 0]
        env = np.abs((lat * self.buildup + noise * self.noise_amp) * self.tgc).astype(np.float32)
        env = env.reshape(n_s, self.q, n_b).mean(axis=1)
        return log_compress(env, self.settings)

    def image(self, cls: np.ndarray, index: int, heart=None) -> np.ndarray:
        """(H, W) float32 grey sector image of one frame (0 outside the sector)."""
        return self.conv.to_image(self.polar(cls, index, heart))


__all__ = ["NU_PER_MHZ", "RfLook", "RfRenderer", "sample_rf_look"]
