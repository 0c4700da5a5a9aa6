"""Event windows as vehicle motion: what a perfectly mounted, noiseless IMU would read.

Each event kind has a physical signature in the vehicle frame (x forward, y left, z up; specific
force, so a level vehicle at rest reads az = +g): brakes and launches are smooth longitudinal pulses
with pitch, turns tie lateral acceleration to yaw rate through the speed (a_lat = v * omega), a
collision is a short horizontal shock with ringing and spin, and benign triggers (potholes, door
slams, rough road, a dropped device) imitate parts of those. Every window also carries gravity on a
sloped road, engine and road vibration and the driver's small speed and steering corrections. Mild
events overlap benign ones on purpose: a classifier should have real work to do.

All synthesis is vectorised over the windows of one kind and draws only from the generator passed
in, so a caller that seeds the generator gets the same windows back.
"""

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from edge_packaging.telemetry_contract import GRAVITY_MPS2, SAMPLE_RATE_HZ, SAMPLES_PER_WINDOW

SEASONS: tuple[str, ...] = ("default", "winter")

EVENT_KINDS: dict[str, str] = {
    "harsh_brake": "harsh_brake",
    "harsh_accel": "harsh_accel",
    "harsh_turn": "harsh_turn",
    "collision": "collision",
    "pothole": "benign",
    "door_slam": "benign",
    "rough_road": "benign",
    "dropped_device": "benign",
}
"""Every kind of trigger the fleet produces, and the harsh-event class a reviewer would give it."""

# Trigger rates as shares of the nominal rate. The default season sums to 1 (benign 40 %, brake 20 %,
# turn 18 %, launch 14 %, collision 8 %); winter adds rough-road and pothole triggers on top, the way
# frost heave and ice add triggers without removing any harsh driving.
_KIND_RATES: dict[str, dict[str, float]] = {
    "default": {
        "harsh_brake": 0.20,
        "harsh_accel": 0.14,
        "harsh_turn": 0.18,
        "collision": 0.08,
        "pothole": 0.14,
        "door_slam": 0.08,
        "rough_road": 0.12,
        "dropped_device": 0.06,
    },
    "winter": {
        "harsh_brake": 0.20,
        "harsh_accel": 0.14,
        "harsh_turn": 0.18,
        "collision": 0.08,
        "pothole": 0.20,
        "door_slam": 0.08,
        "rough_road": 0.52,
        "dropped_device": 0.06,
    },
}
# Baseline road vibration relative to the default season (frozen ruts, gravel on ice).
_SEASON_ROUGHNESS = {"default": 1.0, "winter": 1.5}
# Heavier vehicles shake more at the cab and hold to gentler manoeuvres.
_VEHICLE_VIBRATION = {"light": 1.0, "medium": 1.15, "heavy": 1.3}
_WHEELBASE_M = {"light": 2.7, "medium": 3.4, "heavy": 5.0}

# Synthesis runs in float32, the dtype the device stores: half the memory traffic of float64, and
# rounding far below any sensor's noise.
_TIME_S = (np.arange(SAMPLES_PER_WINDOW) / SAMPLE_RATE_HZ).astype(np.float32)
# The device triggers 1-2 s into the window, so the pre-trigger context is kept.
_TRIGGER_SAMPLES = (SAMPLE_RATE_HZ, 2 * SAMPLE_RATE_HZ)


@dataclass(frozen=True)
class VehicleMotion:
    """Windows in the vehicle frame: specific force [N, 3, T] in m/s^2, angular rate [N, 3, T] in
    rad/s (roll, pitch, yaw about x, y, z), and the true speed at the trigger [N] in km/h."""

    accel_mps2: np.ndarray
    gyro_radps: np.ndarray
    speed_kph: np.ndarray


def event_class(kinds: np.ndarray) -> np.ndarray:
    """The harsh-event class (one of `HARSH_EVENT_CLASSES`) of each event kind."""
    return np.array([EVENT_KINDS[kind] for kind in kinds], dtype=str)


