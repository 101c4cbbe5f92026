"""Regenerate the README's images from a real run: ``.venv/bin/python docs/make_images.py``.

Starts (or reuses) the local test broker on 127.0.0.1:19092, replays ``sea_drift`` (20,000
events, the concept changes at event 10,000, labels 50 events late) into a processor serving a
Hoeffding tree with a logistic-regression challenger, then writes

* ``docs/status-page.png``: the status page (``GET /``) as headless Chromium renders it, with
  80% of the replay processed;
* ``docs/report.png``: ``riverbed report`` of the final checkpoint.

Needs Debian's ``chromium`` (``make system-deps``). Nothing here runs in the test suite; the
tests in ``tests/test_operations.py`` check the same page and plot on a smaller replay.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stream.devtools.broker import LocalBroker  # noqa: E402
from stream.config import load_config  # noqa: E402
from stream.devtools.datasets import open_dataset  # noqa: E402
from stream.devtools.replay import produce, schedule  # noqa: E402
from stream.connect.topics import create_topics  # noqa: E402
from tests.conftest import TEST_CONFIG, fresh_config, write_config  # noqa: E402
from tests.test_operations import LiveProcessor, run_chromium, wait_for  # noqa: E402

N, DRIFT_AT, DELAY = 20_000, 10_000, 50


def main() -> int:
    chromium = shutil.which("chromium")
    if chromium is None:
        print("Debian's chromium is needed: make system-deps", file=sys.stderr)
        return 1
    base = load_config(TEST_CONFIG, env={})
    broker = LocalBroker(base)
    broker.start()
    tmp = Path(tempfile.mkdtemp(prefix="riverbed-docs-"))
    cfg = fresh_config(
        base, broker.bootstrap, tmp / "state",
        model={"preset": "hoeffding_tree", "task": "binary", "metrics": ["accuracy", "logloss"], "window": 500},
        challengers={"models": [{"preset": "logreg"}], "metric": "accuracy", "margin": 0.01, "min_labels": 500},
        http={"enabled": True, "port": 0},
    )
    t = cfg.topics
    create_topics(broker.bootstrap, [t.events, t.labels, t.predictions, t.deadletter], 1)
    records = list(schedule(open_dataset("sea_drift", limit=N, drift_at=DRIFT_AT, seed=3).rows,
                            label_delay=DELAY, id_prefix="sea", interval_s=1.0))
    live = LiveProcessor(cfg)
    try:
        chunk = len(records) // 20 + 1
        shown = int(len(records) * 0.8)
        for i in range(0, shown, chunk):  # arrive over ten seconds: the page shows rates
            produce(broker.bootstrap, t, records[i:min(i + chunk, shown)], progress=False)
            time.sleep(0.6)
        url = f"http://127.0.0.1:{live.processor.http_port}/"
        shot = ROOT / "docs" / "status-page.png"
        result = run_chromium(chromium, tmp, f"--screenshot={shot}", "--window-size=1280,900", "--hide-scrollbars",
                              "--virtual-time-budget=5000", url)
        if result.returncode != 0:
            print(result.stderr.decode()[-2000:], file=sys.stderr)
            return 1
        print(f"wrote {shot}")
        produce(broker.bootstrap, t, records[shown:], progress=False)
        wait_for(lambda: live.error or live.processor.counts["joined"] >= N, 300, "the replay to be learned")
        if live.error:
            raise live.error
        wait_for(lambda: live.processor.last_checkpoint.meta["counts"]["joined"] >= N, 60, "the final checkpoint")
    finally:
        live.stop()
    config = write_config(cfg.replace(http={"enabled": False}), tmp / "riverbed.toml")
    subprocess.run([sys.executable, "-m", "stream", "--config", str(config), "report", "--out",
                    str(ROOT / "docs" / "report.png"),
                    "--title", f"sea_drift: concept change at event {DRIFT_AT:,}, labels {DELAY} events late"],
                   check=True, cwd=ROOT)
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
