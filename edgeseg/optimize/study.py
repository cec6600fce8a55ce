"""Accuracy second: an Optuna study over the feasible candidates, each trained in growing fidelities.

One trial is one feasible architecture. Its body is edgeseg's own training with ``train.time_budget``:
fidelity k trains ``proxy_time x reduction_factor^k`` in total, resuming the previous fidelity's
``last.pt``; after each one the validation headline metric is reported and the pruner (successive
halving or Hyperband) stops the trials that are not among the best at that fidelity. The study lives
in Optuna storage (SQLite ``OUT/study.db`` by default): the candidates are queued once, and every
process pointed at the storage takes the next queued one, so an interrupted study resumes and several
processes or hosts share it without training a candidate twice.
"""

from __future__ import annotations

import random
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeseg import catalog
from edgeseg.optimize.space import Candidate, OptimizeError
from edgeseg.recipe import OptimizeCfg, Recipe

F = catalog.OPTIMIZE_FILES
HEARTBEAT_S = 20
SQLITE_WAIT_S = 120  # how long a process waits for another's SQLite write lock


def storage_url(out: Path, storage: str | None) -> str:
    """``--storage`` as given, else SQLite in ``OUT/study.db``."""
    return storage or f"sqlite:///{(out / F.study).resolve()}"