def draw_event_kinds(rng: np.random.Generator, events_per_device_day: float, season: str) -> np.ndarray:
    """The kinds of the events one device triggers in one day: a Poisson count, kinds by season.

    In winter the count's mean exceeds `events_per_device_day`, by the extra rough-road triggers.
    """
    rates = _KIND_RATES[check_season(season)]
    kinds = np.array(list(rates))
    weights = np.array(list(rates.values()))
    count = rng.poisson(events_per_device_day * weights.sum())
    return kinds[rng.choice(len(kinds), size=count, p=weights / weights.sum())]


def synthesize_motion(
    kinds: np.ndarray, vehicle_class: str, rng: np.random.Generator, season: str = "default"
) -> VehicleMotion:
    """Vehicle-frame windows for events of the given kinds, in the same order, for one vehicle.

    Every window is the vehicle cruising (gravity, vibration, small corrections) plus its event;
    the cruising part is drawn once for all windows, since per-kind batches are small.
    """
    if vehicle_class not in _VEHICLE_VIBRATION:
        raise ValueError(f"unknown vehicle class {vehicle_class!r}")
    roughness = _SEASON_ROUGHNESS[check_season(season)]
    kinds = np.asarray(kinds)
    unknown = set(kinds.tolist()) - set(_SYNTHESIZERS)
    if unknown:
        raise ValueError(f"unknown event kind(s) {sorted(unknown)}")
    count = len(kinds)
    trigger_samples = rng.integers(_TRIGGER_SAMPLES[0], _TRIGGER_SAMPLES[1] + 1, size=(count, 1))
    trigger_s = (trigger_samples / SAMPLE_RATE_HZ).astype(np.float32)
    speed_kph = np.empty((count, 1), dtype=np.float32)
    pitch_rad = np.zeros((count, SAMPLES_PER_WINDOW), dtype=np.float32)
    roll_rad = np.zeros_like(pitch_rad)
    accel = np.zeros((count, 3, SAMPLES_PER_WINDOW), dtype=np.float32)
    gyro = np.zeros_like(accel)
    sensor_effects = []
    # A fixed kind order keeps the draws, and so the windows, independent of how kinds are listed.
    for kind, synthesize in _SYNTHESIZERS.items():
        rows = np.flatnonzero(kinds == kind)
        if rows.size == 0:
            continue
        event = synthesize(_Scene(rng, rows.size, trigger_s[rows], vehicle_class, roughness))
        speed_kph[rows] = event.speed_kph
        pitch_rad[rows] += event.pitch_rad
        roll_rad[rows] += event.roll_rad
        accel[rows] += event.accel_mps2
        gyro[rows] += event.gyro_radps
        if event.sensor_effect is not None:
            sensor_effects.append((rows, event.sensor_effect))
    every_window = _Scene(rng, count, trigger_s, vehicle_class, roughness)
    cruise_accel, cruise_gyro = _cruise(every_window, speed_kph, pitch_rad, roll_rad)
    accel += cruise_accel
    gyro += cruise_gyro
    for rows, effect in sensor_effects:
        accel[rows], gyro[rows] = effect(accel[rows], gyro[rows])
    return VehicleMotion(accel, gyro, speed_kph.ravel())


def check_season(season: str) -> str:
    """`season` itself if it is one of `SEASONS`, else `ValueError` naming them."""
    if season not in SEASONS:
        raise ValueError(f"unknown season {season!r}; known: {', '.join(SEASONS)}")
    return season


