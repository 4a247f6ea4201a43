"""Running a study: plan the runs, execute them (here, through joblib or on a Dask cluster) with a
results cache, choose each family's strength per seed on validation data, and refit.

Every run is a pure function of its config, a JSON-able dict holding everything the result
depends on (task options, family, strength, seed, fold, whether it scores the test set, the
backend, ``STUDY_VERSION``). Its key is the SHA-256 of the config's canonical JSON; finished runs
are written to ``OUT/cache/<key>.json`` the moment they complete, so an interrupted or extended
study (more seeds, more families) recomputes nothing that finished. Failed runs are recorded with
their error and do not stop the study (and are tried again on the next start).

Protocol, for each family and seed:
- held out (default): every strength of the family's grid trains on the seed's training part and
  is validated on its validation part; the strength with the best validation score is chosen
  (ties: the lower validation loss, then the earlier grid entry). These runs also score the test
  set, which only the figures of the regularization path show; choosing reads validation numbers
  only (``choose``), and the chosen run's test score is the family's result for that seed.
- k-fold (``cv=K``): every strength trains on K-1 folds of the seed's development data and is
  validated on the remaining one, K times; these runs never load the test labels. The strength
  with the best mean validation score is then refit on all the development data, and that model
  alone is scored on the test set.
A family without a strength (none, batch norm, ...) skips the choice.

Runs execute one after the other in this process, in ``jobs`` processes (joblib), or on a Dask
cluster (``dask_scheduler``); the numbers are the same in every case, only the seconds differ.
A scheduler that does not answer within ``connect_timeout`` seconds is an error before any run;
when the cluster has had no worker for ``worker_grace`` seconds the study stops with an error.
"""
import dataclasses
import hashlib
import importlib.util
import json
import os
import threading
import time
import traceback
import warnings

from minireg import check
from minireg._threads import blas_threads
from minireg.errors import ArgumentError, MiniregError

STUDY_VERSION = "2"
_RUN_LOCK = threading.Lock()    # minireg's seed is per process: one run at a time in a process


class StudyError(MiniregError, RuntimeError):
    """The study cannot go on (an unreachable or vanished cluster, an unwritable output directory)."""


