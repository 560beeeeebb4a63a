"""Baselines beside CARAT (registered on import).

Classic problem transformations on pooled features (scikit-learn): ``br``, ``cc``, ``lp``,
``mlknn``, ``knn_br``. Neural (torch): ``early_fusion``, ``late_fusion``, ``mult``.
"""
from models.baselines import classic, fusion, mlknn, mult  # noqa: F401
