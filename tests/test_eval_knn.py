"""kNN votes against hand-computed cases, an independent brute force, and the known raw-pixel Fashion-MNIST number."""

import math

import pytest
import torch

from clmae.data import DEBIAN_ROOT, load_fashion_mnist
from clmae.eval.knn import knn_majority_vote, knn_weighted_scores, nearest_neighbours, topk_accuracy

needs_fmnist = pytest.mark.skipif(
    not (DEBIAN_ROOT / "train-images-idx3-ubyte.gz").exists(),
    reason="Fashion-MNIST not installed: apt-get install dataset-fashion-mnist",
)


def test_euclidean_neighbours_and_distances_by_hand():
    train = torch.tensor([[0.0, 0.0], [3.0, 4.0], [10.0, 0.0], [1.0, 1.0]])
    test = torch.tensor([[0.0, 0.0], [3.0, 3.0]])
    dist, idx = nearest_neighbours(train, test, k=2)
    # (0,0): itself (0), then (1,1) at sqrt(2). (3,3): (3,4) at 1, then (1,1) at sqrt(8).
    assert idx.tolist() == [[0, 3], [1, 3]]
    torch.testing.assert_close(dist, torch.tensor([[0.0, math.sqrt(2)], [1.0, math.sqrt(8)]]))


def test_majority_vote_by_hand():
    # 1-D features; labels: 0, 0, 1, 1, 1, 2.
    train = torch.tensor([[0.0], [1.0], [2.0], [10.0], [11.0], [30.0]])
    labels = torch.tensor([0, 0, 1, 1, 1, 2])
    test = torch.tensor([[0.4], [10.2], [25.0]])
    votes = knn_majority_vote(train, labels, test, num_classes=3, k=3)
    # 0.4 -> 0 (0.4), 1 (0.6), 2 (1.6): labels 0, 0, 1.
    # 10.2 -> 10, 11, 2: labels 1, 1, 1.  25 -> 30 (5), 11 (14), 10 (15): labels 2, 1, 1.
    assert votes.tolist() == [[2, 1, 0], [0, 3, 0], [0, 2, 1]]
    assert votes.argmax(1).tolist() == [0, 1, 1]


def test_majority_vote_tie_goes_to_the_smallest_class_index():
    # k = 2: the nearest neighbour is class 2, the second class 1; one vote each -> class 1 (smaller index) wins,
    # although class 2 is nearer (scikit-learn's rule).
    train = torch.tensor([[0.0], [1.0], [5.0]])
    labels = torch.tensor([2, 1, 0])
    votes = knn_majority_vote(train, labels, torch.tensor([[0.1]]), num_classes=3, k=2)
    assert votes.tolist() == [[0, 1, 1]]
    assert topk_accuracy(votes, torch.tensor([1]), (1,))["top1"] == 1.0
    assert topk_accuracy(votes, torch.tensor([2]), (1,))["top1"] == 0.0


def test_weighted_vote_by_hand():
    t = 0.5
    # Cosine similarities of (2, 0) to the training rows: (1,0) -> 1, (0,1) -> 0, (1,1) -> 1/sqrt(2), (-1,0) -> -1.
    train = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0]])
    labels = torch.tensor([0, 1, 1, 0])
    scores = knn_weighted_scores(train, labels, torch.tensor([[2.0, 0.0]]), num_classes=2, k=3, temperature=t)
    # k = 3 keeps sims 1 (class 0), 1/sqrt(2) (class 1) and 0 (class 1); the -1 row is not a neighbour.
    expected = torch.tensor([[math.exp(1 / t), math.exp(1 / math.sqrt(2) / t) + math.exp(0 / t)]])
    torch.testing.assert_close(scores, expected)
    assert scores.argmax(1).item() == 0  # e^2 = 7.39 beats e^1.41 + 1 = 5.11