def config_key(config):
    """The cache key of a run: SHA-256 of its canonical JSON."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def execute(config, threads=1):
    """Run ``config`` and return its record: ``{key, config, status, result | error, seconds}``.

    A failing run gives ``status: "failed"`` with the error and its traceback instead of raising.
    """
    from minireg.study.tasks import get_task
    start = time.perf_counter()
    record = {"key": config_key(config), "config": config}
    try:
        with _RUN_LOCK, blas_threads(threads):
            result = get_task(config["task"]).run(config)
        record.update(status="ok", result=result)
    except Exception as exc:       # recorded, the study goes on
        record.update(status="failed", error=f"{type(exc).__name__}: {exc}",
                      traceback=traceback.format_exc(limit=6))
    record["seconds"] = time.perf_counter() - start
    return record


# -- the cache ---------------------------------------------------------------------------------------
class Cache:
    """Finished runs as ``DIR/<key>.json`` (written atomically)."""

    def __init__(self, directory):
        self.directory = directory
        os.makedirs(directory, exist_ok=True)

    def path(self, key):
        return os.path.join(self.directory, f"{key}.json")

    def get(self, config):
        try:
            with open(self.path(config_key(config))) as f:
                record = json.load(f)
        except (OSError, ValueError):
            return None
        return record if record.get("config") == config and record.get("status") == "ok" else None

    def put(self, record):
        if record["status"] != "ok":
            return
        path = self.path(record["key"])
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            json.dump(record, f, allow_nan=True)
        os.replace(tmp, path)


# -- executors ---------------------------------------------------------------------------------------
class Serial:
    """One run after the other in this process."""
    name = "serial"

    def __init__(self, threads=1):
        self.threads = threads

    def map(self, configs):
        for config in configs:
            yield execute(config, self.threads)


class Joblib:
    """``jobs`` processes through joblib (loky); results arrive as they finish."""
    name = "joblib"

    def __init__(self, jobs, threads=1):
        self.jobs, self.threads = jobs, threads

    def map(self, configs):
        import joblib
        yield from joblib.Parallel(n_jobs=self.jobs, return_as="generator_unordered")(
            joblib.delayed(execute)(config, self.threads) for config in configs)


class Dask:
    """A Dask cluster through ``distributed`` (connected at construction)."""
    name = "dask"

    def __init__(self, address, threads=1, connect_timeout=10.0, worker_grace=30.0, poll=0.5):
        try:
            from distributed import Client
        except ImportError:
            raise StudyError("--dask-scheduler needs dask.distributed: pip install 'dask[distributed]'") from None
        self.address, self.threads, self.worker_grace, self.poll = address, threads, worker_grace, poll
        try:
            self.client = Client(address, timeout=connect_timeout, set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise StudyError(f"--dask-scheduler {address}: no Dask scheduler answered within {connect_timeout:g} s "
                             f"({type(exc).__name__}); start one with `dask scheduler` and workers with "
                             f"`dask worker {address}`, or check the address") from None

    def close(self):
        self.client.close()

    def map(self, configs):
        futures = {self.client.submit(execute, config, self.threads, key=f"minireg-study-{config_key(config)}",
                                      pure=False): config for config in configs}
        pending, alone_since = list(futures), None
        try:
            while pending:
                done = [future for future in pending if future.done()]
                pending = [future for future in pending if not future.done()]
                for future in done:
                    try:
                        yield future.result()
                    except Exception as exc:       # e.g. KilledWorker: the run killed its workers
                        yield {"key": config_key(futures[future]), "config": futures[future], "status": "failed",
                               "error": f"{type(exc).__name__}: {exc}", "seconds": 0.0}
                if done or not pending:
                    continue
                time.sleep(self.poll)
                if self._count_workers() > 0:
                    alone_since = None
                elif alone_since is None:
                    alone_since = time.monotonic()
                elif time.monotonic() - alone_since > self.worker_grace:
                    raise StudyError(f"the Dask cluster at {self.address} has had no worker for "
                                     f"{self.worker_grace:g} s with {len(pending)} runs left; the finished runs are "
                                     f"in the cache: start workers and run the study again to resume")
        finally:
            for future in pending:
                future.cancel()

    def _count_workers(self):
        try:
            return len(self.client.scheduler_info()["workers"])
        except (OSError, TimeoutError) as exc:
            raise StudyError(f"lost the Dask scheduler at {self.address}: {exc}") from None


# -- the plan ----------------------------------------------------------------------------------------
class Plan:
    """The runs of one study and how their points combine (see the module docstring)."""

    def __init__(self, task, options, family_names, seeds, cv, preset, backend):
        self.task, self.options, self.family_names = task, options, tuple(family_names)
        self.seeds, self.cv, self.preset, self.backend = tuple(seeds), cv, preset, backend
        self.families = [task.family(name) for name in self.family_names]

    def grid(self, family):
        return family.strengths(self.preset)

    def _config(self, family, seed, strengths, fold, score_test):
        config = {"task": self.task.name, **self.options, "family": family.name, "seed": seed,
                  "folds": self.cv, "fold": fold, "score_test": score_test, "backend": self.backend,
                  "study_version": STUDY_VERSION}
        if self.task.path_runs:
            config["strengths"] = list(strengths)
        else:
            (config["strength"],) = strengths
        return config

    def _grid_configs(self, family, seed, fold, score_test):
        grid = self.grid(family)
        if self.task.path_runs:
            return [self._config(family, seed, grid, fold, score_test)]
        return [self._config(family, seed, (a,), fold, score_test) for a in grid]

    def selection_configs(self):
        """Held out: every grid point of every family (each a candidate final model). k-fold: every
        grid point and fold of the families with a strength to choose."""
        configs = []
        for family in self.families:
            for seed in self.seeds:
                if self.cv is None:
                    configs += self._grid_configs(family, seed, None, True)
                elif family.tuned:
                    for fold in range(self.cv):
                        configs += self._grid_configs(family, seed, fold, False)
        return configs

    def final_configs(self, chosen):
        """k-fold only: the refit of each family's chosen strength on all development data."""
        if self.cv is None:
            return []
        return [self._config(family, seed, (chosen[family.name][seed],), None, True)
                for family in self.families for seed in self.seeds if chosen[family.name].get(seed, "failed")
                != "failed"]

    def count_final(self):
        return 0 if self.cv is None else len(self.families) * len(self.seeds)

    @staticmethod
    def points(record):
        """``[(strength, point)]`` of a finished run (a path run has one point per strength)."""
        if record["status"] != "ok":
            return []
        config, result = record["config"], record["result"]
        if "strengths" in config:
            return list(zip(config["strengths"], result["path"]))
        return [(config["strength"], result)]

    def choose(self, records):
        """``{family: {seed: strength}}`` from validation scores only (``"failed"`` when no grid point
        of that family and seed finished)."""
        scores = {}      # (family, seed, strength) -> list of (score, tiebreak) over folds
        for record in records:
            config = record["config"]
            for strength, point in self.points(record):
                scores.setdefault((config["family"], config["seed"], strength), []).append(self._score(point))
        folds = 1 if self.cv is None else self.cv
        chosen = {}
        for family in self.families:
            chosen[family.name] = {}
            for seed in self.seeds:
                grid = self.grid(family)
                if self.cv is not None and not family.tuned:
                    chosen[family.name][seed] = grid[0]
                    continue
                complete = [(i, a) for i, a in enumerate(grid) if len(scores.get((family.name, seed, a), ())) == folds]
                if not complete:
                    chosen[family.name][seed] = "failed"
                    continue

                def rank(item):
                    i, a = item
                    values = scores[(family.name, seed, a)]
                    return (sum(v[0] for v in values) / folds, sum(v[1] for v in values) / folds, -i)
                chosen[family.name][seed] = max(complete, key=rank)[1]
        return chosen

    def _score(self, point):
        """(validation score, tie-break), both to maximize."""
        value = self.task.select.value(point)
        value = value if self.task.select.higher_is_better else -value
        loss = point["validation"].get("loss") if isinstance(point.get("validation"), dict) else None
        return value, -loss if loss is not None else 0.0

    def final_points(self, records, chosen):
        """``{family: {seed: (strength, point, record)}}``: the model that scores each family and seed."""
        finals = {family.name: {} for family in self.families}
        for record in records:
            config = record["config"]
            if not config["score_test"] or config["family"] not in finals:
                continue
            if self.cv is not None and config["fold"] is not None:
                continue
            for strength, point in self.points(record):
                if chosen[config["family"]].get(config["seed"]) == strength:
                    finals[config["family"]][config["seed"]] = (strength, point, record)
        return finals


