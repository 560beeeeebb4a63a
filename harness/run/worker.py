"""A worker: claims units from the queues and trains each as one MLflow run.

Tuning first (pruned on validation micro-F1), repeats once every tuning trial is settled, at
each variant's best parameters. A repeat run keeps a checkpoint after each epoch and a re-run
continues it. A failing unit fails alone.
"""

from __future__ import annotations

import time
import traceback
from pathlib import Path

import optuna
from optuna.trial import TrialState
from tqdm.auto import tqdm

import models
from harness import keys, tracking, trainer
from harness.run.plan import Plan, Unit, build_run, load_data
from harness.run.progress import POLL_SECONDS, quiet_libraries
from harness.run.record import data_profile, resolved_config, run_name, run_params, run_tags
from harness.run.schedule import (
    LIVE,
    best_params,
    beyond_budget,
    enqueue,
    finished_keys,
    is_duplicate,
    stale_handler,
    top_up_tuning,
)
from harness.storage import RUNS_DIR, open_optuna_storage, redact_text, safe_name
from harness.workqueue import Claim


def work(plan: Plan, worker: int, overall=None) -> int:
    """One worker: claim and run units until none is left; returns how many it trained."""
    import torch

    placement = plan.placements[worker] if plan.placements else None
    if plan.options.workers > 1:  # a worker process of its own: the command's log levels did not reach it
        quiet_libraries(plan.options.verbose)
    if placement is not None and (plan.options.workers > 1 or placement.device != "cpu"):
        torch.set_num_threads(placement.threads)  # the cores shared out, a few per GPU worker
    models.load_plugins(plan.study.plugins, Path("/"))  # a worker process imports the study's own models too
    client = tracking.client_for(plan.tracking_uri)
    on_stale = stale_handler(client, plan.experiment_id)
    queues = plan.queues(open_optuna_storage(plan.options.storage, on_stale=on_stale), worker)
    trainer_ = _Worker(plan, worker, client, overall, placement.device if placement else plan.options.device)
    _tune(plan, queues, trainer_, on_stale)
    if keys.REPEAT in queues:
        trainer_.best = {key: best_params(q) for key, q in queues.items() if key != keys.REPEAT}
        _repeat(plan, queues, trainer_, client, on_stale)
    return trainer_.trained


def _tune(plan: Plan, queues: dict, trainer_: _Worker, on_stale) -> None:
    """Tuning trials until every tuning study is settled (repeats need the best parameters)."""
    tune = plan.tune_queues(queues)
    while True:
        claim = next((c for c in (q.claim() for q in tune) if c is not None), None)
        if claim is not None:
            if not beyond_budget(claim, plan.study.trials):
                trainer_.train(claim)
            continue
        if not any(q.busy() for q in tune):
            return
        for q in tune:
            q.fail_stale(on_stale)
        top_up_tuning(plan, queues)  # replaces tuning trials of dead workers
        time.sleep(POLL_SECONDS)


def _repeat(plan: Plan, queues: dict, trainer_: _Worker, client, on_stale) -> None:
    """Repeat units until none of the plan is live anywhere."""
    repeat = queues[keys.REPEAT]
    planned = {u.key for u in plan.repeat_units()}
    while True:
        claim = repeat.claim(wanted=lambda attrs: Unit.of(attrs).key in planned)
        if claim is not None:
            if not is_duplicate(claim, repeat, client, plan):
                trainer_.train(claim)
            continue
        if not any(Unit.of(t.user_attrs).key in planned for t in repeat.trials(LIVE)):
            return
        # Units still run elsewhere: wait for them, so this worker's summary is the whole
        # study's, and a unit whose worker dies (found stale) is taken over, not left missing.
        if repeat.fail_stale(on_stale):
            enqueue(plan, queues, finished_keys(client, plan))
        time.sleep(POLL_SECONDS)


def _size_from_data(model, train_cfg, data) -> str | None:
    """Let a model size itself from the data (CARAT's queue, with ``queue_size`` None) so that the
    size it chose is what its params log; the reason when it cannot train at this batch size."""
    check = getattr(model, "check_training", None)
    if check is None:
        return None
    try:
        check(min(train_cfg.batch_size, data.splits["train"].n))
    except ValueError as exc:
        return redact_text(f"ValueError: {exc}")
    return None


class _Clock:
    """Where a unit's time goes, logged with it (see invoke bench)."""

    def __init__(self):
        self.last, self.seconds = time.perf_counter(), {}

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = self.seconds.get(name, 0.0) + now - self.last
        self.last = now


