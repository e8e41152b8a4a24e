import pytest

from clmae.train.metrics import MetricsLog, read_metrics

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")


def test_metrics_go_to_json_lines_and_tensorboard(tmp_path):
    log = MetricsLog(tmp_path)
    assert log.writer is not None  # tensorboard is installed (test extra)
    log.log({"epoch": 0, "mae_loss": 1.5, "lam": 1.0, "phase": "partner"}, step=10)
    log.log({"epoch": 0, "mae_loss": 0.5, "lam": 1.0, "phase": "partner"}, step=20)
    log.close()
    assert [r["mae_loss"] for r in read_metrics(tmp_path / "metrics.jsonl")] == [1.5, 0.5]
    events = event_accumulator.EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    scalars = events.Scalars("train/mae_loss")
    assert [(s.step, s.value) for s in scalars] == [(10, 1.5), (20, 0.5)]
    assert "train/phase" not in events.Tags()["scalars"]  # strings stay in the JSON lines only