def test_weighted_vote_outvotes_a_nearer_single_neighbour():
    # Two class-1 rows at similarity 0.8 beat one class-0 row at similarity 0.9 when T is large (weights ~ equal),
    # but not when T is small (the nearest dominates): exp(0.9/T) vs 2 exp(0.8/T) crosses at T = 0.1 / ln 2.
    train = torch.tensor([[0.9, math.sqrt(1 - 0.81)], [0.8, 0.6], [0.8, -0.6]])
    labels = torch.tensor([0, 1, 1])
    test = torch.tensor([[1.0, 0.0]])
    big = knn_weighted_scores(train, labels, test, 2, k=3, temperature=1.0)
    small = knn_weighted_scores(train, labels, test, 2, k=3, temperature=0.05)
    assert big.argmax(1).item() == 1 and small.argmax(1).item() == 0
    torch.testing.assert_close(big, torch.tensor([[math.exp(0.9), 2 * math.exp(0.8)]]))


def test_weighted_vote_tie_goes_to_the_smallest_class_index():
    # (1, 1) is equally similar to (1, 0) (class 1) and (0, 1) (class 0): equal scores, class 0 is ranked first.
    train = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    scores = knn_weighted_scores(train, torch.tensor([1, 0]), torch.tensor([[1.0, 1.0]]), 2, k=2, temperature=0.07)
    assert scores[0, 0] == scores[0, 1]
    assert topk_accuracy(scores, torch.tensor([0]), (1,))["top1"] == 1.0
    assert topk_accuracy(scores, torch.tensor([1]), (1,))["top1"] == 0.0


def test_topk_accuracy_by_hand():
    scores = torch.tensor([[0.1, 0.5, 0.4], [0.7, 0.2, 0.1], [0.2, 0.3, 0.5]])
    labels = torch.tensor([2, 0, 0])
    acc = topk_accuracy(scores, labels, (1, 2, 3, 5))
    assert acc == {"top1": 1 / 3, "top2": 2 / 3, "top3": 1.0}  # top5 is left out: only 3 classes


@pytest.mark.parametrize("chunk_size", [7, 1024])
def test_neighbours_match_an_independent_brute_force(chunk_size):
    g = torch.Generator().manual_seed(0)
    train, test = torch.randn(200, 16, generator=g) * 3 + 5, torch.randn(50, 16, generator=g) * 3 + 5
    dist, idx = nearest_neighbours(train, test, k=5, chunk_size=chunk_size)
    ref = torch.cdist(test.double(), train.double())
    ref_d, ref_i = ref.sort(1)
    assert torch.equal(idx, ref_i[:, :5])
    torch.testing.assert_close(dist.double(), ref_d[:, :5], atol=1e-4, rtol=1e-4)
    _, cidx = nearest_neighbours(train, test, k=5, metric="cosine", chunk_size=chunk_size)
    cos = torch.nn.functional.cosine_similarity(test.double()[:, None], train.double()[None], dim=2)
    assert torch.equal(cidx, cos.sort(1, descending=True).indices[:, :5])


def test_bad_inputs_say_what_is_wrong():
    x, y = torch.randn(4, 3), torch.tensor([0, 1, 0, 1])
    with pytest.raises(ValueError, match="k must be between 1"):
        knn_majority_vote(x, y, x, 2, k=5)
    with pytest.raises(ValueError, match="same D"):
        knn_majority_vote(x, y, torch.randn(2, 4), 2, k=1)
    with pytest.raises(ValueError, match="labels must lie in"):
        knn_weighted_scores(x, torch.tensor([0, 1, 2, 1]), x, 2, k=1)
    with pytest.raises(ValueError, match="metric"):
        nearest_neighbours(x, x, 1, metric="manhattan")


@pytest.mark.slow
@needs_fmnist
@pytest.mark.integration
def test_raw_pixel_knn_on_fashion_mnist_lands_where_it_is_known_to():
    # k = 5 Euclidean kNN on raw Fashion-MNIST pixels is commonly reported at about 85-86 %; measured here: 0.8554.
    train, train_y = load_fashion_mnist("train")
    test, test_y = load_fashion_mnist("test")
    votes = knn_majority_vote(train.flatten(1).float() / 255, train_y, test.flatten(1).float() / 255, 10, k=5)
    acc = topk_accuracy(votes, test_y, (1,))["top1"]
    assert 0.84 <= acc <= 0.87, acc