# -- the study -----------------------------------------------------------------------------------------
def progress_bar(total, initial, enabled):
    """A tqdm bar over runs (with its ETA), or None without tqdm or when disabled."""
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, initial=initial, unit="run", desc="study", dynamic_ncols=True)


def execute_all(configs, executor, cache, bar, on_record=None):
    """Records of ``configs``: cached ones at once, the others run by ``executor`` and cached as
    each completes. ``on_record(record)`` is called for every fresh record."""
    records, todo = [], []
    for config in configs:
        cached = cache.get(config)
        (records.append(cached) if cached is not None else todo.append(config))
    if bar is not None and records:
        bar.update(len(records))
    for record in executor.map(todo):
        cache.put(record)
        records.append(record)
        if on_record is not None:
            on_record(record)
        if bar is not None:
            bar.set_postfix_str(f"{record['config']['family']} seed {record['config']['seed']}"
                                + ("" if record["status"] == "ok" else " FAILED"), refresh=False)
            bar.update(1)
    return records


# -- options, checked before the first run ---------------------------------------------------------------
def _families(task, only, default):
    if only is None:
        return tuple(default)
    names = [n.strip() for n in (only.split(",") if isinstance(only, str) else only)]
    names = [n for n in names if n]
    if not names:
        raise ArgumentError(f"--only names no family; valid names: {', '.join(task.registry)}")
    for name in names:
        task.family(name)
    return tuple(dict.fromkeys(names))


def writable_directory(out):
    """Create ``out`` and prove that files can be written there (an ArgumentError otherwise)."""
    if not isinstance(out, (str, os.PathLike)) or not str(out):
        raise ArgumentError(f"--out must be a directory path, got {out!r}")
    out = os.fspath(out)
    try:
        os.makedirs(os.path.join(out, "cache"), exist_ok=True)
        probe = os.path.join(out, f".write-test-{os.getpid()}")
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as exc:
        raise ArgumentError(f"--out {out!r} is not a writable directory ({exc.strerror or exc}); choose another "
                            f"--out") from None
    return out


