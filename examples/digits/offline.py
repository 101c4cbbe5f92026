"""The seed scenario told from a model trained offline: frozen, imported and learning, or empty.

The person riverbed is for already has a pickled classifier. This module plays that story on the
digits stream of :mod:`examples.digits.run`, with one change of the images partway:

1. **Offline training.** The images of the first ``offline_days`` days (all labelled: the user's
   history) train a scikit-learn ``SGDClassifier(loss="log_loss")`` on the 64 pixel features of
   :func:`examples.digits.transform.pixels`, which is pickled to a file, as the user has today.
2. **The remaining days** are served three ways, at the same label budget:

   - ``frozen``: the unpickled model predicts every image and never learns (no riverbed);
   - ``imported``: the same file, ``riverbed.import_model``-ed into a fresh state dir (version =
     the rows it was trained on, the pixel names as its column order), then the day-by-day loop
     of :func:`~examples.digits.run.run_strategy`: it serves every image and learns from the
     labels it asks for (margin sampling, ``budget`` a day);
   - ``empty``: riverbed from an empty ``softmax`` preset, as the strategies comparison does.
3. **A change in the images**: from ``change_day`` on, every image is shifted one pixel to the
   right (a camera or scanner that moved), same digits, same labels. The frozen model cannot
   follow; the two learning ones learn the new images from the labels they request.

Every random thing is seeded (the image order, the estimator's ``random_state``, the label
sampler), and the runs wait for the processor between steps, so a run is reproducible.
"""

from __future__ import annotations

import io
import pickle
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from examples.digits.run import Image, StrategyResult, run_strategy

#: Offline: days 1-3 (0-based 0..2) are the labelled history the model was trained on.
OFFLINE_DAYS = 3
#: From day 7 (0-based 6) on, every image is shifted one pixel to the right.
CHANGE_DAY = 6
#: What the offline training fits: ``learning_rate="adaptive"`` keeps the step at ``eta0`` while
#: the training loss improves (and ``partial_fit`` steps with ``eta0`` again); the default
#: ``"optimal"`` schedule made each online update noisier on this stream (see the README).
ESTIMATOR_PARAMS = {"loss": "log_loss", "learning_rate": "adaptive", "eta0": 0.1}
NAMES = ("frozen", "imported", "empty")


def shift_right(png: bytes) -> bytes:
    """The 8x8 image in ``png`` moved one pixel to the right (the left column becomes background)."""
    from PIL import Image as PILImage

    with PILImage.open(io.BytesIO(png)) as image:
        grey = image.convert("L")
    moved = PILImage.new("L", grey.size, color=0)
    moved.paste(grey.crop((0, 0, grey.size[0] - 1, grey.size[1])), (1, 0))
    buffer = io.BytesIO()
    moved.save(buffer, format="PNG")
    return buffer.getvalue()


def with_shift_from(days: list, change_day: int) -> list:
    """``days`` with every image of day ``change_day`` and later shifted (same id, label and time)."""
    return [
        day if d < change_day else [(Image(image.id, shift_right(image.png), image.label), ts) for image, ts in day]
        for d, day in enumerate(days)
    ]


def feature_rows(images: list[Image]) -> list[list[float]]:
    """Each image's 64 pixel features, exactly as riverbed's transform computes them, in column order."""
    from examples.digits.transform import PIXEL_NAMES, pixels

    rows = []
    for image in images:
        features = pixels({"image": image.png})
        rows.append([features[name] for name in PIXEL_NAMES])
    return rows


def train_offline(images: list[Image], seed: int = 0):
    """A scikit-learn ``SGDClassifier`` (:data:`ESTIMATOR_PARAMS`, ``random_state=seed``) fitted on ``images``."""
    from sklearn.linear_model import SGDClassifier

    model = SGDClassifier(**ESTIMATOR_PARAMS, random_state=seed)
    return model.fit(feature_rows(images), [image.label for image in images])


def save_model(model, path: Path) -> int:
    """Pickle ``model`` to ``path`` (what the user has today); returns the file's size in bytes."""
    path.write_bytes(pickle.dumps(model, protocol=5))
    return path.stat().st_size


def run_frozen(model_file: Path, days: list, offline_rows: int, budget: int) -> StrategyResult:
    """The pickled model, unpickled, predicting every image of ``days`` and never learning."""
    started = time.monotonic()
    model = pickle.loads(model_file.read_bytes())  # our own file, written by save_model
    images = [image for day in days for image, _ in day]
    predicted = model.predict(feature_rows(images))
    correct = [int(p) == image.label for p, image in zip(predicted, images)]
    day_of = [d for d, day in enumerate(days) for _ in day]
    return StrategyResult(
        name="frozen", strategy="none", preset=type(model).__name__, budget=budget, labels_used=0,
        requests_per_day=[0] * len(days), correct=correct, versions=[offline_rows] * len(images), day_of=day_of,
        checkpoint_bytes=model_file.stat().st_size, seconds=time.monotonic() - started,
        counts={"predicted": len(images)},
    )


