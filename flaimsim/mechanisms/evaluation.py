"""Utility metrics of a synthetic data set against the real training and test data.

- Workload error: mean over q of ‖M_q(D)/N − M_q(D̂)/|D̂|‖₁, reported over W+ and over the
  workload marginals W alone (the 3-way marginals in the paper's setting).
- NLL: mean negative log-likelihood of the test records under the final model (nats/record).
- AUC: a gradient-boosted tree classifier (100 trees of depth 4; scikit-learn's histogram GBT,
  which treats codes as ordinal) trained on the synthetic data and tested on the real test
  split. A label with more than two values is scored one-vs-rest, weighted by prevalence.
  The same classifier trained on the real training split gives the reference AUC.
- Label coverage: how many workload marginals contain the label. AIM preserves only what the
  workload asks for; with the label in none, a downstream AUC near 0.5 is expected.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from flaimsim.mechanisms.data import Table

Clique = tuple[str, ...]


def marginal_l1_error(real: Table, synth: Table, clique: Sequence[str]) -> float:
    """‖M_q(D)/N − M_q(D̂)/|D̂|‖₁ (between 0 and 2)."""
    if real.n == 0 or synth.n == 0:
        raise ValueError("workload error needs non-empty real and synthetic data")
    return float(np.abs(real.marginal(clique) / real.n - synth.marginal(clique) / synth.n).sum())


def workload_error(real: Table, synth: Table, cliques: Sequence[Clique]) -> float:
    """Mean L1 error over ``cliques``."""
    if not cliques:
        raise ValueError("empty workload")
    return float(np.mean([marginal_l1_error(real, synth, c) for c in cliques]))


def single_threaded():
    """One OpenMP thread for the classifier: on a shared machine its spin-waiting threads
    made a fit 5-100x slower (0.6 s vs 4-6 s on 44k Adult-sized rows, load average 2.5-3.5);
    the fitted trees are the same for any thread count."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1, "openmp")


def downstream_auc(synth: Table, test: Table, label: str, seed: int = 0) -> float | None:
    """Test AUC of a 100-tree depth-4 GBT trained on ``synth``; None if undefined."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score

    features = [c for c in synth.columns if c != label]
    fi = [synth.columns.index(c) for c in features]
    y_train, y_test = synth.column(label), test.column(label)
    if len(np.unique(y_train)) < 2 or len(np.unique(y_test)) < 2:
        return None
    clf = HistGradientBoostingClassifier(max_iter=100, max_depth=4, early_stopping=False,
                                         random_state=seed % 2**32)
    with single_threaded():
        proba = clf.fit(synth.values[:, fi], y_train).predict_proba(test.values[:, fi])
    classes = list(clf.classes_)
    if len(np.unique(y_test)) == 2 and len(classes) == 2:
        positive = max(classes)
        return float(roc_auc_score(y_test == positive, proba[:, classes.index(positive)]))
    # Multi-class: full probability matrix over the label's domain, then OvR on test classes.
    full = np.zeros((test.n, synth.domain[label]))
    full[:, classes] = proba
    present = np.unique(y_test)
    sub = full[:, present]
    sub = sub / np.clip(sub.sum(axis=1, keepdims=True), 1e-300, None)
    # Rows with no mass on any test class: fall back to uniform over test classes.
    sub[~np.isfinite(sub).all(axis=1) | (sub.sum(axis=1) == 0)] = 1.0 / len(present)
    if len(present) == 2:   # sklearn's binary path wants the positive class's column only
        return float(roc_auc_score(y_test == present[1], sub[:, 1]))
    return float(roc_auc_score(y_test, sub, multi_class="ovr", average="weighted",
                               labels=present))


def label_coverage(marginals: Sequence[Clique], label: str) -> int:
    """The number of workload marginals that contain ``label``."""
    return sum(1 for m in marginals if label in m)