def check_options(task=None, preset="default", seeds=None, only=None, cv=None, epochs=None, jobs=1,
                  dask_scheduler=None, threads=1, num_eval=None, conditional=None):
    """Every option checked and normalised (before any run): ``(task, options, families, seeds, cv)``."""
    from minireg.study.gan import MIN_NUM_EVAL
    from minireg.study.tasks import DEFAULT_TASK, get_task
    task = get_task(DEFAULT_TASK if task is None else task)
    check.choice("--preset", preset, ("default", "full"))
    options, default_families, default_seeds = task.preset(preset)
    families = _families(task, only, default_families)
    seeds = default_seeds if seeds is None else check.positive_int("--seeds", seeds)
    if cv is not None:
        cv = check.integer("--cv", cv, low=2)
        if task.kind == "gan":
            raise ArgumentError("--cv: the GAN tasks choose strengths by validation FID on held-out real images; "
                                "k-fold cross-validation applies to the classification and regression tasks")
        size = options.get("train_size", 0) + options.get("val_size", 0) or 353
        if cv > size // 2:
            raise ArgumentError(f"--cv {cv} leaves fewer than 2 samples per fold of the {size} development samples")
    if epochs is not None:
        epochs = check.positive_int(f"--{task.budget_key or 'epochs'}", epochs)
        if task.budget_key is None:
            raise ArgumentError(f"--epochs: {task.name} has no training epochs (its solver runs to convergence)")
        options[task.budget_key] = epochs
    check.positive_int("--jobs", jobs)
    check.positive_int("--threads", threads)
    if dask_scheduler is not None:
        if not isinstance(dask_scheduler, str) or not dask_scheduler.strip():
            raise ArgumentError(f"--dask-scheduler must be an address such as tcp://127.0.0.1:8786, got "
                                f"{dask_scheduler!r}")
        if jobs != 1:
            raise ArgumentError("give either --jobs or --dask-scheduler, not both (Dask decides the parallelism)")
    for name, value in (("--num-eval", num_eval), ("--conditional", conditional)):
        if value is not None and task.kind != "gan":
            raise ArgumentError(f"{name} applies to the GAN tasks only, not to {task.name}")
    if num_eval is not None:
        options["num_eval"] = check.integer("--num-eval", num_eval, low=MIN_NUM_EVAL)
    if conditional is not None:
        options["conditional"] = check.flag("--conditional", conditional)
    return task, options, families, tuple(range(seeds)), cv


@dataclasses.dataclass
class StudyResult:
    summary: dict      # what results.json holds
    table: str         # the plain-text table
    files: dict        # kind -> path


def run_study(task=None, preset="default", seeds=None, only=None, cv=None, epochs=None, jobs=1, dask_scheduler=None,
              out="runs/study", progress=True, figures=True, threads=1, num_eval=None, conditional=None,
              connect_timeout=10.0, worker_grace=30.0):
    """Run a study and write its outputs under ``out``; returns a ``StudyResult``.

    Every option, the output directory, the data and the optional dependencies are checked before
    the first run (a ``MiniregError`` naming the option otherwise); see the module docstring.
    """
    import minireg as mr
    from minireg.study import report
    task, options, families, seed_list, cv = check_options(task, preset, seeds, only, cv, epochs, jobs,
                                                           dask_scheduler, threads, num_eval, conditional)
    out = writable_directory(out)
    if task.requires is not None:
        task.requires()
    if jobs > 1 and importlib.util.find_spec("joblib") is None:
        raise StudyError("--jobs needs joblib: pip install 'minireg[study]'")
    if figures and importlib.util.find_spec("matplotlib") is None:
        warnings.warn(report.NO_FIGURES, stacklevel=2)
        figures = False
    plan = Plan(task, options, families, seed_list, cv, preset, mr.current_backend().name)
    if dask_scheduler is not None:
        executor = Dask(dask_scheduler, threads, connect_timeout, worker_grace)
    elif jobs > 1:
        executor = Joblib(jobs, threads)
    else:
        executor = Serial(threads)
    cache = Cache(os.path.join(out, "cache"))
    selection = plan.selection_configs()
    started = time.perf_counter()
    bar = progress_bar(len(selection) + plan.count_final(), 0, progress)
    try:
        records = execute_all(selection, executor, cache, bar)
        chosen = plan.choose(records)
        records += execute_all(plan.final_configs(chosen), executor, cache, bar)
    finally:
        if bar is not None:
            bar.close()
        if isinstance(executor, Dask):
            executor.close()
    settings = {"task": task.name, "title": task.title, "preset": preset, "seeds": list(seed_list), "cv": cv,
                "options": options, "backend": plan.backend, "executor": executor.name, "jobs": jobs,
                "dask_scheduler": dask_scheduler, "threads": threads, "study_version": STUDY_VERSION,
                "total_seconds": time.perf_counter() - started}
    summary = report.summarize(plan, records, chosen, settings)
    files = report.write_outputs(out, summary, plan, figures)
    return StudyResult(summary, report.format_table(summary), files)
