"""Scorers: each returns a :class:`~aiapp.evals.Score`; unscored with a reason, never NaN.

Built in: ``exact_match``, ``regex``, ``contains``, ``any_of``, ``json_equal``, ``json_schema``,
``numeric``, ``token_f1``, ``embedding_similarity``; retrieval ``hit_at_k``, ``recall_at_k``,
``mrr``, ``ndcg_at_k``; model-based judges, RAG metrics and human rubrics where installed.
Register your own with :func:`scorer`.
"""

from aiapp.evals.scorers._base import Scorer, build_scorer, scorer, scorer_names

__all__ = ["Scorer", "build_scorer", "scorer", "scorer_names"]
