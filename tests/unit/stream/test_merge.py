"""The event-time merge: deterministic order, bounded waiting, invalid records never block."""

from __future__ import annotations

import random

from stream.engine.merge import EventTimeMerge, Item

RANKS = {"labels": 0, "events": 1}


def drain(merge, waited=0.0):
    return [item.payload for item in merge.pop_ready(waited)]


def test_orders_by_event_time_then_labels_before_events():
    merge = EventTimeMerge(RANKS, max_wait_s=1.0)
    merge.add(("events", 0), [Item(1.0, 0, "e0"), Item(2.0, 1, "e1"), Item(3.0, 2, "e2")], caught_up=True)
    merge.add(("labels", 0), [Item(1.5, 0, "l0"), Item(2.0, 1, "l1")], caught_up=True)
    assert drain(merge) == ["e0", "l0", "l1", "e1", "e2"]


def test_partitions_are_never_reordered_internally():
    merge = EventTimeMerge(RANKS, max_wait_s=1.0)
    merge.add(("events", 0), [Item(5.0, 0, "late"), Item(1.0, 1, "early")], caught_up=True)
    merge.add(("events", 1), [Item(3.0, 0, "mid")], caught_up=True)
    assert drain(merge) == ["mid", "late", "early"]


def test_a_lagging_partition_holds_the_merge_back_until_max_wait():
    merge = EventTimeMerge(RANKS, max_wait_s=1.0)
    merge.register(("labels", 0))  # not caught up, nothing fetched yet
    merge.add(("events", 0), [Item(1.0, 0, "e0")], caught_up=True)
    assert drain(merge, waited=0.0) == []
    assert drain(merge, waited=0.5) == []
    assert drain(merge, waited=0.5) == ["e0"]
    assert merge.wait_expirations == 1


def test_only_time_spent_waiting_for_input_counts_not_processing_time():
    merge = EventTimeMerge(RANKS, max_wait_s=1.0)
    merge.register(("labels", 0))
    merge.add(("events", 0), [Item(1.0, 0, "e0")], caught_up=True)
    for _ in range(50):  # many short fetches, however long the caller was busy in between
        assert drain(merge, waited=0.01) == []
    merge.add(("labels", 0), [Item(0.5, 0, "l0")], caught_up=True)
    assert drain(merge, waited=0.01) == ["l0", "e0"]
    assert merge.wait_expirations == 0


def test_a_caught_up_partition_does_not_hold_the_merge_back():
    merge = EventTimeMerge(RANKS, max_wait_s=60.0)
    merge.add(("labels", 0), [], caught_up=True)
    merge.add(("events", 0), [Item(1.0, 0, "e0")], caught_up=False)
    assert drain(merge) == ["e0"]
    assert merge.all_caught_up() is False


def test_invalid_records_are_released_at_once_even_when_blocked():
    merge = EventTimeMerge(RANKS, max_wait_s=60.0)
    merge.register(("labels", 0))
    merge.add(("events", 0), [Item(None, 0, "bad"), Item(1.0, 1, "e1")], caught_up=True)
    assert drain(merge) == ["bad"]


def test_same_records_give_the_same_order_whatever_the_fetch_chunking():
    rng = random.Random(7)
    events = [Item(float(i), i, f"e{i}") for i in range(300)]
    labels = [Item(i + 4.5 if i % 3 else float(i + 5), i, f"l{i}") for i in range(300)]

    def run(chunk_seed):
        chunks = random.Random(chunk_seed)
        merge = EventTimeMerge(RANKS, max_wait_s=1e9)
        merge.register(("events", 0))
        merge.register(("labels", 0))
        streams = {("events", 0): list(events), ("labels", 0): list(labels)}
        out = []
        while any(streams.values()) or merge.buffered():
            key = chunks.choice(list(streams))
            take = chunks.randint(0, 40)
            batch, streams[key] = streams[key][:take], streams[key][take:]
            merge.add(key, batch, caught_up=not streams[key])
            other = ("labels", 0) if key == ("events", 0) else ("events", 0)
            merge.set_caught_up(other, not streams[other])
            out.extend(drain(merge))
        return out

    orders = {tuple(run(rng.randrange(1000))) for _ in range(5)}
    assert len(orders) == 1
    (order,) = orders
    assert len(order) == 600


