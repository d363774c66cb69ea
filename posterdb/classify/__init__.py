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
from posterdb.classify.blend import GenreClassifier, Neighbour, Prediction
from posterdb.classify.evaluate import cross_decade_matrix, evaluate
from posterdb.classify.persist import load_classifier, save_classifier
from posterdb.classify.report import METHODS, EvalReport, MethodResult
from posterdb.classify.splits import grouped_train_test_split, near_duplicate_groups
from posterdb.classify.study import StudySVM
from posterdb.classify.thresholds import apply_thresholds, tune_thresholds

__all__ = [
    "GenreClassifier", "Prediction", "Neighbour", "StudySVM", "evaluate", "EvalReport", "MethodResult",
    "METHODS", "cross_decade_matrix", "save_classifier", "load_classifier", "grouped_train_test_split",
    "near_duplicate_groups", "tune_thresholds", "apply_thresholds",
]
