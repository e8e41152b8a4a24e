"""k-nearest-neighbour classification of frozen features: the CL-MAE reference's vote and the weighted SSL vote.

The functions are pure (tensors in, tensors out) and compute distances in chunks of test rows with one matrix
product each, so 10,000 x 60,000 comparisons fit in memory on a laptop. They run where the features are (the votes
too: no per-sample Python, no copy to the CPU before the accuracy), so features on a GPU are classified there.

Tie rules (documented, tested):

* **Majority vote** (:func:`knn_majority_vote`): when several classes get the same largest number of votes, the
  smallest class index wins -- the rule of scikit-learn's ``KNeighborsClassifier`` (``scipy.stats.mode``), the
  usual implementation of a majority-vote kNN. Neighbours at exactly equal distance are ordered by ``torch.topk``;
  real features almost never tie exactly.
* **Weighted vote** (:func:`knn_weighted_scores`): classes are ranked by their summed weights; equal sums again go to
  the smallest class index (``torch.argmax`` / a stable sort return the first maximum).
"""

from __future__ import annotations

from typing import Any

import torch

REFERENCE_K = 5  # CL-MAE reference: k = 5, Euclidean, majority vote on globally pooled patch tokens
WEIGHTED_K = 20  # standard weighted kNN (Wu et al. 2018; DINO's eval_knn.py): k = 20, T = 0.07, cosine
WEIGHTED_T = 0.07


def _check(train: torch.Tensor, labels: torch.Tensor, test: torch.Tensor, k: int, num_classes: int) -> None:
    if train.ndim != 2 or test.ndim != 2 or train.shape[1] != test.shape[1]:
        raise ValueError(
            f"features must be [N, D] (train) and [M, D] (test) with the same D, got {tuple(train.shape)} and "
            f"{tuple(test.shape)}"
        )
    if labels.shape != (train.shape[0],):
        raise ValueError(f"train labels must be [N] = [{train.shape[0]}], got {tuple(labels.shape)}")
    if not 1 <= k <= train.shape[0]:
        raise ValueError(f"k must be between 1 and the number of training samples ({train.shape[0]}), got {k}")
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}), got [{labels.min()}, {labels.max()}]")