@dataclass(frozen=True)
class _Scene:
    """What every window of one batch shares: the generator, the trigger times, the vehicle."""

    rng: np.random.Generator
    n: int
    trigger_s: np.ndarray
    vehicle_class: str
    roughness: float

    def uniform(self, low: float, high: float) -> np.ndarray:
        """One value per window, shape [n, 1] so it broadcasts against time."""
        return self.rng.uniform(low, high, size=(self.n, 1)).astype(np.float32)

    def normal(self, mean: float, sd: float) -> np.ndarray:
        return self.rng.normal(mean, sd, size=(self.n, 1)).astype(np.float32)

    def chance(self, probability: float) -> np.ndarray:
        return self.rng.random(size=(self.n, 1)) < probability

    def skewed(self, bounds: tuple[float, float]) -> np.ndarray:
        """Values within `bounds`, mostly in the lower half: mild events outnumber extreme ones."""
        low, high = bounds
        return (low + (high - low) * self.rng.beta(1.3, 2.7, size=(self.n, 1))).astype(np.float32)

    def by_vehicle(
        self, light: tuple[float, float], medium: tuple[float, float], heavy: tuple[float, float]
    ) -> tuple[float, float]:
        return {"light": light, "medium": medium, "heavy": heavy}[self.vehicle_class]

    def signs(self) -> np.ndarray:
        return np.where(self.chance(0.5), np.float32(1.0), np.float32(-1.0))

    def vectors(self) -> np.ndarray:
        """Zeroed [n, 3, T] vectors for an event's own acceleration or rotation."""
        return np.zeros((self.n, 3, SAMPLES_PER_WINDOW), dtype=np.float32)


_SensorEffect = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class _Event:
    """What an event adds to cruising: its speed, its own acceleration and rotation, the body
    attitude it causes, and, if the sensor leaves the vehicle frame, what happens to the readings."""

    speed_kph: np.ndarray
    accel_mps2: np.ndarray | float = 0.0
    gyro_radps: np.ndarray | float = 0.0
    pitch_rad: np.ndarray | float = 0.0
    roll_rad: np.ndarray | float = 0.0
    sensor_effect: _SensorEffect | None = None


def _smooth_step(x: np.ndarray) -> np.ndarray:
    # Ufuncs rather than np.clip: its Python wrapper costs more than the maths on these small arrays.
    return 0.5 - 0.5 * np.cos(np.pi * np.minimum(np.maximum(x, 0.0), 1.0))


def _pulse(start_s: np.ndarray, rise_s: np.ndarray, hold_s: np.ndarray, fall_s: np.ndarray) -> np.ndarray:
    """A 0-1 plateau with raised-cosine onset and release: how a driver presses and lets go."""
    onset = _smooth_step((_TIME_S - start_s) / rise_s)
    release = _smooth_step((_TIME_S - (start_s + rise_s + hold_s)) / fall_s)
    return onset - release


def _half_sine(center_s: np.ndarray, duration_s: np.ndarray) -> np.ndarray:
    """A shock pulse peaking at `center_s` (sample-aligned, so the sampled peak is the true peak)."""
    phase = (_TIME_S - center_s) / duration_s + 0.5
    return np.where((phase > 0) & (phase < 1), np.sin(np.pi * phase), 0.0).astype(np.float32)


def _ringing(start_s: np.ndarray, freq_hz: np.ndarray | float, decay_s: np.ndarray | float) -> np.ndarray:
    """A damped oscillation from `start_s`: a structure or suspension settling after a shock."""
    elapsed = np.maximum(_TIME_S - start_s, 0.0)
    wave = np.exp(-elapsed / decay_s) * np.sin(2 * np.pi * freq_hz * elapsed)
    return np.where(_TIME_S >= start_s, wave, 0.0).astype(np.float32)


@lru_cache(maxsize=None)
def _band_amplitudes(low_hz: float, high_hz: float) -> np.ndarray:
    """Spectral amplitudes of unit-RMS noise between `low_hz` and `high_hz` (second-order edges),
    cut after the last bin that still matters so that no phases are drawn for silent bins."""
    freqs = np.fft.rfftfreq(SAMPLES_PER_WINDOW, 1 / SAMPLE_RATE_HZ)
    with np.errstate(divide="ignore"):
        highpass = np.ones_like(freqs) if low_hz == 0 else 1 / np.sqrt(1 + (low_hz / freqs) ** 4)
    response = highpass / np.sqrt(1 + (freqs / high_hz) ** 4)
    response = response[: np.flatnonzero(response > 0.01 * response.max())[-1] + 1]
    # Only the real part of the DC and Nyquist bins survives the inverse transform, and an interior
    # bin stands for two conjugate frequencies, hence the weights of each bin's power.
    weights = np.full(response.size, 2.0)
    weights[0] = 0.5
    if response.size == SAMPLES_PER_WINDOW // 2 + 1:
        weights[-1] = 0.5
    variance = np.sum(weights * response**2) / SAMPLES_PER_WINDOW**2
    return (response / np.sqrt(variance)).astype(np.float32)


