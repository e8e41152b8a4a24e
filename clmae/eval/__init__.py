"""Evaluation of frozen and fine-tuned encoders: kNN, linear probe and fine-tuning (``clmae eval``)."""

from .._lazy import lazy_package

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

# Each name is imported from its module when first used (clmae._lazy), so that importing the package is cheap.
lazy_package(
    __name__,
    {
        "EvalData": ".data",
        "resolve_data": ".data",
        "FeatureSet": ".cache",
        "extract_features": ".features",
        "features_for": ".cache",
        "FinetuneConfig": ".finetune",
        "finetune": ".finetune",
        "knn_majority_vote": ".knn",
        "knn_weighted_scores": ".knn",
        "nearest_neighbours": ".knn",
        "topk_accuracy": ".knn",
        "LinearHead": ".linear",
        "LinearProbeConfig": ".linear",
        "linear_probe_cached": ".linear",
        "linear_probe_mae": ".linear",
        "RAW_PIXELS": ".model",
        "ResolvedModel": ".model",
        "resolve_model": ".model",
        "EvalResult": ".results",
        "CommonConfig": ".run",
        "KnnConfig": ".run",
        "run_eval": ".run",
    },
)
