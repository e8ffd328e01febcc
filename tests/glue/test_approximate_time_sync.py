"""ApproximateTimeSync: hand cases of the message_filters policy and a generated comparison against a
literal reference model of that policy (written here, independently of fovea_ros.sync).

Every test runs on each backend present: "fovea" always, "message_filters" where that package is
installed (robots). Where it is absent the parametrisation simply has one entry; nothing is skipped.
"""
import importlib.util
import itertools
import re
from collections import Counter

import pytest
from builtin_interfaces.msg import Time
from hypothesis import given, settings
from hypothesis import strategies as st
from std_msgs.msg import Header

from fovea_ros.sync import ApproximateTimeSync, subscribe_synchronized

HAS_MESSAGE_FILTERS = importlib.util.find_spec("message_filters") is not None
BACKENDS = ["fovea"] + (["message_filters"] if HAS_MESSAGE_FILTERS else [])
MS = 1_000_000


class Stamped:
    """A message with a header, as every synchronised sensor message has; ``name`` identifies it."""

    def __init__(self, name, stamp_ns):
        self.name = name
        self.header = Header(stamp=Time(sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000))

    def __repr__(self):
        return self.name


class Headerless:
    name = "headerless"


def make(num_inputs, queue_size, slop, backend, **kwargs):
    emitted = []
    sync = ApproximateTimeSync(num_inputs, queue_size, slop, lambda *msgs: emitted.append(tuple(m.name for m in msgs)),
                               backend=backend, **kwargs)
    return sync, emitted


def test_auto_backend_follows_what_is_installed():
    sync, _ = make(2, 5, 0.1, "auto")
    assert sync.backend == ("message_filters" if HAS_MESSAGE_FILTERS else "fovea")
    with pytest.raises(ValueError, match="backend"):
        make(2, 5, 0.1, "magic")


@pytest.mark.parametrize("backend", BACKENDS)
def test_pairs_within_slop_are_emitted_in_input_order(backend):
    sync, emitted = make(2, 5, 0.05, backend)
    sync.add(1, Stamped("b0", 1000 * MS))
    assert emitted == []
    sync.add(0, Stamped("a0", 1020 * MS))
    assert emitted == [("a0", "b0")]
    assert sync.emitted == 1 and sync.queue_lengths() == [0, 0]


@pytest.mark.parametrize("backend", BACKENDS)
def test_slop_boundary_is_exclusive_for_the_span(backend):
    # |delta| == slop passes the candidate filter but the span must be strictly below slop.
    sync, emitted = make(2, 5, 0.05, backend)
    sync.add(0, Stamped("a", 1000 * MS))
    sync.add(1, Stamped("b", 1050 * MS))
    assert emitted == []
    sync.add(1, Stamped("c", 1050 * MS - 1))
    assert emitted == [("a", "c")]
    assert sync.queue_lengths() == [0, 1]  # "b" still waits


@pytest.mark.parametrize("backend", BACKENDS)
def test_zero_slop_never_emits(backend):
    sync, emitted = make(2, 5, 0.0, backend)
    sync.add(0, Stamped("a", 5 * MS))
    sync.add(1, Stamped("b", 5 * MS))
    assert emitted == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_queue_overflow_drops_the_oldest_stamp_and_counts_it(backend):
    sync, emitted = make(2, 2, 0.01, backend)
    sync.add(0, Stamped("a1", 100 * MS))
    sync.add(0, Stamped("a3", 300 * MS))
    sync.add(0, Stamped("a2", 200 * MS))  # third message: the oldest stamp (a1) leaves
    assert sync.dropped == {"headerless": 0, "duplicate_stamp": 0, "queue_overflow": 1}
    sync.add(1, Stamped("b1", 100 * MS))  # its partner is gone
    assert emitted == []
    sync.add(0, Stamped("a0", 50 * MS))  # older than everything queued: dropped at once
    assert sync.dropped["queue_overflow"] == 2
    sync.add(1, Stamped("b2", 201 * MS))
    assert emitted == [("a2", "b2")]


@pytest.mark.parametrize("backend", BACKENDS)
def test_out_of_order_arrivals_still_match(backend):
    sync, emitted = make(2, 10, 0.02, backend)
    for t in (500, 300, 400):
        sync.add(0, Stamped(f"a{t}", t * MS))
    for t in (405, 295, 510):
        sync.add(1, Stamped(f"b{t}", t * MS))
    assert emitted == [("a400", "b405"), ("a300", "b295"), ("a500", "b510")]
    assert sync.queue_lengths() == [0, 0]


@pytest.mark.parametrize("backend", BACKENDS)
def test_nearest_candidate_wins_and_older_unmatched_messages_stay(backend):
    sync, emitted = make(3, 10, 0.1, backend)
    sync.add(0, Stamped("a_old", 0))
    sync.add(0, Stamped("a", 1000 * MS))
    sync.add(1, Stamped("b_far", 940 * MS))
    sync.add(1, Stamped("b_near", 1010 * MS))
    sync.add(2, Stamped("c", 1005 * MS))
    assert emitted == [("a", "b_near", "c")]
    assert sync.queue_lengths() == [1, 1, 0]


