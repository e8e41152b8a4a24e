"""The static-buffer update (clmae.train.graph): on a CPU, train_step's weights and losses bit for bit."""

import shutil

import pytest
import torch
from conftest import tiny_pretrainer
from test_train_trainer import tiny_config

from clmae.data import DeviceImages, GlobalBatchSampler, PretrainingData
from clmae.train import build_optimizers, train_step, trainer
from clmae.train.batches import EpochBatches
from clmae.train.checkpoint import checkpoint_path, load_checkpoint
from clmae.train.graph import StaticUpdate
from clmae.train.schedule import set_lr

pytestmark = pytest.mark.usefixtures("one_thread")

STEPS, EPOCHS, BATCH, ACCUM = 4, 5, 4, 2  # 20 updates of 2 micro-batches of 4 images
LAMS = (1.0, 0.6, 0.2, -0.6, -1.0)  # one per epoch, as the curriculum changes it


def _lr(step: int) -> float:
    return 1e-3 * (step + 1) / 7  # a different, inexact double every update


def _batches(device: str = "cpu") -> EpochBatches:
    # 32 x 32 uint8 images served augmented at 28 px: the gather, crop, resize and flip are all in the update
    images = torch.randint(0, 256, (STEPS * BATCH * ACCUM, 1, 32, 32), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(3))  # fmt: skip
    held = DeviceImages(images, (0.3,), (0.35,), 28, augment=True)
    data = PretrainingData(held, held, held.mean, held.std, "random")
    return EpochBatches(data, GlobalBatchSampler(held, BATCH, ACCUM, seed=5), device, 28, 1)


def _model(method):
    model = tiny_pretrainer(method, depth=1)
    return model, build_optimizers(model, 1e-3)