def _band_noise(rng: np.random.Generator, n: int, channels: int, low_hz: float, high_hz: float) -> np.ndarray:
    """Noise [n, channels, T] of unit RMS with its spectrum between `low_hz` and `high_hz`.

    A random-phase multisine, the usual vibration-test signal: the spectrum of filtered Gaussian
    noise from one uniform draw per frequency bin, several times cheaper than filtering white noise.
    """
    amplitudes = _band_amplitudes(low_hz, high_hz)
    phases_rad = np.float32(2 * np.pi) * rng.random((n, channels, amplitudes.size), dtype=np.float32)
    spectrum = np.empty(phases_rad.shape, dtype=np.complex64)
    # Real and imaginary parts from float32 cos and sin: numpy's complex exp is ten times slower.
    spectrum.real = amplitudes * np.cos(phases_rad)
    spectrum.imag = amplitudes * np.sin(phases_rad)
    return np.fft.irfft(spectrum, n=SAMPLES_PER_WINDOW, axis=-1)


def _rate(angle_rad: np.ndarray) -> np.ndarray:
    """Time derivative along the last axis: central differences inside, one-sided at the ends."""
    rate = np.empty_like(angle_rad)
    rate[..., 1:-1] = (angle_rad[..., 2:] - angle_rad[..., :-2]) * np.float32(SAMPLE_RATE_HZ / 2)
    rate[..., 0] = (angle_rad[..., 1] - angle_rad[..., 0]) * np.float32(SAMPLE_RATE_HZ)
    rate[..., -1] = (angle_rad[..., -1] - angle_rad[..., -2]) * np.float32(SAMPLE_RATE_HZ)
    return rate


def _gravity(pitch_rad: np.ndarray, roll_rad: np.ndarray) -> np.ndarray:
    """Specific force of gravity [N, 3, T] on a body pitched nose-down by `pitch_rad` and rolled
    left-side-up by `roll_rad`: a downhill slope reads like braking, body roll adds lateral g."""
    cos_pitch = np.cos(pitch_rad)
    return GRAVITY_MPS2 * np.stack(
        [-np.sin(pitch_rad), cos_pitch * np.sin(roll_rad), cos_pitch * np.cos(roll_rad)], axis=1
    )


