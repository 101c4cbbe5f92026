"""The event-time merge: deterministic order, bounded waiting, invalid records never block."""

from __future__ import annotations

import random

from stream.merge import EventTimeMerge, Item

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