def nearest_neighbours(
    train: torch.Tensor, test: torch.Tensor, k: int, metric: str = "euclidean", chunk_size: int = 1024
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` nearest training rows of every test row.

    Args:
        train: training features ``[N, D]``.
        test: test features ``[M, D]``.
        k: neighbours per test row.
        metric: ``"euclidean"`` (distances) or ``"cosine"`` (similarities of the L2-normalised rows).
        chunk_size: test rows per matrix product.

    Returns:
        ``(values, indices)``, both ``[M, k]``, nearest first: Euclidean distances (ascending) or cosine similarities
        (descending), and the indices of the neighbours in ``train``.
    """
    if metric not in ("euclidean", "cosine"):
        raise ValueError(f"metric must be 'euclidean' or 'cosine', got {metric!r}")
    train, test = train.float(), test.float()
    if metric == "cosine":
        train = torch.nn.functional.normalize(train, dim=1)
        test = torch.nn.functional.normalize(test, dim=1)
    else:
        # Distances do not change under a common translation; centring keeps |a|^2 - 2ab + |b|^2 precise in float32.
        mean = train.mean(0, keepdim=True)
        train, test = train - mean, test - mean
        train_sq = train.pow(2).sum(1)
    values, indices = [], []
    for start in range(0, test.shape[0], chunk_size):
        chunk = test[start : start + chunk_size]
        if metric == "cosine":
            v, i = (chunk @ train.T).topk(k, dim=1)
        else:
            # ||a - b||^2 = |a|^2 - 2 a.b + |b|^2; |a|^2 is constant per test row, add it back for the returned values.
            d2 = train_sq[None, :] - 2.0 * chunk @ train.T
            v, i = d2.topk(k, dim=1, largest=False)
            v = (v + chunk.pow(2).sum(1, keepdim=True)).clamp_min(0).sqrt()
        values.append(v)
        indices.append(i)
    return torch.cat(values), torch.cat(indices)


def knn_majority_vote(
    train: torch.Tensor,
    train_labels: torch.Tensor,
    test: torch.Tensor,
    num_classes: int,
    k: int = REFERENCE_K,
    chunk_size: int = 1024,
) -> torch.Tensor:
    """Predict each test row by a majority vote of its ``k`` Euclidean nearest training rows (CL-MAE's kNN).

    Ties between classes with the same number of votes go to the smallest class index (as scikit-learn).

    Args:
        train: training features ``[N, D]``.
        train_labels: their classes ``[N]`` in ``[0, num_classes)``.
        test: test features ``[M, D]``.
        num_classes: number of classes ``C``.
        k: neighbours (reference: 5).
        chunk_size: test rows per matrix product.

    Returns:
        Vote counts ``[M, C]`` (float); ``counts.argmax(1)`` is the prediction with the tie rule above.
    """
    _check(train, train_labels, test, k, num_classes)
    _, idx = nearest_neighbours(train, test, k, "euclidean", chunk_size)
    votes = torch.zeros(test.shape[0], num_classes, device=idx.device)
    votes.scatter_add_(1, train_labels.to(idx.device)[idx].long(), torch.ones(idx.shape, device=idx.device))
    return votes


def knn_weighted_scores(
    train: torch.Tensor,
    train_labels: torch.Tensor,
    test: torch.Tensor,
    num_classes: int,
    k: int = WEIGHTED_K,
    temperature: float = WEIGHTED_T,
    chunk_size: int = 1024,
) -> torch.Tensor:
    """Weighted cosine kNN: each of the ``k`` most similar training rows votes ``exp(sim / T)`` for its class.

    Features are L2-normalised first, so ``sim`` is the cosine similarity (Wu et al. 2018, as DINO's
    ``eval_knn.py``).

    Args:
        train: training features ``[N, D]``.
        train_labels: their classes ``[N]`` in ``[0, num_classes)``.
        test: test features ``[M, D]``.
        num_classes: number of classes ``C``.
        k: neighbours (standard: 20).
        temperature: ``T`` (standard: 0.07).
        chunk_size: test rows per matrix product.

    Returns:
        Class scores ``[M, C]``: the summed votes. ``argmax(1)`` is the prediction; top-5 ranks these scores.
    """
    _check(train, train_labels, test, k, num_classes)
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    sim, idx = nearest_neighbours(train, test, k, "cosine", chunk_size)
    scores = torch.zeros(test.shape[0], num_classes, device=idx.device)
    scores.scatter_add_(1, train_labels.to(idx.device)[idx].long(), (sim / temperature).exp())
    return scores


def topk_accuracy(scores: torch.Tensor, labels: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> dict[str, float]:
    """Top-k accuracies from class scores ``[M, C]``; ties are ranked by the smaller class index first.

    Returns:
        ``{"top1": ..., "top5": ...}`` for each ``k`` in ``ks`` not larger than ``C`` (fractions in [0, 1]).
    """
    if scores.ndim != 2 or labels.shape != (scores.shape[0],):
        raise ValueError(f"scores must be [M, C] and labels [M], got {tuple(scores.shape)} and {tuple(labels.shape)}")
    # A stable descending sort keeps equal scores in class order: the same tie rule as argmax.
    order = scores.sort(dim=1, descending=True, stable=True).indices
    hits = order == labels.to(order.device)[:, None]
    n = max(labels.shape[0], 1)
    return {f"top{k}": hits[:, :k].any(1).sum().item() / n for k in ks if k <= scores.shape[1]}


def knn_metrics(
    train: torch.Tensor,
    train_labels: torch.Tensor,
    val: torch.Tensor,
    val_labels: torch.Tensor,
    num_classes: int,
    *,
    k: int = 5,
    k_weighted: int = 20,
    temperature: float = 0.07,
    variant: str = "both",
    chunk_size: int = 1024,
    device: str | torch.device | None = None,
) -> dict[str, Any]:
    """kNN accuracy of validation features against training features, with both votes (docs/method.md §7).

    Args:
        train: training features ``[N, D]``.
        train_labels: ``[N]``.
        val: validation features ``[M, D]``.
        val_labels: ``[M]``.
        num_classes: C.
        k: neighbours of CL-MAE's majority vote (Euclidean).
        k_weighted: neighbours of the weighted cosine vote.
        temperature: temperature of the weighted vote.
        variant: ``both``, ``reference`` (majority vote) or ``weighted``.
        chunk_size: validation rows per distance matrix product.
        device: where the distances and votes are computed (the features and labels are moved there once);
            default: where ``train`` is.

    Returns:
        ``{"reference": {"top1": ...}, "weighted": {"top1": ..., "top5": ...}, "top1": ...}`` (``top1``: the
        reference vote's when it ran).
    """
    if device is not None:
        dev = torch.device(device)
        train, train_labels, val, val_labels = (t.to(dev) for t in (train, train_labels, val, val_labels))
    metrics: dict[str, Any] = {}
    if variant in ("both", "reference"):
        votes = knn_majority_vote(train, train_labels, val, num_classes, k, chunk_size)
        metrics["reference"] = topk_accuracy(votes, val_labels, (1,))
    if variant in ("both", "weighted"):
        scores = knn_weighted_scores(train, train_labels, val, num_classes, k_weighted, temperature, chunk_size)
        metrics["weighted"] = topk_accuracy(scores, val_labels)
    metrics["top1"] = metrics["reference" if "reference" in metrics else "weighted"]["top1"]
    return metrics