def _cruise(
    scene: _Scene, speed_kph: np.ndarray, pitch_rad: np.ndarray, roll_rad: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The baseline every window carries: gravity on a sloped, banked road, the body attitude of the
    event, engine and road vibration that grows with speed, and the driver's small corrections.

    Harsh events happen on bad surfaces too, so the surface varies window by window: a hard brake
    on a broken road shakes like a rough-road trigger.
    """
    n = scene.n
    moving = (speed_kph > 0).astype(np.float32)
    speed_mps = speed_kph / np.float32(3.6)
    # Road grade and bank.
    pitch = scene.uniform(-0.05, 0.05) + pitch_rad
    roll = scene.uniform(-0.02, 0.02) + roll_rad
    accel = _gravity(pitch, roll)

    surface = np.exp(scene.normal(0.0, 0.5)) * scene.roughness
    vibration_rms = (0.08 + 0.008 * speed_kph) * _VEHICLE_VIBRATION[scene.vehicle_class] * surface
    gyro_vibration_rms = (0.004 + 0.0004 * speed_kph) * surface
    vibration = _band_noise(scene.rng, n, 6, 2.0, 20.0)
    accel += vibration[:, :3] * np.array([[0.4], [0.35], [1.0]], dtype=np.float32) * vibration_rms[:, None]

    # Drivers hold small speed and lane corrections to a few tenths of a m/s^2 at any speed, so the
    # steering's yaw rate is the lateral part over the speed (bounded by steering lock when slow).
    wander = _band_noise(scene.rng, n, 2, 0.0, 0.5) * moving[:, None]
    accel[:, 0] += scene.uniform(0.1, 0.5) * wander[:, 0]
    lateral = scene.uniform(0.1, 0.6) * wander[:, 1]
    accel[:, 1] += lateral
    yaw_rate = lateral / np.maximum(speed_mps, np.float32(2.5))

    gyro = np.stack([_rate(roll), _rate(pitch), yaw_rate], axis=1)
    gyro += vibration[:, 3:] * gyro_vibration_rms[:, None]
    return accel, gyro


def _turn(
    scene: _Scene,
    lateral_mps2: np.ndarray,
    start_s: np.ndarray,
    duration_s: np.ndarray,
    speed_kph: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lateral acceleration, yaw rate and body roll [n, T] of a turn peaking at `lateral_mps2`.

    Lateral acceleration and yaw rate are tied by the speed (a_lat = v * omega). Below walking pace
    steering lock bounds the yaw rate, so the speed used is at least 2.5 m/s. The body rolls away
    from the turn centre: left side up (positive roll) in a left turn.
    """
    rise, fall = duration_s * scene.uniform(0.25, 0.4), duration_s * scene.uniform(0.25, 0.4)
    profile = _pulse(start_s, rise, duration_s - rise - fall, fall)
    speed_mps = np.maximum(speed_kph / np.float32(3.6), np.float32(2.5))
    yaw_rate = lateral_mps2 * profile / speed_mps
    roll_per_mps2 = scene.uniform(*scene.by_vehicle((0.003, 0.006), (0.004, 0.007), (0.006, 0.010)))
    return speed_mps * yaw_rate, yaw_rate, roll_per_mps2 * lateral_mps2 * profile


def _harsh_brake(scene: _Scene) -> _Event:
    """A sustained deceleration with smooth onset and release, at speed; the nose dives."""
    decel = scene.skewed(scene.by_vehicle((2.6, 8.0), (2.4, 6.5), (2.2, 5.0)))
    rise, hold, fall = scene.uniform(0.2, 0.5), scene.uniform(0.2, 1.2), scene.uniform(0.3, 0.7)
    profile = _pulse(scene.trigger_s - scene.uniform(0.3, 0.8) * rise, rise, hold, fall)
    speed_kph = scene.uniform(*scene.by_vehicle((25, 110), (25, 100), (20, 85)))
    accel, gyro = scene.vectors(), scene.vectors()
    # Some brakes happen in a bend, which blurs them into turns.
    bend = scene.chance(0.3) * scene.uniform(0.5, 2.5) * scene.signs()
    accel[:, 1], gyro[:, 2], roll = _turn(
        scene, bend, scene.trigger_s - 1.0, scene.uniform(1.5, 3.0), speed_kph
    )
    accel[:, 0] = -decel * profile
    nose_dive = scene.uniform(0.003, 0.007) * decel * profile
    return _Event(speed_kph, accel, gyro, pitch_rad=nose_dive, roll_rad=roll)


def _harsh_accel(scene: _Scene) -> _Event:
    """A sustained forward push, gentler than braking (engines are weaker than brakes); the body squats."""
    thrust = scene.skewed(scene.by_vehicle((2.4, 5.0), (2.2, 4.5), (2.0, 3.6)))
    rise, hold, fall = scene.uniform(0.3, 0.7), scene.uniform(0.5, 2.0), scene.uniform(0.4, 1.0)
    profile = _pulse(scene.trigger_s - scene.uniform(0.3, 0.8) * rise, rise, hold, fall)
    # Hard launches mostly happen from junctions and lights, so the trigger speed is low.
    speed_kph = scene.skewed(scene.by_vehicle((2, 70), (2, 60), (2, 45)))
    accel, gyro = scene.vectors(), scene.vectors()
    # Pulling out of a junction turns while it accelerates: the overlap with harsh turns.
    turning = scene.chance(0.35) * scene.uniform(0.5, 3.0) * scene.signs()
    accel[:, 1], gyro[:, 2], roll = _turn(
        scene, turning, scene.trigger_s - 0.5, scene.uniform(1.5, 3.0), speed_kph
    )
    accel[:, 0] = thrust * profile
    squat = -scene.uniform(0.003, 0.007) * thrust * profile
    return _Event(speed_kph, accel, gyro, pitch_rad=squat, roll_rad=roll)


def _harsh_turn(scene: _Scene) -> _Event:
    """A 1.5-3 s corner taken fast: lateral acceleration with its yaw rate and body roll."""
    lateral = scene.skewed(scene.by_vehicle((2.6, 7.0), (2.5, 6.0), (2.4, 4.8))) * scene.signs()
    start = scene.trigger_s - scene.uniform(0.2, 0.6)
    duration = scene.uniform(1.5, 3.0)
    # Junction turns are slow, bends on open roads fast.
    speed_kph = scene.uniform(*scene.by_vehicle((12, 70), (12, 60), (10, 50)))
    accel, gyro = scene.vectors(), scene.vectors()
    accel[:, 1], gyro[:, 2], roll = _turn(scene, lateral, start, duration, speed_kph)
    # Drivers ease off into a corner and often power out of it: turns blur into brakes and launches.
    accel[:, 0] = -scene.uniform(0.0, 1.5) * _pulse(start - 0.5, 0.3, 0.3, 0.4)
    power_out = scene.chance(0.4) * scene.uniform(0.5, 2.5)
    accel[:, 0] += power_out * _pulse(start + 0.6 * duration, 0.4, scene.uniform(0.3, 1.0), 0.5)
    return _Event(speed_kph, accel, gyro, roll_rad=roll)


def _unit_vectors(horizontal_rad: np.ndarray, vertical_share: np.ndarray) -> np.ndarray:
    direction = np.concatenate([np.cos(horizontal_rad), np.sin(horizontal_rad), vertical_share], axis=1)
    return direction / np.linalg.norm(direction, axis=1, keepdims=True)


def _collision(scene: _Scene) -> _Event:
    """A 40-150 ms shock of 2.5-10 g, mostly horizontal, with structural ringing and spin."""
    peak = np.exp(scene.uniform(np.log(25.0), np.log(100.0)))
    duration = scene.uniform(0.04, 0.15)
    # Frontal impacts push the vehicle backwards (-x), rear impacts forwards, side impacts sideways;
    # kerbs and underrides add a vertical part, which is where hard potholes look alike.
    headings = np.array([np.pi, 0.0, np.pi / 2, -np.pi / 2], dtype=np.float32)
    heading = headings[scene.rng.choice(headings.size, p=[0.55, 0.2, 0.125, 0.125], size=(scene.n, 1))]
    direction = _unit_vectors(heading + scene.normal(0.0, 0.35), scene.uniform(-0.2, 1.0))
    ring_share = scene.uniform(0.1, 0.35)
    ring = _ringing(scene.trigger_s + duration / 2, scene.uniform(6, 18), scene.uniform(0.08, 0.25))
    shock = _half_sine(scene.trigger_s, duration) + ring_share * ring
    accel = peak[:, None] * direction[:, :, None] * shock[:, None]
    # The vehicle then slows down, hard after a real crash, gently after a scrape.
    accel[:, 0] -= scene.skewed((0.3, 5.0)) * _smooth_step((_TIME_S - scene.trigger_s) / 0.3)
    accel[:, 2] += scene.uniform(0.5, 3.0) * _ringing(scene.trigger_s, scene.uniform(1.2, 2.0), 0.5)
    gyro = scene.vectors()
    elapsed = np.maximum(_TIME_S - scene.trigger_s, 0.0)
    spin_radps = np.exp(scene.uniform(np.log(0.05), np.log(2.5))) * scene.signs()
    spin_decay = np.exp(-elapsed / scene.uniform(0.3, 1.0))
    gyro[:, 2] = np.where(_TIME_S >= scene.trigger_s, spin_radps * spin_decay, 0.0)
    for axis in (0, 1):
        rock = _ringing(scene.trigger_s, scene.uniform(1.5, 3.0), scene.uniform(0.3, 0.6))
        gyro[:, axis] = scene.uniform(0.1, 1.2) * scene.signs() * rock
    return _Event(scene.uniform(15, 90), accel, gyro)


def _pothole(scene: _Scene) -> _Event:
    """A vertical jolt on the front axle, then on the rear one a wheelbase later, and the body settling."""
    severity = np.clip(np.exp(scene.normal(np.log(10.0), 0.9)), 3.0, 70.0)
    speed_kph = scene.uniform(20, 90)
    axle_gap_s = _WHEELBASE_M[scene.vehicle_class] / (speed_kph / np.float32(3.6))
    jolt_s = scene.uniform(0.03, 0.08)
    # The far edge of the hole knocks the wheel backwards (and sideways when hit at an angle), hard
    # for a deep square-edged hole: the overlap with minor collisions.
    knock_share = scene.uniform(0.1, 1.0)
    side_knock_share = scene.uniform(-0.5, 0.5)
    accel, gyro = scene.vectors(), scene.vectors()
    for delay_s, share in ((0.0, 1.0), (axle_gap_s, 0.7)):
        hit_s = scene.trigger_s + delay_s
        jolt = _half_sine(hit_s, jolt_s)
        wheel_hop = 0.3 * _ringing(hit_s + jolt_s / 2, scene.uniform(8, 15), 0.08)
        accel[:, 2] += share * severity * (jolt + wheel_hop)
        accel[:, 0] -= share * severity * knock_share * jolt
        accel[:, 1] += share * severity * side_knock_share * jolt
    body = _ringing(scene.trigger_s, scene.uniform(1.2, 2.0), 0.5)
    accel[:, 2] += 0.15 * severity * body
    gyro[:, 1] = -scene.uniform(0.01, 0.02) * severity * body
    gyro[:, 0] = scene.uniform(-0.01, 0.01) * severity * body
    # One wheel in the hole tugs the steering: a brief yaw twitch.
    twitch = _ringing(scene.trigger_s, scene.uniform(1.0, 2.0), 0.3)
    gyro[:, 2] = scene.uniform(-0.02, 0.02) * severity * twitch
    # A hard hit makes drivers brake, like after a minor collision.
    braking = _pulse(scene.trigger_s + 0.2, 0.3, scene.uniform(0.5, 2.0), 0.5)
    accel[:, 0] -= scene.chance(0.5) * scene.uniform(0.3, 3.0) * braking
    return _Event(speed_kph, accel, gyro)


def _door_slam(scene: _Scene) -> _Event:
    """One to three short, mostly sideways knocks on a parked vehicle, as doors close."""
    accel, gyro = scene.vectors(), scene.vectors()
    slam_s = scene.trigger_s
    amplitude = scene.uniform(2.0, 15.0)
    for slam in range(3):
        side = scene.signs()
        heading = side * np.float32(np.pi / 2) + scene.uniform(-0.4, 0.4)
        direction = _unit_vectors(heading, scene.uniform(-0.6, 0.6))
        ring = _ringing(slam_s, scene.uniform(10, 22), scene.uniform(0.03, 0.1))
        shock = _half_sine(slam_s, scene.uniform(0.02, 0.06)) + 0.5 * ring
        present = np.float32(1.0) if slam == 0 else scene.chance(0.4)
        accel += (present * amplitude)[:, None] * direction[:, :, None] * shock[:, None]
        rocking = _ringing(slam_s, scene.uniform(1.5, 3.0), 0.3)
        gyro[:, 0] += present * side * scene.uniform(0.05, 0.4) * rocking
        slam_s = slam_s + scene.uniform(0.3, 1.5)
        amplitude = amplitude * scene.uniform(0.5, 1.0)
    return _Event(np.zeros((scene.n, 1), dtype=np.float32), accel, gyro)


def _rough_road(scene: _Scene) -> _Event:
    """A stretch of broadband vertical shaking, with the speed and steering changes it provokes."""
    start = scene.trigger_s - scene.uniform(0.2, 1.0)
    stretch = _pulse(start, 0.3, scene.uniform(1.0, 2.5), 0.4)[:, None]
    shake_rms = scene.skewed((0.15, 3.0))[:, None]
    axis_share = np.array([[0.35], [0.3], [1.0]], dtype=np.float32)
    accel = _band_noise(scene.rng, scene.n, 3, 3.0, 20.0) * axis_share * shake_rms * stretch
    gyro = scene.vectors()
    rocking = _band_noise(scene.rng, scene.n, 2, 1.0, 8.0)
    gyro[:, :2] = rocking * shake_rms * scene.uniform(0.02, 0.06)[:, None] * stretch
    speed_kph = scene.uniform(15, 80)
    # Most drivers change speed for the bad stretch, some firmly: the overlap with mild braking and
    # launching. The reviewer still calls it benign: the road, not the driver, made the trigger.
    longitudinal = np.where(scene.chance(0.8), -scene.uniform(0.5, 4.5), scene.uniform(0.5, 3.5))
    accel[:, 0] += scene.chance(0.85) * longitudinal * _pulse(start, 0.4, scene.uniform(0.5, 1.5), 0.5)
    # Bad roads wind: a bend taken at a normal pace is the overlap with gentle harsh turns.
    bend = scene.chance(0.4) * scene.uniform(1.0, 4.0) * scene.signs()
    lateral, yaw_rate, roll = _turn(scene, bend, start, scene.uniform(1.5, 3.0), speed_kph)
    accel[:, 1] += lateral
    gyro[:, 2] += yaw_rate
    return _Event(speed_kph, accel, gyro, roll_rad=roll)


def _random_rotations(rng: np.random.Generator, n: int) -> np.ndarray:
    """Uniformly random rotation matrices [n, 3, 3] (from unit quaternions)."""
    w, x, y, z = rng.standard_normal((4, n), dtype=np.float32)
    norm = np.sqrt(w * w + x * x + y * y + z * z)
    w, x, y, z = w / norm, x / norm, y / norm, z / norm
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], axis=-1),
            np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], axis=-1),
            np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], axis=-1),
        ],
        axis=1,
    )


