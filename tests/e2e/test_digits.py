"""Acceptance: the digits scenario (examples/digits) on the real broker, with fixed seeds.

A multiclass model serves 1,797 PNG digits over 10 simulated days and learns from 20 labels a
day; the labels it asks for (margin sampling) make it more accurate over the last third of the
stream than 20 random labels a day, every image gets a prediction, and the checkpoint stays small.
A scikit-learn model trained offline on the first 3 days and imported keeps its accuracy from the
first image and, after the images shift, recovers where the same model frozen does not.
"""

from __future__ import annotations

import pytest

pytest.importorskip("sklearn", reason="the digits example needs the 'examples' extra")
pytest.importorskip("PIL", reason="the digits example needs the 'examples' extra")
pytest.importorskip("matplotlib", reason="the digits example needs the 'examples' extra")

from examples.digits.run import format_table, plot, run  # noqa: E402

pytestmark = pytest.mark.broker

BUDGET = 20
DAYS = 10


def test_requested_labels_beat_random_labels_at_the_same_budget(test_config, broker_bootstrap, tmp_path):
    results, batch = run(test_config, broker_bootstrap, days=DAYS, budget=BUDGET, seed=7,
                         workdir=tmp_path, log=lambda message: None)
    table = format_table(results, BUDGET, batch)
    print("\n" + table)
    by_name = {r.name: r for r in results}
    requested, random_, everything = by_name["requested"], by_name["random"], by_name["all"]

    # The acceptance claim, with fixed seeds: asking beats chance at the same budget.
    assert requested.last_third_accuracy > random_.last_third_accuracy, table
    assert everything.last_third_accuracy > requested.last_third_accuracy > 0.8, table

    for r in results:
        n = len(r.correct)
        assert n == 1797
        assert r.counts["predicted"] == r.counts["predictions"] == n  # every image got a prediction
        assert r.counts["invalid"] == 0
        assert r.versions == sorted(r.versions) and r.versions[-1] > 0  # served by a learning model
        assert r.checkpoint_bytes > 0
    # Within the budget, every day; all of it used after the first day.
    for r in (requested, random_):
        assert max(r.requests_per_day) <= BUDGET and min(r.requests_per_day[1:]) == BUDGET, r.requests_per_day
        assert r.labels_used == sum(r.requests_per_day)
    assert everything.labels_used == 1797
    # Served while learning: each day's predictions come from a model that learned more labels.
    first_version_of_day = {d: v for d, v in reversed(list(zip(requested.day_of, requested.versions)))}
    assert [first_version_of_day[d] for d in range(DAYS)] == [BUDGET * d for d in range(DAYS)]

    # The checkpoint is reported, and is small next to a pickled batch model of the same data.
    print({r.name: r.checkpoint_bytes for r in results}, batch)
    assert requested.checkpoint_bytes < 200 * 1024
    assert requested.checkpoint_bytes < min(batch.values())

    out = plot(results, tmp_path / "digits.png", BUDGET)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_an_imported_offline_model_keeps_learning_where_the_frozen_one_decays(test_config, broker_bootstrap,
                                                                               tmp_path):
    """The README's "from a model trained offline" numbers: frozen, imported and learning, empty start.

    An SGDClassifier trained offline on days 1-3 and pickled serves days 4-10; from day 7 every
    image is shifted one pixel right. Imported into riverbed, it keeps the offline accuracy where
    an empty model starts from nothing, and after the shift it recovers where the frozen one stays
    down.
    """
    from examples.digits.offline import format_offline_table, plot_offline, run_offline_comparison
    from examples.digits.run import load_images, schedule_days

    comparison = run_offline_comparison(test_config, broker_bootstrap, schedule_days(load_images(7), DAYS),
                                        tmp_path, budget=BUDGET, log=lambda message: None)
    table = format_offline_table(comparison)
    print("\n" + table)
    frozen, imported, empty = (comparison.result(name) for name in ("frozen", "imported", "empty"))
    before = {r.name: comparison.accuracy(r.name, after_change=False) for r in comparison.results}
    after = {r.name: comparison.accuracy(r.name, after_change=True) for r in comparison.results}

    # On the first days after the import: the offline model's accuracy, from the first image.
    assert before["imported"] > 0.9 and before["imported"] > before["empty"] + 0.3, table
    assert all(i > e for i, e in zip(imported.daily_accuracy()[:3], empty.daily_accuracy()[:3])), table
    # The shift: the frozen model decays and stays down; the learning ones recover from the labels.
    assert before["frozen"] > 0.9 and after["frozen"] < 0.5, table
    assert after["imported"] > after["frozen"] + 0.05, table
    assert imported.daily_accuracy()[-1] > frozen.daily_accuracy()[-1] + 0.1, table
    assert empty.daily_accuracy()[-1] > frozen.daily_accuracy()[-1] + 0.1, table

    assert comparison.offline_rows == 540 and len(imported.correct) == len(frozen.correct) == 1797 - 540
    for r in (imported, empty):
        assert r.counts["predicted"] == r.counts["predictions"] == len(r.correct)  # every image served
        assert max(r.requests_per_day) <= BUDGET and r.labels_used == sum(r.requests_per_day)
    # Predictions' version continues from the 540 offline rows; the empty model's from 0.
    assert imported.versions[0] == 540 and imported.versions == sorted(imported.versions), imported.versions[-1]
    assert empty.versions[0] == 0 and frozen.versions == [540] * len(frozen.versions)
    # Sizes: the pickle and both checkpoints stay tens of KB.
    assert comparison.model_file_bytes < 16 * 1024
    assert imported.checkpoint_bytes < 100 * 1024 and empty.checkpoint_bytes < 100 * 1024

    out = plot_offline(comparison, tmp_path / "digits-offline.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