@pytest.mark.parametrize("backend", BACKENDS)
def test_duplicate_stamp_replaces_and_headerless_is_dropped(backend):
    sync, emitted = make(2, 5, 0.05, backend)
    sync.add(0, Stamped("first", 10 * MS))
    sync.add(0, Stamped("second", 10 * MS))
    sync.add(0, Headerless())
    sync.add(1, Stamped("b", 10 * MS))
    assert emitted == [("second", "b")]
    assert sync.dropped == {"headerless": 1, "duplicate_stamp": 1, "queue_overflow": 0}


def test_headerless_messages_take_the_clock_when_allowed():
    sync, emitted = make(2, 5, 0.05, "fovea", allow_headerless=True, now_ns=lambda: 1000 * MS)
    sync.add(0, Stamped("a", 990 * MS))
    sync.add(1, Headerless())
    assert emitted == [("a", "headerless")]


def test_invalid_arguments():
    with pytest.raises(ValueError, match="queue_size"):
        make(2, 0, 0.1, "fovea")
    with pytest.raises(ValueError, match="slop"):
        make(2, 3, -0.1, "fovea")
    sync, _ = make(2, 3, 0.1, "fovea")
    with pytest.raises(IndexError):
        sync.add(2, Stamped("x", 0))


def test_subscription_helper_feeds_add_by_index():
    created = []

    class FakeNode:
        def create_subscription(self, msg_type, topic, callback, qos):
            created.append((msg_type, topic, qos))
            return callback

    sync, emitted = make(2, 5, 0.05, "fovea")
    callbacks = subscribe_synchronized(FakeNode(), [(Stamped, "/points"), (Stamped, "/image")], sync, qos_profile=7)
    assert [c[1] for c in created] == ["/points", "/image"] and created[0][2] == 7
    callbacks[1](Stamped("img", 0))
    callbacks[0](Stamped("pts", 1 * MS))
    assert emitted == [("pts", "img")]
    with pytest.raises(ValueError, match="1 topics"):
        subscribe_synchronized(FakeNode(), [(Stamped, "/a")], sync, qos_profile=7)


# ------------------------------------------------------------------------------------- reference model

class ReferencePolicy:
    """The message_filters Python policy, written as literally as possible (exhaustive product search)."""

    def __init__(self, num_inputs, queue_size, slop_ns):
        self.queues = [{} for _ in range(num_inputs)]
        self.queue_size, self.slop_ns = queue_size, slop_ns
        self.emitted, self.drops = [], Counter()

    def add(self, index, name, stamp):
        queue = self.queues[index]
        if stamp in queue:
            self.drops["duplicate_stamp"] += 1
        queue[stamp] = name
        while len(queue) > self.queue_size:
            del queue[min(queue)]
            self.drops["queue_overflow"] += 1
        per_input = []
        for other, other_queue in enumerate(self.queues):
            if other == index:
                continue
            near = sorted(((s, abs(s - stamp)) for s in other_queue if abs(s - stamp) <= self.slop_ns),
                          key=lambda pair: pair[1])
            if not near:
                return
            per_input.append([s for s, _ in near])
        for combo in itertools.product(*per_input):
            stamps = list(combo)
            stamps.insert(index, stamp)
            if max(stamps) - min(stamps) < self.slop_ns and all(s in q for q, s in zip(self.queues, stamps)):
                self.emitted.append(tuple(q.pop(s) for q, s in zip(self.queues, stamps)))
                return


@st.composite
def scenarios(draw):
    num_inputs = draw(st.integers(2, 3))
    queue_size = draw(st.integers(1, 4))
    slop_ms = draw(st.sampled_from([0, 5, 10, 15, 20, 50]))
    # Stamps on a 5 ms grid make ties, equal distances and exact-slop gaps common.
    events = draw(st.lists(st.tuples(st.integers(0, num_inputs - 1), st.integers(0, 30)), max_size=40))
    return num_inputs, queue_size, slop_ms, events


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=60, deadline=None)
@given(scenario=scenarios())
def test_matches_the_reference_policy(backend, scenario):
    num_inputs, queue_size, slop_ms, events = scenario
    sync, emitted = make(num_inputs, queue_size, slop_ms / 1000, backend)
    reference = ReferencePolicy(num_inputs, queue_size, slop_ms * MS)
    for i, (index, tick) in enumerate(events):
        name = f"m{i}"
        sync.add(index, Stamped(name, tick * 5 * MS))
        reference.add(index, name, tick * 5 * MS)
        assert emitted == reference.emitted
    assert sync.emitted == len(reference.emitted)
    assert sync.queue_lengths() == [len(q) for q in reference.queues]
    assert sync.dropped == {"headerless": 0, "duplicate_stamp": reference.drops["duplicate_stamp"],
                            "queue_overflow": reference.drops["queue_overflow"]}
    # Bookkeeping: every message is emitted, dropped or still queued.
    accounted = num_inputs * sync.emitted + sum(sync.dropped.values()) + sum(sync.queue_lengths())
    assert accounted == len(events)