def _dropped_device(scene: _Scene) -> _Event:
    """The unit falls off its bracket: in free fall it reads |a| ~ 0 while it tumbles, then it hits
    the floor and lies there at a new orientation, still shaken by the vehicle."""
    n = scene.n
    fall_s = scene.uniform(0.2, 0.4)
    mounted = (_TIME_S < scene.trigger_s - fall_s)[:, None]
    landed = (_TIME_S >= scene.trigger_s)[:, None]
    falling = ~mounted & ~landed
    resting = _random_rotations(scene.rng, n)
    air_drag = 0.3 * _band_noise(scene.rng, n, 3, 0.0, 10.0)
    tumble = _unit_vectors(scene.uniform(-np.pi, np.pi), scene.uniform(-1.0, 1.0)) * scene.uniform(3.0, 12.0)
    elapsed = np.maximum(_TIME_S - scene.trigger_s, 0.0)[:, None]
    spin = tumble[:, :, None] * (falling + np.where(landed, np.exp(-elapsed / 0.15), 0.0))
    impact_direction = _unit_vectors(scene.uniform(-np.pi, np.pi), scene.uniform(-1.5, 1.5))
    bounce = 0.3 * _ringing(scene.trigger_s, scene.uniform(5, 12), 0.1)
    impact = scene.uniform(30, 150) * (_half_sine(scene.trigger_s, scene.uniform(0.02, 0.05)) + bounce)

    def fall_off_bracket(accel: np.ndarray, gyro: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        accel = np.where(mounted, accel, 0.0) + np.where(landed, resting @ accel, 0.0)
        accel += np.where(falling, air_drag, 0.0) + impact[:, None] * impact_direction[:, :, None]
        gyro = np.where(mounted, gyro, 0.0) + np.where(landed, resting @ gyro, 0.0) + spin
        return accel, gyro

    speed_kph = np.where(scene.chance(0.5), np.float32(0.0), scene.uniform(5, 60))
    return _Event(speed_kph, sensor_effect=fall_off_bracket)


_SYNTHESIZERS: dict[str, Callable[[_Scene], _Event]] = {
    "harsh_brake": _harsh_brake,
    "harsh_accel": _harsh_accel,
    "harsh_turn": _harsh_turn,
    "collision": _collision,
    "pothole": _pothole,
    "door_slam": _door_slam,
    "rough_road": _rough_road,
    "dropped_device": _dropped_device,
}