# -- rule 6: labels wait for the events' event time at the live edge -------------------------------


def live_edge_merge(max_wait_s=0.5, released=None):
    seen = None if released is None else (lambda item: item.payload[1:] in released)
    merge = EventTimeMerge(RANKS, max_wait_s=max_wait_s, leading="events", seen=seen)
    merge.add(("events", 0), [], caught_up=True)
    merge.add(("labels", 0), [], caught_up=True)
    return merge


def test_a_label_waits_for_its_event_that_is_not_on_the_broker_yet():
    released = set()
    merge = live_edge_merge(released=released)
    merge.add(("events", 0), [Item(1.0, 0, "e1")], caught_up=True)
    assert drain(merge) == ["e1"]
    released.add("1")
    # the label of event 2 overtook event 2 across topics: events look caught up
    merge.add(("labels", 0), [Item(2.5, 0, "l2")], caught_up=True)
    merge.set_caught_up(("events", 0), True)
    assert drain(merge, waited=0.1) == []
    merge.add(("events", 0), [Item(2.0, 1, "e2")], caught_up=True)
    assert drain(merge, waited=0.0) == ["e2"]  # its event first ...
    released.add("2")
    assert drain(merge, waited=0.0) == ["l2"]  # ... then the label finds it pending: no more wait
    assert merge.wait_expirations == 0


def test_a_label_for_an_idle_events_stream_flows_after_one_short_wait():
    merge = live_edge_merge(max_wait_s=0.5)
    merge.add(("events", 0), [Item(1.0, 0, "e1")], caught_up=True)
    assert drain(merge) == ["e1"]
    merge.add(("labels", 0), [Item(5.0, 0, "l5")], caught_up=True)
    assert drain(merge, waited=0.3) == []  # held from here on: later input waits count
    assert drain(merge, waited=0.3) == []  # 0.3 s of waiting spent holding: not yet 0.5 s
    assert drain(merge, waited=0.3) == ["l5"]  # 0.6 s
    assert merge.wait_expirations == 1
    merge.add(("labels", 0), [Item(6.0, 1, "l6"), Item(7.0, 2, "l7")], caught_up=True)
    assert drain(merge, waited=0.0) == ["l6", "l7"]  # the wait stays over while events are idle
    merge.add(("events", 0), [Item(8.0, 1, "e8")], caught_up=True)
    assert drain(merge) == ["e8"]
    merge.add(("labels", 0), [Item(9.0, 3, "l9")], caught_up=True)
    assert drain(merge, waited=0.1) == []  # a new event re-arms the wait
    assert merge.wait_expirations == 1


def test_labels_older_than_the_released_events_never_wait():
    merge = live_edge_merge(max_wait_s=60.0)
    merge.add(("events", 0), [Item(float(i), i, f"e{i}") for i in range(10)], caught_up=True)
    assert len(drain(merge)) == 10
    merge.add(("labels", 0), [Item(3.0, 0, "l3"), Item(9.0, 1, "l9")], caught_up=True)
    assert drain(merge) == ["l3", "l9"]  # ts <= the newest released event: its event was seen


def test_events_never_wait_for_labels():
    merge = live_edge_merge(max_wait_s=60.0)
    merge.add(("labels", 0), [], caught_up=True)
    merge.add(("events", 0), [Item(100.0, 0, "e100")], caught_up=True)
    assert drain(merge) == ["e100"]


