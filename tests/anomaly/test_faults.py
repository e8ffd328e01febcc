"""Each fault function: the interval it reports, what it changes inside it, and that nothing outside moves."""

import numpy as np
import pytest
from anomaly_helpers import MS, toy_streams

from fovea_core.events.anomaly import faults as F

START, END = 200 * MS, 500 * MS


@pytest.fixture
def clean():
    return toy_streams()


def outside(t):
    return (t < START) | (t >= END)


def test_offset_moves_only_frame_stamps_inside_and_keeps_order(clean):
    faulty, fault = F.offset(clean, START, END, 100)
    assert (fault.kind, fault.start_ns, fault.end_ns, fault.stream) == ("offset", START, END, "frames")
    assert np.array_equal(faulty.events, clean.events)
    assert np.all(np.diff(faulty.frames.stamps) > 0)
    moved = clean.frames.stamps[(clean.frames.stamps >= START) & (clean.frames.stamps < END)] + 100 * MS
    assert set(moved) <= set(faulty.frames.stamps)
    # frames that would have come before the delayed ones are dropped, the rest are unchanged
    kept_before = clean.frames.stamps[clean.frames.stamps < START]
    assert np.array_equal(faulty.frames.stamps[:len(kept_before)], kept_before)
    assert faulty.frames.stamps[-1] == clean.frames.stamps[-1]
    assert len(faulty.frames) < len(clean.frames)
    assert clean.frames.stamps[0] == 20 * MS  # inputs untouched


def test_drift_grows_linearly_inside(clean):
    faulty, fault = F.drift(clean, START, END, 100_000)
    inside = (clean.frames.stamps >= START) & (clean.frames.stamps < END)
    expected = clean.frames.stamps[inside] + (clean.frames.stamps[inside] - START) // 10
    assert set(expected) <= set(faulty.frames.stamps) and fault.severity == "100000 ppm"


def test_frozen_repeats_the_last_image_before_the_onset(clean):
    faulty, fault = F.frozen(clean, START, END)
    st = clean.frames.stamps
    inside = (st >= START) & (st < END)
    last_before = clean.frames.images[np.flatnonzero(st < START)[-1]]
    assert all(np.array_equal(img, last_before) for img in faulty.frames.images[inside])
    assert np.array_equal(faulty.frames.images[~inside], clean.frames.images[~inside])
    assert np.array_equal(faulty.frames.stamps, st)


def test_frame_stall_and_event_gap_remove_exactly_the_interval(clean):
    stalled, fault = F.frame_stall(clean, START, END)
    assert np.array_equal(stalled.frames.stamps, clean.frames.stamps[outside(clean.frames.stamps)])
    gapped, fault = F.event_gap(clean, START, END)
    assert np.array_equal(gapped.events, clean.events[outside(clean.events["t"])])
    assert fault.severity == "300 ms" and fault.stream == "events"


@pytest.mark.parametrize("inject", [lambda s: F.hot_pixels(s, START, END, 5, 1000.0, seed=1),
                                    lambda s: F.event_storm(s, START, END, 20.0, seed=1)])
def test_added_events_fall_inside_and_keep_the_stream_sorted(clean, inject):
    faulty, fault = inject(clean)
    assert np.all(np.diff(faulty.events["t"]) >= 0)
    assert np.sum(outside(faulty.events["t"])) == np.sum(outside(clean.events["t"]))
    added = len(faulty.events) - len(clean.events)
    assert added > 100
    if fault.kind == "hot_pixels":  # the additions sit on 5 pixels
        extra = faulty.events[~outside(faulty.events["t"])]
        pixels, counts = np.unique(extra["y"].astype(int) * 32 + extra["x"], return_counts=True)
        assert np.sort(counts)[-5:].sum() >= added


def test_flicker_adds_periodic_bursts_and_modulates_frames(clean):
    faulty, fault = F.flicker(clean, START, END, 30.0, fraction=0.5, depth=0.5, seed=0)  # not a multiple of 25 Hz
    extra_t = faulty.events["t"][~outside(faulty.events["t"])]
    hist = np.bincount((extra_t - START) // MS)
    assert hist.max() > 5 * np.median(hist)  # bursty, not uniform
    inside = ~outside(clean.frames.stamps)
    assert not np.array_equal(faulty.frames.images[inside], clean.frames.images[inside])
    assert np.array_equal(faulty.frames.images[~inside], clean.frames.images[~inside])


def test_replay_and_splice_replace_images_not_stamps(clean):
    replayed, fault = F.replay(clean, START, END, 120)
    st = clean.frames.stamps
    inside = np.flatnonzero(~outside(st))
    for i in inside:  # each image is the one 120 ms (3 frames) earlier
        assert np.array_equal(replayed.frames.images[i], clean.frames.images[i - 3])
    other = toy_streams()
    other.frames.images[:] = 7
    spliced, fault = F.splice(clean, START, END, other)
    assert np.all(spliced.frames.images[inside] == 7) and np.array_equal(spliced.frames.stamps, st)
    assert fault.kind == "splice"


def test_time_jump_moves_every_later_event(clean):
    faulty, fault = F.time_jump(clean, START, 200)
    later = clean.events["t"] >= START
    assert np.array_equal(faulty.events["t"][later], clean.events["t"][later] + 200 * MS)
    assert fault.start_ns == START and fault.end_ns > clean.end_ns


def test_blinding_saturates_frames_and_silences_events_after_a_burst(clean):
    faulty, fault = F.blinding(clean, START, END, seed=0)
    inside = ~outside(clean.frames.stamps)
    assert faulty.frames.images[inside].min() >= 200
    ev = faulty.events[~outside(faulty.events["t"])]
    burst = ev["t"] < START + 3 * MS
    assert burst.sum() > 0.5 * 32 * 24 and np.all(ev["p"][burst] == 1) and (~burst).sum() < 0.1 * 300


def test_inject_dispatches_by_name(clean):
    for kind, grid in F.FRAME_EVENT_FAULTS.items():
        faulty, fault = F.inject(kind, clean, START, END, other=toy_streams(), **grid[0])
        assert fault.kind == kind and fault.start_ns == START
        assert np.all(np.diff(faulty.events["t"]) >= 0) and np.all(np.diff(faulty.frames.stamps) > 0)
