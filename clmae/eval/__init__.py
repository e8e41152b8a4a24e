"""Evaluation of frozen and fine-tuned encoders: kNN, linear probe and fine-tuning (``clmae eval``)."""

from .data import EvalData, resolve_data
from .features import FeatureSet, extract_features, features_for
from .finetune import FinetuneConfig, finetune
from .knn import knn_majority_vote, knn_weighted_scores, nearest_neighbours, topk_accuracy
from .linear import LinearHead, LinearProbeConfig, linear_probe_cached, linear_probe_mae
from .model import RAW_PIXELS, ResolvedModel, resolve_model
from .results import EvalResult
from .run import CommonConfig, KnnConfig, run_eval

__all__ = [
    "RAW_PIXELS",
    "CommonConfig",
    "EvalData",
    "EvalResult",
    "FeatureSet",
    "FinetuneConfig",
    "KnnConfig",
    "LinearHead",
    "LinearProbeConfig",
    "ResolvedModel",
    "extract_features",
    "features_for",
    "finetune",
    "knn_majority_vote",
    "knn_weighted_scores",
    "linear_probe_cached",
    "linear_probe_mae",
    "nearest_neighbours",
    "resolve_data",
    "resolve_model",
    "run_eval",
    "topk_accuracy",
]
