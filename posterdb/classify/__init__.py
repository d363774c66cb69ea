"""Genre classification over poster vectors: the study's baseline and posterdb's classifier.

Public API:
    GenreClassifier(heads="auto" | "exact" | "nystroem", ...)
        .fit(X, Y, decades=None, ids=None, X_unlabelled=None, decades_unlabelled=None, progress=None)
        .predict_proba(X, decades=None, exclude_ids=None) / .predict(...) / .explain(...)
    heads: SVMHeads (exact RBF kernel, n^2) or NystroemHeads (linear in n); vote: KNNVote (FAISS)
    Prediction, Neighbour                    (what explain() returns)
    StudySVM(class_weight=None | "balanced") (the study's one-vs-rest RBF SVM)
    evaluate(X, Y, years_or_decades, ...) -> EvalReport (.to_json, .save_json, .render_png, .to_markdown)
    save_classifier(clf, path) -> sha256 ; load_classifier(path, expected_sha256)
    grouped_train_test_split, near_duplicate_groups, tune_thresholds, apply_thresholds
"""
import importlib

# name -> module: imported on first use, so `import posterdb.classify.service` (every command
# that opens a store) does not pay for scikit-learn and SciPy
_WHERE = {
    "GenreClassifier": "blend", "Prediction": "blend", "Neighbour": "blend",
    "cross_decade_matrix": "experiment", "evaluate": "experiment",
    "load_classifier": "persist", "save_classifier": "persist",
    "METHODS": "report", "EvalReport": "report", "MethodResult": "report",
    "grouped_train_test_split": "splits", "near_duplicate_groups": "splits",
    "StudySVM": "study", "apply_thresholds": "thresholds", "tune_thresholds": "thresholds",
}
__all__ = list(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'posterdb.classify' has no attribute {name!r}")
    return getattr(importlib.import_module(f"posterdb.classify.{_WHERE[name]}"), name)
