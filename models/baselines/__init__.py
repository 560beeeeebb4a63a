"""Baselines beside CARAT (registered on import).

The floor: ``prior`` (each label's training frequency, no feature read). Classic problem
transformations on pooled features (scikit-learn): ``br``, ``cc``, ``lp``, ``mlknn``,
``knn_br``. Neural (torch): ``early_fusion``, ``late_fusion``, ``mult``.
"""

from models.baselines import classic, fusion, mlknn, mult, prior  # noqa: F401