class _Worker:
    """Trains claimed units: one MLflow run each, the queue told the outcome."""

    def __init__(self, plan: Plan, index: int, client, overall, device: str = "cpu"):
        self.plan, self.index, self.client, self.overall = plan, index, client, overall
        self.device = device  # this worker's placement: every run it trains goes there
        self.best: dict = {}
        self.trained = 0
        self._data: dict = {}

    def data(self, unit: Unit):
        key = (unit.dataset, unit.seed if self.plan.carve_by_seed[unit.dataset] else None)
        if key not in self._data:
            self._data = {key: load_data(self.plan.study, unit.dataset, split_seed=key[1])}  # keep one in memory
        return self._data[key]

    def params(self, unit: Unit, claim: Claim) -> dict:
        """Fixed parameters, then Optuna's suggestions (tuning) or the variant's best ones (repeats)."""
        study = self.plan.study
        params = study.params_for(unit.variant, unit.setting)
        if unit.phase == keys.TUNE:
            return {**params, **{p.name: p.suggest(claim.trial) for p in study.search_space}}
        return {**params, **self.best.get((unit.variant, unit.dataset), {}), **study.settings()[unit.setting]}

    def train(self, claim: Claim) -> None:
        try:
            self._train(claim)
        except BaseException as exc:  # a stop signal, Ctrl-C, a bug: leave the unit for a re-run, then stop
            reason = f"interrupted: {exc}" if isinstance(exc, KeyboardInterrupt) else f"{type(exc).__name__}: {exc}"
            claim.fail(redact_text(reason))
            if claim.state() == TrialState.FAIL:  # its run may have ended FINISHED already
                tracking.fail_runs_of_trial(
                    self.client, self.plan.experiment_id, claim.queue.name, claim.number, reason
                )
            raise

    def _train(self, claim: Claim) -> None:
        plan, study, unit, clock = self.plan, self.plan.study, Unit.of(claim.unit), _Clock()
        data = self.data(unit)
        clock.lap("time_data_s")
        params = self.params(unit, claim)
        train_cfg, model = build_run(study, unit.variant, data.spec, params, unit.seed, plan.options, self.device)
        clock.lap("time_build_s")
        name = run_name(unit, claim.number, several_datasets=len(study.datasets) > 1)
        checkpoint = self._checkpoint_path(unit) if unit.phase == keys.REPEAT else None
        tags = run_tags(plan, unit, claim.number, claim.queue.name, self.device)
        with tracking.TrackedRun(self.client, plan.experiment_id, name, tags) as run, claim.alive():
            claim.set_attr("mlflow_run_id", run.run_id)
            sized = _size_from_data(model, train_cfg, data)  # before its params are logged: the size is one
            run.log_params(run_params(study, unit, train_cfg, model))
            if sized is not None:
                run.end("FAILED", sized)
                claim.fail(sized)
                tqdm.write(f"FAILED {name}: {sized}")
                self._settled()
                return
            run.log_dataset(unit.dataset, data.digest, data.source, data_profile(data))
            clock.lap("time_tracking_s")
            result = self._fit(claim, unit, run, name, model, data, train_cfg, checkpoint)
            if result is None:
                return
            clock.lap("time_fit_s")
            resumed = {keys.RESUMED_FROM_EPOCH: result.resumed_from_epoch} if result.resumed_from_epoch else {}
            run.set_tags({**resumed, **keys.degenerate_tags(result.degenerate, result.degenerate_kinds)})
            config = resolved_config(plan, unit, train_cfg, model, claim.number)
            run.log_result(result, data.label_names, data.modalities, config, keep_latents=unit.phase == keys.REPEAT)
            clock.lap("time_tracking_s")
            run.log_metrics({**clock.seconds, "time_eval_s": result.eval_seconds})
            # Optuna's COMPLETE is the commit point, so the run ends first: if this worker dies in
            # between, its trial stays RUNNING and the stale check fails both.
            run.end("FINISHED")
            if not claim.complete(result.val_metrics[keys.MICRO_F1]):
                # Silent too long, this worker was taken for dead and its unit handed to another.
                reason = "its trial was failed as stale while it ran"
                tracking.fail_runs_of_trial(self.client, plan.experiment_id, claim.queue.name, claim.number, reason)
                return
        if checkpoint is not None and not plan.options.keep_checkpoints:
            checkpoint.unlink(missing_ok=True)
        self.trained += 1
        self._settled()

    def _fit(self, claim: Claim, unit: Unit, run, name: str, model, data, train_cfg, checkpoint):
        """The trainer's result, or None when the unit was pruned or failed (both records told)."""

        def on_epoch(epoch: int, row: dict) -> None:
            run.log_epoch(epoch, row)
            if unit.phase == keys.TUNE:
                claim.trial.report(row[keys.VAL_MICRO_F1], epoch)
                if claim.trial.should_prune():
                    raise optuna.TrialPruned(f"pruned at epoch {epoch}")

        several = self.plan.options.workers > 1
        try:
            return trainer.fit(
                model,
                data,
                train_cfg,
                on_epoch=on_epoch,
                checkpoint=checkpoint,
                progress_label=f"w{self.index} {name}" if several else name,
                progress_position=self.index + 1 if several else None,
            )
        except optuna.TrialPruned as pruned:
            run.end("KILLED", str(pruned))
            claim.prune()
        except (trainer.NonFiniteLossError, ValueError, RuntimeError) as exc:
            reason = redact_text(f"{type(exc).__name__}: {exc}")
            run.end("FAILED", reason)
            claim.fail(reason)
            tqdm.write(f"FAILED {name}: {reason}\n{traceback.format_exc(limit=3)}")
        self._settled()
        return None

    def _checkpoint_path(self, unit: Unit) -> Path:
        folder = (
            Path(self.plan.options.checkpoint_dir) if self.plan.options.checkpoint_dir else RUNS_DIR / "checkpoints"
        )
        safe = safe_name(f"{unit.variant}-{unit.dataset}-{unit.setting}-s{unit.seed}", keep="._-=")
        return folder / self.plan.study.experiment / unit.config_hash / f"{safe}.pt"

    def _settled(self) -> None:
        if self.overall is not None:
            self.overall.update(1)