def open_study(url: str, name: str, cfg: OptimizeCfg) -> Any:
    """Create or load the study ``name`` (maximising the validation headline metric)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if cfg.pruner == "hyperband":
        pruner: Any = optuna.pruners.HyperbandPruner(
            min_resource=1, max_resource=cfg.reduction_factor ** (cfg.rungs - 1), reduction_factor=cfg.reduction_factor)
    else:
        pruner = optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=cfg.reduction_factor)
    for attempt in range(5):
        try:
            storage = rdb_storage(url)
            return optuna.create_study(storage=storage, study_name=name, direction="maximize", load_if_exists=True,
                                       sampler=optuna.samplers.RandomSampler(seed=cfg.seed), pruner=pruner)
        except (ValueError, ImportError, RuntimeError) as exc:  # a bad URL, a missing driver, an unreachable DB
            raise OptimizeError(f"--storage {url}: cannot open an Optuna study there: "
                                f"{str(exc).splitlines()[0]}") from None
        except Exception:  # noqa: BLE001  two processes creating the same new storage at once: one wins
            if attempt == 4:
                raise
            time.sleep(0.5 + random.random())
    raise AssertionError("unreachable")


def rdb_storage(url: str) -> Any:
    """Optuna's RDB storage at ``url`` with heartbeats (the trials of a process that died, killed or its
    host lost, are failed after a grace period and queued again: another process picks them up); on
    SQLite every transaction takes the write lock first (:func:`serialize_sqlite`)."""
    import optuna

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeat, retry: stable here
    # optuna >= 4.9 renamed the callback and its argument (the old names warn there)
    new = hasattr(optuna.storages, "RetryHeartbeatStaleTrialCallback")
    retry = {"heartbeat_stale_trial_callback": optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=2)} if new \
        else {"failed_trial_callback": optuna.storages.RetryFailedTrialCallback(max_retry=2)}
    sqlite = url.startswith("sqlite")
    storage = optuna.storages.RDBStorage(url, heartbeat_interval=HEARTBEAT_S, grace_period=3 * HEARTBEAT_S,
                                         engine_kwargs={"connect_args": {"timeout": SQLITE_WAIT_S}} if sqlite else None,
                                         **retry)
    if sqlite:
        serialize_sqlite(storage.engine)
    return storage


def serialize_sqlite(engine: Any) -> None:
    """Begin every transaction of ``engine`` with ``BEGIN IMMEDIATE``.

    Optuna claims a queued trial by reading its state and setting it RUNNING if it was WAITING, in one
    transaction with ``SELECT ... FOR UPDATE``, which SQLite ignores: Python's sqlite3 starts the
    transaction only at the UPDATE, so two processes both read WAITING and both run the trial (the second
    to finish then dies on "Trial#N has already finished"). Taking the write lock at BEGIN makes the read
    and the write one step: the second process waits, then reads RUNNING and takes the next trial. This is
    SQLAlchemy's documented recipe for SQLite transactions (pysqlite's own BEGIN switched off)."""
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _no_driver_begin(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # the connections RDBStorage opened before the listeners: reopened with them


def candidate_of(trial: Any) -> str | None:
    """The candidate a trial holds (a queued trial has it only in its fixed parameters until it starts)."""
    return trial.params.get("candidate") or trial.system_attrs.get("fixed_params", {}).get("candidate")


def queue(study: Any, ids: list[str]) -> None:
    """Queue every feasible candidate that no trial holds yet: a resumed study queues only the candidates
    whose trial failed (an interrupted one: its training resumes from its ``last.pt``)."""
    import optuna

    held = {candidate_of(t) for t in study.get_trials(deepcopy=False)
            if t.state != optuna.trial.TrialState.FAIL and t.user_attrs.get("duplicate_of") is None}
    for cid in ids:
        if cid not in held:
            study.enqueue_trial({"candidate": cid})


def _owner(study: Any, trial: Any, cid: str) -> Any:
    """The trial that holds ``cid`` when it is not ``trial``: one finished, or running with a lower
    number (two processes that took one candidate at once: the later trial yields)."""
    import optuna

    s = optuna.trial.TrialState
    for t in study.get_trials(deepcopy=False, states=(s.COMPLETE, s.PRUNED, s.RUNNING)):
        if t.number != trial.number and t.params.get("candidate") == cid and t.user_attrs.get("duplicate_of") is None \
                and (t.state != s.RUNNING or t.number < trial.number):
            return t
    return None


@dataclass
class Trials:
    """What a trial needs: the recipe, the feasible candidates with their latency, where to train."""

    recipe: Recipe
    out: Path
    name: str  # the study's: its trials train in OUT/trials/<name>/<candidate>
    cfg: OptimizeCfg
    proxy_s: float
    candidates: dict[str, Candidate]
    checkpoints: dict[str, Path]
    records: dict[str, dict[str, Any]]  # per candidate: architecture, forms, latency (set as user attrs)
    say: Callable[[str], None] = print

    def objective(self, trial: Any) -> float:
        import optuna

        cid = trial.suggest_categorical("candidate", sorted(self.candidates))
        owner = _owner(trial.study, trial, cid)
        if owner is not None:  # a race between processes: never train a candidate twice
            trial.set_user_attr("duplicate_of", owner.number)
            raise optuna.TrialPruned(f"{cid} is trial {owner.number}'s")
        for key, value in self.records[cid].items():
            trial.set_user_attr(key, value)
        return self._fidelities(trial, cid)

    def _fidelities(self, trial: Any, cid: str) -> float:
        import optuna

        from edgeseg.artifacts.checkpoint import load_checkpoint
        from edgeseg.train.loop import train

        cand, head = self.candidates[cid], None
        folder = self.out / F.runs / self.name / cid
        scores: list[dict[str, Any]] = []
        score = float("nan")
        for k in range(self.cfg.rungs):
            budget = self.proxy_s * self.cfg.reduction_factor ** k
            rcp = cand.recipe(self.recipe)
            rcp.train.time_budget = f"{budget:g}s"
            rcp.train.eval_every = 10**6  # validate once, when the fidelity's time is spent
            model = load_checkpoint(self.checkpoints[cid]).model
            t0 = time.perf_counter()
            result = train(rcp, folder, model=model, resume=True)  # an interrupted trial continues
            head = head or _headline(result)
            score = float(result["metrics"][head])
            extra = {m: v for m, v in result["metrics"].items() if isinstance(v, float)}  # e.g. mean Dice beside mIoU
            scores.append({"fidelity": k, "time_budget_s": budget, "epochs": result.get("epochs_done"),
                           **extra, head: score, "seconds": round(time.perf_counter() - t0, 1)})
            trial.set_user_attr("fidelities", scores)
            # the step in proxy-time units: the pruners' rungs are at 1, eta, eta^2 (min_resource 1)
            trial.report(score, self.cfg.reduction_factor ** k)
            self.say(f"trial {trial.number} {cid}: fidelity {k + 1}/{self.cfg.rungs} ({budget:g} s) "
                     f"val {head} {score:.4f}")
            if k + 1 < self.cfg.rungs and trial.should_prune():
                raise optuna.TrialPruned(f"stopped after fidelity {k + 1}")
        return score


def _headline(result: dict[str, Any]) -> str:
    from edgeseg.tasks import get_task

    return get_task(result["metrics"].get("task", "semantic")).headline.key


def run_queue(study: Any, trials: Trials, deadline: float | None) -> None:
    """Take queued trials until none is left (or ``deadline``, a ``time.monotonic()`` value, passed)."""
    import optuna

    while deadline is None or time.monotonic() < deadline:
        waiting = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,))
        if not waiting:
            return
        study.optimize(trials.objective, n_trials=1, catch=())


def finished(study: Any) -> bool:
    """No trial is queued or running (the study is done, on every process)."""
    import optuna

    states = (optuna.trial.TrialState.WAITING, optuna.trial.TrialState.RUNNING)
    return not study.get_trials(deepcopy=False, states=states)


__all__ = ["Trials", "candidate_of", "finished", "open_study", "queue", "rdb_storage", "run_queue", "serialize_sqlite",
           "storage_url"]