def test_rule_7_a_label_waits_for_its_served_record_behind_the_leading_time():
    """The trainer's served partitions are written by independent scorers: one can lag the others."""
    def run(hold_unseen):
        released = set()
        merge = EventTimeMerge(RANKS, max_wait_s=5.0, leading="events", hold_unseen=hold_unseen,
                               seen=lambda item: item.payload[1:] in released)
        for key in (("events", 0), ("events", 1), ("labels", 0)):
            merge.add(key, [], caught_up=True)
        # served partition 0 is far ahead (ts 10); partition 1 (its scorer died) stopped at ts 1
        merge.add(("events", 0), [Item(10.0, 0, "e10")], caught_up=True)
        merge.add(("events", 1), [Item(1.0, 0, "e1")], caught_up=True)
        out = drain(merge)
        released.update(p[1:] for p in out)
        merge.add(("labels", 0), [Item(2.5, 0, "l2"), Item(3.5, 1, "l3")], caught_up=True)
        first = drain(merge, waited=0.1)
        merge.add(("events", 1), [Item(2.0, 1, "e2")], caught_up=True)  # the new owner serves event 2
        out = drain(merge)
        released.update(p[1:] for p in out)
        return first, out + drain(merge, waited=0.1), drain(merge, waited=5.0), merge.wait_expirations

    # rule 6 alone: l2 is behind the leading time (10), so it goes at once and finds nothing pending
    assert run(False)[0] == ["l2", "l3"]
    # rule 7: l2 waits for e2 (and l3, behind it, for e3 until max_wait_s of waiting)
    first, after_e2, expired, expirations = run(True)
    assert (first, after_e2, expired, expirations) == ([], ["e2", "l2"], ["l3"], 1)


def test_the_live_edge_rule_does_not_change_a_replay_order():
    """With everything in the topics, rule 6 only holds the labels after the last event."""
    events = [Item(float(i), i, f"e{i}") for i in range(200)]
    labels = [Item(float(i + 5), i, f"l{i}") for i in range(200)]
    plain = EventTimeMerge(RANKS, max_wait_s=1e9)
    plain.add(("events", 0), list(events), caught_up=True)
    plain.add(("labels", 0), list(labels), caught_up=True)
    expected = drain(plain)
    merge = live_edge_merge(max_wait_s=0.5)
    merge.add(("events", 0), list(events), caught_up=True)
    merge.add(("labels", 0), list(labels), caught_up=True)
    first = drain(merge)
    assert first == expected[:len(first)] and len(first) < len(expected)
    assert first + drain(merge, waited=0.6) == expected


def test_stopping_mid_release_and_resuming_gives_the_same_order():
    """The processor stops applying released records after a time slice and resumes next turn."""
    rng = random.Random(3)
    events = [Item(float(i), i, f"e{i}") for i in range(500)]
    labels = [Item(i + 2.5, i, f"l{i}") for i in range(500)]

    def fresh():
        merge = EventTimeMerge(RANKS, max_wait_s=1e9, leading="events")
        merge.add(("events", 0), list(events), caught_up=True)
        merge.add(("labels", 0), list(labels), caught_up=True)
        return merge

    merge, whole = fresh(), []
    while merge.buffered():  # released whole, turn after turn (the last labels wait one turn: rule 6)
        whole += drain(merge, waited=1e9)
    merge, sliced = fresh(), []
    while merge.buffered():
        released = merge.pop_ready(waited_s=1e9)
        for _ in range(rng.randint(1, 40)):  # abandon the generator after a few records
            item = next(released, None)
            if item is None:
                break
            sliced.append(item.payload)
    assert sliced == whole and len(whole) == 1000


# -- the released order equals the rules written out plainly --------------------------------


