"""End to end on real data: a few CL-MAE / MAE iterations on Fashion-MNIST, and the bundled demo."""

import json

import pytest
import torch
from PIL import Image

import clmae
from clmae.cli import main
from clmae.data import DEBIAN_ROOT, SAMPLE_ROOT, load_fashion_mnist, to_float
from clmae.demo import run_demo, run_train_demo
from clmae.viz import ROW_LABEL_WIDTH, SCALE_WIDTH, TITLE_HEIGHT

needs_fmnist = pytest.mark.skipif(
    not (DEBIAN_ROOT / "train-images-idx3-ubyte.gz").exists(),
    reason="Fashion-MNIST not installed: apt-get install dataset-fashion-mnist",
)


@needs_fmnist
@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.parametrize("method", ["clmae", "mae"])
def test_a_few_real_iterations_lower_the_mae_loss(method, one_thread):
    images, _ = load_fashion_mnist("train")
    test_images, _ = load_fashion_mnist("test")
    train, held_out = to_float(images[:512]), to_float(test_images[:256])
    torch.manual_seed(0)
    model = clmae.create_pretraining_model(
        "vit_tiny_patch4_28",
        method,
        embed_dim=64,
        depth=4,
        num_heads=4,
        decoder_embed_dim=64,
        decoder_depth=2,
        decoder_num_heads=4,
        masker_depth=2,
    )
    opts = clmae.build_optimizers(model, lr=1e-3)

    def held_out_loss() -> float:
        with torch.no_grad():
            return model.forward_mae(held_out, torch.Generator().manual_seed(0))["loss"].item()

    before = held_out_loss()
    epochs = 3
    for epoch in range(epochs):  # 24 iterations over the whole curriculum, partner to adversary
        lam = clmae.curriculum_factor(epoch, epochs)
        order = torch.randperm(len(train))
        for i in range(0, len(train), 64):
            stats = clmae.train_step(model, train[order[i : i + 64]], lam, *opts)
            assert all(torch.isfinite(v) for v in stats.values())
    # Measured on a 2-core CPU: CL-MAE 3.42 -> 0.90, MAE 2.35 -> 0.71 (images normalised to unit variance).
    assert held_out_loss() < 0.5 * before


def test_fashion_mnist_sample_and_idx_errors(tmp_path):
    images, labels = load_fashion_mnist("test", root=SAMPLE_ROOT)
    assert images.shape == (1000, 28, 28) and images.dtype == torch.uint8 and labels.shape == (1000,)
    assert set(labels.tolist()) == set(range(10))
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist("train", root=tmp_path)
    good = (SAMPLE_ROOT / "t10k-labels-idx1-ubyte.gz").read_bytes()
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(good[: len(good) // 2])  # truncated gzip
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(good)
    with pytest.raises(ValueError, match="corrupt or truncated"):
        load_fashion_mnist("test", root=tmp_path)
    (tmp_path / "t10k-images-idx3-ubyte.gz").unlink()
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03" + (5).to_bytes(4, "big") + bytes(8 + 100))
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_fashion_mnist("test", root=tmp_path)


@pytest.mark.slow
@pytest.mark.integration
def test_demo_knn_of_bundled_weights_matches_the_eval_harness(tmp_path, one_thread):
    from clmae.eval import run_eval

    metrics = run_demo(tmp_path, baseline=None)
    assert metrics["train_images"] == metrics["test_images"] == 1000
    # The harness reads the same images through PIL transforms and its own feature cache: an independent path.
    for name, spec in (("vit_t_fmnist", "vit_t_fmnist"), ("raw pixels", "raw-pixels")):
        harness = run_eval("knn", spec, "fmnist-sample", {"cache": False, "device": "cpu"}).metrics
        assert metrics["knn_top1"][name]["reference"] == pytest.approx(harness["reference"]["top1"], abs=0.003)
        assert metrics["knn_top1"][name]["weighted"] == pytest.approx(harness["weighted"]["top1"], abs=0.003)
    with Image.open(tmp_path / "masks.png") as picture:  # 10 images x 5 labelled rows
        assert picture.size == (
            ROW_LABEL_WIDTH + 10 * (28 * 4 + 2) + 2 + SCALE_WIDTH,
            TITLE_HEIGHT + 5 * (28 * 4 + 2) + 2,
        )
    assert json.loads((tmp_path / "metrics.json").read_text())["knn_top1"] == metrics["knn_top1"]


@pytest.mark.slow
@pytest.mark.integration
def test_train_demo_writes_masks_and_metrics(tmp_path, one_thread):
    metrics = run_train_demo(tmp_path, epochs=2, batch_size=50, num_images=100)
    assert [h["lambda"] for h in metrics["history"]] == [1.0] * 2 + [-1.0] * 2
    with Image.open(tmp_path / "masks.png") as picture:  # 10 images x 5 labelled rows
        assert picture.size == (
            ROW_LABEL_WIDTH + 10 * (28 * 4 + 2) + 2 + SCALE_WIDTH,
            TITLE_HEIGHT + 5 * (28 * 4 + 2) + 2,
        )
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert len(saved["history"]) == 4 and saved["arch"] == "vit_tiny_patch4_28"


def test_cli_lists_models(capsys):
    assert main(["list", "*patch4_28"]) == 0
    out = capsys.readouterr().out
    assert "vit_tiny_patch4_28" in out and "vit_base_patch16_224" not in out