@dataclass
class OfflineComparison:
    """Frozen, imported-and-learning and empty-start riverbed on the days after offline training.

    ``results`` are in :data:`NAMES` order; their ``day_of`` counts from the first streamed day,
    which is day ``offline_days + 1`` of the stream; ``change_day`` is in the same numbering.
    """

    offline_days: int
    offline_rows: int
    change_day: int
    budget: int
    model_file_bytes: int
    results: list[StrategyResult]

    def result(self, name: str) -> StrategyResult:
        """The result called ``name`` (one of :data:`NAMES`)."""
        return next(r for r in self.results if r.name == name)

    def accuracy(self, name: str, *, after_change: bool) -> float:
        """Accuracy of ``name``'s predictions before (``False``) or from (``True``) the change."""
        r = self.result(name)
        hits = [ok for ok, d in zip(r.correct, r.day_of) if (d >= self.change_day) == after_change]
        return sum(hits) / len(hits)


def run_offline_comparison(base_cfg, bootstrap: str, days: list, workdir: Path, *, budget: int = 20,
                           offline_days: int = OFFLINE_DAYS, change_day: int = CHANGE_DAY, seed: int = 0,
                           delay_h: float = 10.0, log=print) -> OfflineComparison:
    """Train offline on ``days[:offline_days]``, then serve the rest three ways (module docstring).

    ``days`` is :func:`~examples.digits.run.schedule_days` of the stream; ``change_day`` counts
    from the stream's first day, like ``offline_days``.
    """
    history = [image for day in days[:offline_days] for image, _ in day]
    streamed = with_shift_from(days, change_day)[offline_days:]
    model_file = workdir / "digits-sgd.pkl"
    workdir.mkdir(parents=True, exist_ok=True)
    file_bytes = save_model(train_offline(history, seed), model_file)
    log(f"trained SGDClassifier offline on {len(history)} images: {model_file} ({file_bytes} bytes)")
    results = [run_frozen(model_file, streamed, len(history), budget)]
    run_id = uuid.uuid4().hex[:8]
    for name, source in (("imported", model_file), ("empty", None)):
        log(f"running {name!r} ...")
        result = run_strategy(base_cfg, bootstrap, name, streamed, budget, workdir, delay_h=delay_h, run_id=run_id,
                              strategy="margin", model_file=source, model_version=len(history))
        log(f"  {name}: {result.labels_used} labels, accuracy {result.accuracy:.3f} in {result.seconds:.1f} s")
        results.append(result)
    return OfflineComparison(offline_days, len(history), change_day - offline_days, budget, file_bytes, results)


def format_offline_table(comparison: OfflineComparison) -> str:
    """The comparison as text: labels, accuracy before and after the change, sizes, accuracy per day."""
    c = comparison
    first = c.offline_days + 1
    last = first + len(c.results[0].daily_accuracy()) - 1
    change = first + c.change_day
    lines = [
        f"digits from a model trained offline: SGDClassifier on the {c.offline_rows} labelled images of days "
        f"1-{c.offline_days} (pickle {c.model_file_bytes / 1024:.1f} KB), then {len(c.results[0].correct)} "
        f"images over days {first}-{last}, budget {c.budget} labels/day; from day {change} every image is "
        "shifted one pixel right",
        "",
        f"{'model':<9} {'labels':>6} {f'days {first}-{change - 1}':>10} {f'days {change}-{last}':>10} "
        f"{'checkpoint':>11}   accuracy per day ({first}..{last})",
    ]
    for r in c.results:
        daily = " ".join(f"{a:.2f}" for a in r.daily_accuracy())
        size = f"{r.checkpoint_bytes / 1024:>8.1f} KB" if r.name != "frozen" else f"{'(file)':>5} {r.checkpoint_bytes / 1024:.1f} KB"
        lines.append(
            f"{r.name:<9} {r.labels_used:>6} {c.accuracy(r.name, after_change=False):>10.3f} "
            f"{c.accuracy(r.name, after_change=True):>10.3f} {size:>11}   {daily}"
        )
    return "\n".join(lines)


def plot_offline(comparison: OfflineComparison, path: Path) -> Path:
    """Accuracy per day of the three, with the offline days and the change marked; writes ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = comparison
    first = c.offline_days + 1
    fig, ax = plt.subplots(figsize=(8, 5.2), dpi=110)
    ax.axvspan(0.5, c.offline_days + 0.5, color="tab:green", alpha=0.08)
    ax.text(0.7, 0.9, f"offline training\n({c.offline_rows} labelled images)", fontsize=9, color="tab:green")
    ax.axvline(first + c.change_day - 0.5, color="tab:red", linestyle=":")
    ax.text(first + c.change_day - 0.4, 0.9, "from here: images\nshifted one pixel right", fontsize=9,
            color="tab:red")
    styles = {
        "frozen": ("tab:gray", "--s", "frozen offline model (never updated)"),
        "imported": ("tab:blue", "-o", "offline model imported into riverbed, learning"),
        "empty": ("tab:orange", "-^", "riverbed from an empty model"),
    }
    for r in c.results:
        color, style, label = styles[r.name]
        daily = r.daily_accuracy()
        after = c.accuracy(r.name, after_change=True)
        ax.plot(range(first, first + len(daily)), daily, style, color=color,
                label=f"{label}: {r.labels_used} labels, {after:.2f} after the shift")
    ax.set_xlim(0.5, first + len(c.results[0].daily_accuracy()) - 0.5)
    ax.set_xticks(range(1, first + len(c.results[0].daily_accuracy())))
    ax.set_xlabel("day")
    ax.set_ylabel("accuracy of the day's predictions")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.set_title(f"riverbed digits: a pickled model, frozen or learning from {c.budget} labels a day")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), fontsize=8.5, ncol=1, frameon=False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