@pytest.mark.parametrize("method", ["clmae", "mae"])
def test_static_update_equals_train_step_bit_for_bit_for_20_updates(method):
    batches = _batches()
    eager, eager_opts = _model(method)
    eager_stats, step = [], 0
    for epoch, lam in enumerate(LAMS):
        for s, (micro, _) in enumerate(batches.epoch(epoch)):
            set_lr(eager_opts, _lr(step))
            gens = batches.mask_generators(epoch, s) if method == "mae" else None
            eager_stats.append(train_step(eager, micro, lam, *eager_opts, generator=gens))
            step += 1

    static_model, static_opts = _model(method)
    update = StaticUpdate(static_model, static_opts, batches.data.dataset, BATCH, ACCUM, STEPS * ACCUM)
    static_stats, step = [], 0
    for epoch, lam in enumerate(LAMS):
        for s, (micro, indices) in enumerate(update.epoch(batches.epoch_plan(epoch), lam)):
            assert micro is None and len(indices) == ACCUM
            seeds = batches.mask_seeds(epoch, s) if method == "mae" else None
            static_stats.append({k: v.clone() for k, v in update(_lr(step), seeds).items() if k in eager_stats[0]})
            step += 1

    assert step == len(eager_stats) == 20 and not update.graphed
    keys = {"mae_loss"} | ({"masker_loss", "rec", "gauss", "kl", "div", "score_mean"} if method == "clmae" else set())
    assert set(eager_stats[0]) == keys
    for a, b in zip(eager_stats, static_stats):
        assert all(torch.equal(a[k], b[k]) for k in keys), (a, b)
    assert len({float(s["mae_loss"]) for s in eager_stats}) > 10  # training moved: 20 distinct losses, not one
    for (name, p), q in zip(eager.named_parameters(), static_model.parameters()):
        assert torch.equal(p, q), name
    for opt, other in zip(eager_opts, static_opts):
        if opt is not None:
            for p, q in zip(opt.param_groups[0]["params"], other.param_groups[0]["params"]):
                assert torch.equal(opt.state[p]["exp_avg_sq"], other.state[q]["exp_avg_sq"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("method", ["clmae", "mae"])
def test_cuda_graph_replays_give_the_eager_losses_within_bf16_rounding(method):
    from clmae.train.graph import WARMUP_UPDATES
    from tools.zoo.calibrate import BF16_RTOL, first_difference

    batches = _batches("cuda")
    runs = []
    for graphed in (False, True):
        model, opts = _model(method)
        model.cuda()
        opts = build_optimizers(model, 1e-3)  # after the move: fused AdamW
        update = StaticUpdate(model, opts, batches.data.dataset, BATCH, ACCUM, STEPS * ACCUM, graph=graphed)
        losses, step = [], 0
        for epoch, lam in enumerate(LAMS[:2]):
            for s, _ in update.epoch(batches.epoch_plan(epoch), lam):
                seeds = batches.mask_seeds(epoch, s) if method == "mae" else None
                stats = update(_lr(step), seeds)
                losses.append([float(stats[k]) for k in ("mae_loss", "masker_loss") if k in stats])
                step += 1
        assert update.graphed == graphed and (not graphed or update.calls > WARMUP_UPDATES + 1)
        runs.append(losses)
    assert first_difference(*runs, BF16_RTOL) is None, runs


def test_its_indices_are_those_the_eager_batches_read_and_its_checkpoints_are_plain():
    batches = _batches()
    model, opts = _model("clmae")
    update = StaticUpdate(model, opts, batches.data.dataset, BATCH, ACCUM, STEPS * ACCUM)
    sampler = batches.sampler
    sampler.set_epoch(1, 1)
    expected = [i for i, _ in sampler]  # the DataLoader path's indices of epoch 1 from update 1 on
    got = []
    for _, indices in update.epoch(batches.epoch_plan(1, first=1), 0.5):
        got += [int(i) for index in indices for i in index]
    assert got == expected and len(got) == (STEPS - 1) * ACCUM * BATCH
    update(2.5e-4)
    assert update.lam.item() == 0.5 and update.lr.item() == 2.5e-4
    saved = opts[0].state_dict()["param_groups"][0]
    assert saved["lr"] == 2.5e-4 and isinstance(saved["lr"], float) and saved["capturable"] is False
    assert opts[0].param_groups[0]["lr"] is update.lr  # the live optimizer still reads the tensor


def test_mae_needs_one_mask_seed_per_micro_batch():
    batches = _batches()
    model, opts = _model("mae")
    update = StaticUpdate(model, opts, batches.data.dataset, BATCH, ACCUM, STEPS * ACCUM)
    next(update.epoch(batches.epoch_plan(0), 1.0))
    with pytest.raises(ValueError, match="needs 2 mask seeds"):
        update(1e-3, [7])


def test_a_plan_longer_than_its_buffers_is_refused():
    batches = _batches()
    model, opts = _model("clmae")
    update = StaticUpdate(model, opts, batches.data.dataset, BATCH, ACCUM, 2)
    with pytest.raises(ValueError, match="does not fit 2 rows"):
        next(update.epoch(batches.epoch_plan(0), 1.0))


@pytest.mark.parametrize("method", ["clmae", "mae"])
def test_cuda_graph_option_trains_as_the_eager_loop_and_resumes_bit_exactly(tmp_path, method, capsys):
    common = {"method": method, "data": "fmnist-sample", "augment": True, "epoch_size": 48, "batch_size": 8,
              "save_every_steps": 4, "log_every": 3, "mask_probe": 8}  # fmt: skip
    eager = trainer.train(tiny_config(tmp_path / "eager", **common))
    straight = trainer.train(tiny_config(tmp_path / "a", cuda_graph=True, **common))
    assert "cuda_graph: not used" not in capsys.readouterr().out  # device-held data: the static update ran
    mid = checkpoint_path(tmp_path / "a", 1, 8)  # 2 updates into the second epoch (6 updates each)
    (tmp_path / "b").mkdir()
    shutil.copy(mid, tmp_path / "b" / mid.name)
    resumed = trainer.train(tiny_config(tmp_path / "b", cuda_graph=True, **common), resume="auto")
    assert eager["step"] == straight["step"] == resumed["step"] == 12
    final = [load_checkpoint(r["checkpoint"])["model"] for r in (eager, straight, resumed)]
    assert all(torch.equal(final[0][k], f[k]) for f in final[1:] for k in final[0])
    assert eager["history"] == [{**h, "seconds": e["seconds"], "images_per_s": e["images_per_s"]}
                                for h, e in zip(straight["history"], eager["history"])]  # fmt: skip
    assert straight["history"][-1]["mae_loss"] == resumed["history"][-1]["mae_loss"]


def test_cuda_graph_on_files_says_why_it_is_not_used(tmp_path, capsys):
    from PIL import Image

    (tmp_path / "images").mkdir()
    for i in range(8):
        Image.new("L", (28, 28), 16 * i).save(tmp_path / "images" / f"{i}.png")
    trainer.train(tiny_config(tmp_path / "run", data=str(tmp_path / "images"), epochs=1, cuda_graph=True))
    out = capsys.readouterr().out
    assert "cuda_graph: not used, the data is not held on the device" in out


# The comparison call's choice of update path (tools/zoo): made-up calibration records for every branch.


def _record(rate, losses, graph=None):
    return {"images_per_s": rate, "losses": losses, **({} if graph is None else {"graph": graph})}


LOSSES = [[1.0, 0.5], [0.9, 0.4], [0.8, 0.3]]


def test_first_difference_uses_a_relative_bf16_tolerance():
    from tools.zoo.calibrate import first_difference

    assert first_difference([[1.0]], [[1.019]], 0.02) is None  # 1.9 % off: within
    assert "update 1" in first_difference([[1.0]], [[1.021]], 0.02)  # 2.1 % off: beyond
    assert "update 2" in first_difference([[1.0], [-2.0]], [[1.0], [-2.05]], 0.02)  # 2.5 % of 2
    assert first_difference([[1.0]], [[float("nan")]], 0.02) is not None
    assert "recorded" in first_difference([[1.0], [1.0]], [[1.0]], 0.02)


def test_the_graphed_path_is_chosen_only_when_it_ran_agrees_and_is_faster():
    from tools.zoo.calibrate import choose_path

    equal = {"images_per_s": 900.0, "losses": [[v * 1.001 for v in row] for row in LOSSES], "error": None}
    # two processes (all planned runs at once): the slowest of each path counts
    got = choose_path([_record(500.0, LOSSES, equal), _record(450.0, LOSSES, {**equal, "images_per_s": 800.0})])
    assert (got["path"], got["images_per_s"], got["eager_images_per_s"]) == ("graph", 800.0, 450.0)
    assert got["why"].startswith("graph: 800 images/s per run against eager 450")

    slower = choose_path([_record(500.0, LOSSES, {**equal, "images_per_s": 400.0})])
    assert (slower["path"], slower["images_per_s"]) == ("eager", 500.0)
    assert slower["why"] == "eager: graphed 400 images/s per run is not faster than eager 500"

    off = [[1.0, 0.5], [0.9, 0.45], [0.8, 0.3]]  # update 2's masker loss 12.5 % off
    differs = choose_path([_record(500.0, LOSSES, equal), _record(500.0, LOSSES, {**equal, "losses": off})])
    assert differs["path"] == "eager" and "differ" in differs["why"] and "update 2" in differs["why"]

    fails = choose_path([_record(500.0, LOSSES, {"error": "capture: operation not permitted"}), _record(510.0, LOSSES)])
    assert fails["path"] == "eager" and fails["images_per_s"] == 500.0 and "not measured" in fails["why"]
    fails = choose_path([_record(500.0, LOSSES, {"error": "capture: operation not permitted"})])
    assert fails["why"] == "eager: the graphed update failed (capture: operation not permitted)"
    assert "\n" not in fails["why"] and fails["graph_images_per_s"] is None


@pytest.mark.parametrize(
    ("kind", "path"), [("faster", "graph"), ("slower", "eager"), ("differs", "eager"), ("fails", "eager")]
)
def test_the_schedule_trains_with_the_path_the_calibration_chose(monkeypatch, tmp_path, kind, path):
    import argparse

    from tools.zoo import fmnist
    from tools.zoo.calibrate import choose_path

    def calibrate(args, methods, batch, out, deadline):  # 12 runs at once, 500 eager images/s per run
        eager = _record(500.0, LOSSES)
        return choose_path([{**eager, "graph": fmnist._made_up_graph(eager, kind)}])

    monkeypatch.setattr(fmnist, "calibrate", calibrate)
    monkeypatch.setattr(fmnist, "_train_images", lambda spec: 1000)
    values = {"data": "fmnist-sample", "batch_size": 256, "max_batch_size": 1024, "train_seconds": 100.0}
    values.update(safety=1.0, min_epochs=50, max_epochs=200, min_seeds=3, max_seeds=5, no_diagnostics=False)
    args = argparse.Namespace(**values, fallback_epochs=20)
    choice = fmnist.choose_schedule(args, tmp_path, 1e12)
    rate = 1000.0 if path == "graph" else 500.0  # made-up graphed records run at twice the eager rate
    assert (choice["path"], choice["images_per_s_per_run"], choice["epochs"]) == (path, rate, rate * 100 / 1000)
    assert choice["calibration"][256]["path"] == path and choice["why"].startswith(path + ":")
    args.base_lr, args.device, args.mask_probe, args.override = 1e-3, "cpu", 0, []
    command = fmnist.train_command(args, "clmae", 0, 2, tmp_path / "run", 256, None, choice["path"] == "graph")
    assert ("cuda_graph=true" in command) == (path == "graph")


def test_the_calibration_child_records_both_paths_and_the_cpu_never_graphs(tmp_path):
    from tools.zoo import fmnist
    from tools.zoo.calibrate import choose_path, time_updates

    tiny = {"embed_dim": 32, "depth": 1, "num_heads": 2, "decoder_embed_dim": 32, "decoder_depth": 1,
            "decoder_num_heads": 2, "masker_depth": 1}  # fmt: skip
    eager = time_updates("mae", 4, "cpu", 1, 3, model_kwargs=tiny)
    static = time_updates("mae", 4, "cpu", 1, 3, graph=True, model_kwargs=tiny)
    assert len(eager["losses"]) == 3 and eager["losses"] == static["losses"]  # bit for bit on a CPU
    assert static["graphed"] is False and static["error"] == "no CUDA graph on cpu"
    out = tmp_path / "rate.json"
    fmnist.calibrate_child("clmae", 4, "cpu", 1, out, probe=4, warmup=1)
    import json

    record = json.loads(out.read_text())
    assert record["graph"] == {"error": "CUDA graphs need a CUDA device, not cpu"} and len(record["losses"]) == 1
    assert choose_path([record])["why"].startswith("eager: the graphed update failed (CUDA graphs need")


def test_the_plan_is_in_the_summary_before_any_run_trains(tmp_path, capsys):
    import json

    from tools.zoo import fmnist

    out, back = tmp_path / "zoo", tmp_path / "back"
    argv = ["--data", "fmnist-sample", "--device", "cpu", "--out", str(out), "--deliver", str(back), "--epochs", "3"]
    argv += ["--train-deadline", "0", "--deadline", "0", "--batch-size", "64", "--cuda-graph", "--no-diagnostics"]
    fmnist.main(argv)
    printed = capsys.readouterr().out
    assert "plan: graph updates, batch 64, 3 epochs, seeds [0, 1, 2] (6 runs at once), training unknown" in printed
    assert printed.index("plan: ") < printed.index("training 6 runs")
    plan = json.loads((back / "summary.json").read_text())["plan"]
    assert plan == {"path": "graph", "why": "graph: --cuda-graph", "batch_size": 64, "epochs": 3,
                    "seeds": [0, 1, 2], "runs": 6, "expected_train_seconds": None}  # fmt: skip
