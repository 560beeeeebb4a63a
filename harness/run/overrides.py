"""Which variants a study-wide override reaches: the one place that decides it.

``overrides:`` in a study file applies to every variant that has the field (a training field,
which every variant has, or a field of the variant's model config); a field that no variant of
the study has is refused, in one line naming it and the variants. ``variant_overrides:`` names
its variant itself and is checked when the variant is built. ``Study.overrides_for`` applies what
is decided here.
"""

from __future__ import annotations

from dataclasses import fields, is_dataclass, replace

import models
from harness.config import TrainConfig
from harness.studies import Study, StudyError


def decide(study: Study, spec) -> Study:
    """``study`` with ``override_targets`` set: per variant, the study-wide overrides it has.

    ``spec`` is the shape of the study's data (a model is built once per variant, with its preset's
    values, to read its config's fields)."""
    if not study.overrides or study.override_targets:
        return study
    training = set(TrainConfig.field_names())
    targets = {}
    for variant in study.variants:
        known = model_fields(study, variant, spec)
        targets[variant] = tuple(k for k in study.overrides if known is None or k in training or k in known)
    nowhere = [k for k in study.overrides if not any(k in names for names in targets.values())]
    if nowhere:
        raise StudyError(
            f"{study.source}: overrides: {', '.join(map(repr, nowhere))} is a field of none of the study's "
            f"variants ({', '.join(study.variants)}); `invoke variants` lists the models"
        )
    return replace(study, override_targets=targets)


def model_fields(study: Study, variant: str, spec) -> set[str] | None:
    """The fields of ``variant``'s model config; None for a model whose config does not list them
    (every study-wide override then goes to it, and its builder refuses what it does not know)."""
    try:
        config = getattr(models.create(variant, spec, preset=study.preset), "config", None)
    except (ValueError, TypeError) as exc:
        raise StudyError(f"{study.source}: variant {variant!r}: {exc}") from None
    if is_dataclass(config):
        return {f.name for f in fields(config)}
    if isinstance(config, dict):
        return set(config)
    return None


def applied_text(study: Study, variant: str) -> str:
    """What ``variant`` was given by the study file, as logged (``overrides`` param) and reported."""
    applied = study.overrides_for(variant)
    return ", ".join(f"{k}={v}" for k, v in sorted(applied.items())) or "none"