@pytest.mark.parametrize("backend", BACKENDS)
def test_concurrent_adds_from_two_threads_lose_nothing(backend):
    import threading

    pairs = []
    sync = ApproximateTimeSync(2, 1000, 0.001, lambda a, b: pairs.append((a.name, b.name)), backend=backend)

    def feed(index):
        for i in range(500):
            sync.add(index, Stamped(f"{index}:{i}", i * 10 * MS))

    threads = [threading.Thread(target=feed, args=(index,)) for index in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(pairs) == sorted((f"0:{i}", f"1:{i}") for i in range(500))
    assert sync.emitted == 500 and sync.queue_lengths() == [0, 0]


# ------------------------------------------------------------------------------------- why drops happen

def feed_rig(sync, stamps_per_input):
    """Feed interleaved: round r gives every input its r-th stamp (None: that input publishes nothing)."""
    for r in range(max(len(s) for s in stamps_per_input)):
        for index, stamps in enumerate(stamps_per_input):
            if r < len(stamps) and stamps[r] is not None:
                sync.add(index, Stamped(f"{index}.{r}", stamps[r]))


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_silent_input_is_reported_as_the_missing_member(backend):
    reports = []
    sync, emitted = make(3, 2, 0.05, backend, input_names=["/cam_a", "/cam_b", "/lidar"],
                         on_drop=lambda *r: reports.append(r))
    rounds = [i * 500 * MS for i in range(6)]
    feed_rig(sync, [rounds, rounds, []])
    assert emitted == []
    assert sync.drop_causes == {"missing member /lidar": 8}
    assert sync.dropped["queue_overflow"] == 8 and len(reports) == 8
    reason, count, detail = reports[0]
    assert (reason, count) == ("missing member /lidar", 1) and "nothing queued on /lidar" in detail


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_camera_stamped_one_second_late_is_reported_outside_slop(backend):
    reports = []
    sync, emitted = make(3, 2, 0.05, backend, input_names=["/cam_a", "/cam_b", "/lidar"],
                         on_drop=lambda *r: reports.append(r))
    rounds = [i * 500 * MS for i in range(6)]
    feed_rig(sync, [rounds, [s + 1000 * MS for s in rounds], rounds])
    # cam_b's stamp t+1 s meets the others' t+1 s while those are still queued: some late sets form
    assert len(emitted) < 6
    causes = sync.drop_causes
    # the late camera is named with its offset; with queues this short, messages of the others that cam_b's
    # early stamps pushed out show as a member not yet published ("missing member") - the detail says when
    assert all(reason.startswith(("outside slop", "missing member")) for reason in causes), causes
    first = next(detail for reason, _, detail in reports if reason == "outside slop /cam_b")
    assert re.search(r"nearest on /cam_b 1000\.0 ms away, slop 50 ms", first), first
    # nothing vanishes: every message is in a set, counted as a drop, or still waiting
    assert 3 * sync.emitted + sum(causes.values()) + sum(sync.queue_lengths()) == 18


@pytest.mark.parametrize("backend", BACKENDS)
def test_candidates_everywhere_but_no_tight_set_is_a_queue_overflow(backend):
    sync, emitted = make(3, 1, 0.010, backend)
    sync.add(0, Stamped("a", 100 * MS))
    sync.add(1, Stamped("b", 109 * MS))
    sync.add(2, Stamped("c", 91 * MS))   # a is within slop of both, b and c are 18 ms apart
    sync.add(0, Stamped("a2", 300 * MS))  # a leaves the full queue unmatched
    assert emitted == [] and sync.drop_causes == {"queue overflow": 1}


@pytest.mark.parametrize("backend", BACKENDS)
def test_duplicates_and_headerless_messages_are_reported(backend):
    reports = []
    sync, _ = make(2, 5, 0.05, backend, on_drop=lambda *r: reports.append(r[0]))
    sync.add(0, Stamped("a", 0))
    sync.add(0, Stamped("a again", 0))
    sync.add(1, Headerless())
    assert reports == ["duplicate stamp", "headerless"]


def test_the_subscription_helper_counts_drops_on_the_node_and_reports_what_waits():
    class FakeFoveaNode:
        def __init__(self):
            self.drops, self.values, self.callbacks = [], {}, []

        def create_subscription(self, msg_type, topic, callback, qos):
            self.callbacks.append(callback)
            return callback

        def drop(self, reason, detail="", n=1):
            self.drops.append((reason, n))

        def set_diagnostic(self, key, value):
            self.values[key] = value

    node = FakeFoveaNode()
    sync, emitted = make(2, 1, 0.05, "fovea")
    subscribe_synchronized(node, [(Stamped, "/image"), (Stamped, "/points")], sync, qos_profile=7)
    node.callbacks[0](Stamped("i0", 0))
    assert node.values["sync_waiting"] == 1
    node.callbacks[0](Stamped("i1", 1000 * MS))
    assert node.drops == [("sync: missing member /points", 1)] and node.values["sync_waiting"] == 1
    node.callbacks[1](Stamped("p1", 1001 * MS))
    assert emitted == [("i1", "p1")] and node.values["sync_waiting"] == 0