class ReferenceMerge(EventTimeMerge):
    """The rules of :mod:`stream.engine.merge` written out the plain way: every step looks at
    every partition's head and compares full ``(ts, rank, partition, offset)`` keys. The merge's
    own :meth:`~EventTimeMerge.pop_ready` skips work this does; both must release the same
    records in the same order and leave the same state behind."""

    def pop_ready(self, waited_s):
        parts = list(self._partitions.values())
        for part in parts:
            if part.buffer or part.caught_up:
                part.waited = 0.0
            else:
                part.waited += waited_s
        if self._holding:
            self._hold_waited += waited_s
            self._holding = False
        counted = False
        while True:
            for part in parts:
                while part.buffer and part.buffer[0].ts is None:
                    yield part.buffer.popleft()
            best, best_key, expired = None, None, False
            for part in parts:
                if not part.buffer:
                    if part.caught_up:
                        continue
                    if part.waited < self.max_wait_s:
                        return
                    expired = True
                    continue
                head = part.buffer[0]
                key = (head.ts, part.rank, part.number, head.offset)
                if best_key is None or key < best_key:
                    best, best_key = part, key
            if best is None:
                return
            if (
                self._leaders
                and not best.leads
                and (
                    any(p.caught_up and not p.buffer for p in self._leaders)
                    if self.hold_unseen
                    else (self.leading_ts is None or best_key[0] > self.leading_ts)
                    and all(p.caught_up and not p.buffer for p in self._leaders)
                )
                and (self.seen is None or not self.seen(best.buffer[0]))
            ):
                if self._hold_waited < self.max_wait_s:
                    self._holding = True
                    return
                if not self._hold_counted:
                    self.wait_expirations += 1
                    self._hold_counted = True
            if expired and not counted:
                self.wait_expirations += 1
                counted = True
            item = best.buffer.popleft()
            if best.leads and (self.leading_ts is None or item.ts > self.leading_ts):
                self.leading_ts = item.ts
            yield item


def _random_session(seed: int):
    """A random schedule of adds, caught-up flags, waits and abandoned releases."""
    rng = random.Random(seed)
    keys = [("events", p) for p in range(rng.randint(1, 3))] + [("labels", p) for p in range(rng.randint(1, 3))]
    offsets = dict.fromkeys(keys, 0)
    steps = []
    for _ in range(60):
        action = rng.random()
        key = rng.choice(keys)
        if action < 0.5:
            items = []
            for _ in range(rng.randint(0, 12)):
                ts = None if rng.random() < 0.1 else float(rng.randint(0, 40)) + rng.choice((0.0, 0.5, -0.0))
                items.append(Item(ts, offsets[key], f"{key[0]}{key[1]}@{offsets[key]}"))
                offsets[key] += 1
            if items and all(i.ts is not None for i in items):
                items.sort(key=lambda i: i.ts)  # a producer's partition is mostly in event-time order
                items = [Item(i.ts, o, f"{key[0]}{key[1]}@{o}") for i, o in zip(items, range(items[0].offset, 10**9))]
            steps.append(("add", key, items, rng.random() < 0.6))
        elif action < 0.6:
            steps.append(("caught_up", key, None, rng.random() < 0.7))
        else:
            steps.append(("pop", None, rng.choice((0.0, 0.0, 0.3, 2.0)), rng.choice((None, 1, 3, 10))))
    return steps


def _play(merge_class, steps, hold_unseen, use_seen):
    seen_ids: set = set()
    seen = (lambda item: item.payload.replace("labels", "events") in seen_ids) if use_seen else None
    merge = merge_class(RANKS, max_wait_s=1.0, leading="events", seen=seen, hold_unseen=hold_unseen)
    released = []
    for kind, key, a, b in steps:
        if kind == "add":
            merge.add(key, a, caught_up=b)
        elif kind == "caught_up":
            merge.set_caught_up(key, b)
        else:
            for n, item in enumerate(merge.pop_ready(a)):
                released.append(item.payload)
                if item.payload.startswith("events"):
                    seen_ids.add(item.payload)
                if b is not None and n + 1 >= b:
                    break  # the processor's time slice ended: the rest stays buffered
    for _ in range(3):
        released += [item.payload for item in merge.pop_ready(5.0)]
    state = (merge.wait_expirations, merge.leading_ts, merge.buffered(), merge._holding, merge._hold_waited)
    return released, state


def test_pop_ready_releases_what_the_plain_rules_release():
    for seed in range(400):
        steps = _random_session(seed)
        for hold_unseen in (False, True):
            for use_seen in (False, True):
                expected = _play(ReferenceMerge, steps, hold_unseen, use_seen)
                assert _play(EventTimeMerge, steps, hold_unseen, use_seen) == expected, (seed, hold_unseen, use_seen)
