"""The Optuna multi-objective study: objective function, samplers, storage, the search loop."""

from __future__ import annotations

import importlib
import logging
import os
import platform
import socket
import sqlite3
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import optuna
import torch

from nas.architecture import Architecture
from nas.artifacts import WEIGHTS_ATTR, artifact_dir, save_trial_weights
from nas.budget import Budget, EarlyStopRule, savings_summary
from nas.compress import prune, to_precision
from nas.config import (
    PROFILES_DIR,
    SPACES_DIR,
    HardwareProfile,
    SearchSpace,
    parse_profile,
    parse_space,
    read_yaml,
    resolve_named,
    runtime_precisions,
)
from nas.data import Dataset, load_dataset
from nas.energy import EnergyRecord, Meter, Workload, create_meter
from nas.energy.estimate import EstimateMeter
from nas.errors import ConfigError, NasError, RunError, StorageError, TrialFault
from nas.models import ModelStats, build_model, model_stats
from nas.objectives import Objective, parse_objectives
from nas.pareto import TrialRecord, pareto_front
from nas.runs import SETTINGS_ATTR, RunFolder, redact_url, trial_records, write_front, write_json
from nas.space import sample
from nas.storage import count_trials, set_user_attrs
from nas.tabular import TableObjective
from nas.train import (
    TrainConfig,
    TrainResult,
    accuracy,
    add_work,
    set_threads,
    train,
    training_work,
)

CALIBRATION_SAMPLES = 256  # training inputs that calibrate int8 activation ranges

# ------------------------------------------------------------------------------------ samplers
SAMPLERS: dict[str, Callable[[int], optuna.samplers.BaseSampler]] = {
    "tpe": lambda seed: optuna.samplers.TPESampler(seed=seed, n_startup_trials=10),
    "nsga2": lambda seed: optuna.samplers.NSGAIISampler(seed=seed, population_size=10),
    "nsga3": lambda seed: optuna.samplers.NSGAIIISampler(seed=seed, population_size=10),
    "random": lambda seed: optuna.samplers.RandomSampler(seed=seed),
    "gp": lambda seed: optuna.samplers.GPSampler(seed=seed, n_startup_trials=10),
}


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    if name not in SAMPLERS:
        raise ConfigError(f"unknown sampler {name!r} (valid: {', '.join(SAMPLERS)})")
    return SAMPLERS[name](seed)


# ------------------------------------------------------------------------------------ settings
@dataclass(frozen=True)
class SearchSettings:
    """Everything a search needs; defaults are the embedded single-machine set-up."""

    space: str = "mlp"
    profile: str = "cpu-host"
    dataset: str = "digits"
    trials: int = 20
    timeout_s: float | None = None
    epochs: int = 3
    sampler: str = "tpe"
    objectives: tuple[str, ...] = ("accuracy", "energy")
    seed: int = 0
    out: str = "runs/default"
    study_name: str | None = None
    storage: str | None = None
    threads: int = 1
    batch_size: int = 64
    lr: float = 3e-3
    split_seed: int = 0
    allow_estimate: bool = False
    energy_budget_j: float | None = None
    latency_budget_s: float | None = None
    early_stop: bool = False
    early_stop_k: int = 3
    table: str | None = None  # replay evaluations from a `nas bench build` table instead of training
    progress: bool = False
    workers: int = 1  # local worker processes (nas.workers)
    share_device: bool = False  # allow more workers than measured devices

    def validate(self) -> None:
        if self.trials < 1:
            raise ConfigError(f"--trials: expected an integer >= 1, got {self.trials}")
        if self.epochs < 1:
            raise ConfigError(f"--epochs: expected an integer >= 1, got {self.epochs}")
        if self.timeout_s is not None and self.timeout_s <= 0:
            raise ConfigError(f"--timeout: expected seconds > 0, got {self.timeout_s}")
        if self.threads < 1:
            raise ConfigError(f"--threads: expected an integer >= 1, got {self.threads}")
        if self.workers < 1:
            raise ConfigError(f"--workers: expected an integer >= 1, got {self.workers}")
        if self.sampler not in SAMPLERS:
            raise ConfigError(f"unknown sampler {self.sampler!r} (valid: {', '.join(SAMPLERS)})")
        for flag, value in (("--energy-budget", self.energy_budget_j), ("--latency-budget", self.latency_budget_s)):
            if value is not None and not value > 0:
                raise ConfigError(f"{flag}: expected a number > 0, got {value}")
        if self.early_stop_k < 1:
            raise ConfigError(f"--early-stop-k: expected an integer >= 1, got {self.early_stop_k}")


# The settings that define what a trial's numbers mean: a study resumed with different values
# would mix incomparable trials, so resuming with them changed is refused.
FINGERPRINT = ("space", "profile", "dataset", "objectives", "epochs", "batch_size", "lr", "split_seed", "meter", "table")


@dataclass
class SearchContext:
    """What every trial of a search shares, resolved once."""

    settings: SearchSettings
    space: SearchSpace
    space_doc: Any
    profile: HardwareProfile
    profile_doc: Any
    data: Dataset
    objectives: tuple[Objective, ...]
    meter: Meter
    host: str = field(default_factory=socket.gethostname)
    table: Any = None  # a loaded nas.tabular.Table in replay mode
    artifact_dir: Path | None = None  # where trained weights are kept (RUN/artifacts); None: not kept

    @property
    def device(self) -> torch.device:
        return torch.device(self.meter.torch_device)

    def resolved(self) -> dict[str, Any]:
        """The settings as stored with the study and in run.json (no credentials)."""
        s = asdict(self.settings)
        s["storage"] = redact_url(s["storage"]) if s["storage"] else None
        s["objectives"] = [o.name for o in self.objectives]
        s["space"] = self.space.name
        s["profile"] = self.profile.name
        s["meter"] = self.meter.name
        s["runtime"] = self.profile.runtime.to_dict()
        s.pop("progress", None)
        return s


def prepare(settings: SearchSettings) -> SearchContext:
    """Load and check everything a search needs before any storage is touched."""
    settings.validate()
    if settings.table:
        return _table_context(settings)
    space_path = resolve_named(settings.space, SPACES_DIR, "search space")
    space_doc = read_yaml(space_path)
    space = parse_space(space_doc, str(space_path), space_path.stem)
    profile_path = resolve_named(settings.profile, PROFILES_DIR, "hardware profile")
    profile_doc = read_yaml(profile_path)
    profile = parse_profile(profile_doc, str(profile_path), profile_path.stem)
    return _context(settings, space, space_doc, profile, profile_doc)


def _table_context(settings: SearchSettings) -> SearchContext:
    """Space, profile, dataset and training settings come from the table being replayed."""
    from nas.tabular import load_table

    table = load_table(settings.table)
    t = table.settings
    settings = replace(
        settings, space=t["space"], profile=t["profile"], dataset=t["dataset"], epochs=t["epochs"],
        batch_size=t["batch_size"], lr=t["lr"], split_seed=t["split_seed"], allow_estimate=t["allow_estimate"],
        objectives=tuple(o for o in settings.objectives if o in t["objectives"]) or tuple(t["objectives"]),
    )
    space = parse_space(table.space_doc, f"{settings.table} (table space)", t["space"])
    profile = parse_profile(table.profile_doc, f"{settings.table} (table profile)", t["profile"])
    ctx = _context(settings, space, table.space_doc, profile, table.profile_doc)
    ctx.table = table
    return ctx


def _context(settings, space, space_doc, profile, profile_doc) -> SearchContext:
    objectives = parse_objectives(settings.objectives)
    data = load_dataset(settings.dataset, settings.split_seed)
    meter = create_meter(profile, allow_estimate=settings.allow_estimate)
    check_precisions(space, profile, meter)
    return SearchContext(settings, space, space_doc, profile, profile_doc, data, objectives, meter)


def check_precisions(space: SearchSpace, profile: HardwareProfile, meter: Meter) -> None:
    """Every precision the space can sample must run on the profile's device."""
    wanted = next((p.choices for p in space.params if p.name == "precision"), (profile.precision,))
    runs = runtime_precisions(profile.runtime.name)
    for precision in wanted:
        if precision not in runs:
            raise ConfigError(
                f"{space.source}: field 'params.precision': {precision!r} does not run in runtime "
                f"{profile.runtime.name!r} of profile {profile.name!r} (it runs {', '.join(runs)})"
            )
        if precision not in profile.precisions:
            raise ConfigError(
                f"{space.source}: field 'params.precision': {precision!r} does not run on profile "
                f"{profile.name!r} (its device.precisions: {', '.join(profile.precisions)})"
            )
        if precision == "int8" and meter.torch_device != "cpu":
            raise ConfigError(
                f"{space.source}: field 'params.precision': int8 candidates run on CPU quantized kernels; "
                f"profile {profile.name!r} measures a {meter.torch_device} device (remove int8 or use a CPU profile)"
            )


def context_from_study(study: optuna.Study, **overrides: Any) -> SearchContext:
    """Rebuild a search's context from what the study stores (for workers joining it)."""
    attrs = study.user_attrs
    if SETTINGS_ATTR not in attrs:
        raise RunError(f"study {study.study_name!r} was not created by energy-nas (no {SETTINGS_ATTR})")
    stored = dict(attrs[SETTINGS_ATTR])
    stored.pop("meter", None)
    stored["objectives"] = tuple(stored["objectives"])
    known = SearchSettings.__dataclass_fields__  # a newer version may store more
    settings = replace(SearchSettings(**{k: v for k, v in stored.items() if k in known}), **overrides)
    where = f"study {study.study_name!r}"
    space = parse_space(attrs["nas.space"], f"{where} (stored space)", stored["space"])
    profile = parse_profile(attrs["nas.profile"], f"{where} (stored profile)", stored["profile"])
    return _context(settings, space, attrs["nas.space"], profile, attrs["nas.profile"])


# ------------------------------------------------------------------------------------ one trial
def inference_batch(data: Dataset, batch_size: int, device: torch.device) -> torch.Tensor:
    """`batch_size` real inputs (repeated if the split is smaller) on `device`."""
    x = data.x_train
    reps = -(-batch_size // len(x))
    return x.repeat(reps, *([1] * (x.dim() - 1)))[:batch_size].to(device)


def measure_model(
    meter: Meter, model: torch.nn.Module, stats: ModelStats, data: Dataset, profile: HardwareProfile,
    precision: str | None = None, device: torch.device | None = None,
) -> EnergyRecord:
    """Energy per inference of `model` at the profile's batch size, holding the device lock."""
    device = device or torch.device(meter.torch_device)
    model = model.to(device).eval()
    work = Workload(model, inference_batch(data, profile.batch_size, device), stats, precision or profile.precision)
    with meter.device_lock():
        return meter.measure_inference(work)


class TrialObjective:
    """The function Optuna calls for each trial."""

    def __init__(self, ctx: SearchContext, fixed_seed: int | None = None) -> None:
        self.ctx = ctx
        self.fixed_seed = fixed_seed  # train every trial with this seed (re-running one trial's setup)
        s = ctx.settings
        self.budget = Budget(s.energy_budget_j, s.latency_budget_s)
        self.rule = EarlyStopRule(s.early_stop_k)
        self.model: torch.nn.Module | None = None

    def _over_budget(self, trial, attrs, full_stats, phases, lap) -> tuple[float, ...]:
        """Record an over-budget candidate as infeasible without training it."""
        s, ctx = self.ctx.settings, self.ctx
        samples = s.epochs * len(ctx.data.y_train)
        would_cost = EstimateMeter(ctx.profile).estimate_work(
            training_work(full_stats, TrainResult(s.epochs, samples, 0.0, False, 0.0), s.batch_size)
        )
        attrs = {**attrs, "over_budget": True, "val_accuracy": 0.0, "test_accuracy": None,
                 "training_saved_j": would_cost.energy_j, "training_saved_method": would_cost.method}
        set_user_attrs(trial, attrs)
        lap("store")
        trial.set_user_attr("phases_s", phases)
        values = {"accuracy": 0.0, "energy": attrs["energy_per_inference_j"], "latency": attrs["latency_s"],
                  "params": float(attrs["params"])}
        return tuple(values[o.name] for o in ctx.objectives)

    def _early_stop_hook(self, energy_j: float, history: list[float]):
        finished = [
            (t.user_attrs["energy_per_inference_j"], t.user_attrs.get("val_accuracy_history", ()))
            for t in self._study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            if "energy_per_inference_j" in t.user_attrs and not t.user_attrs.get("over_budget")
        ]
        data = self.ctx.data

        def on_epoch(epoch: int, model: torch.nn.Module) -> bool:
            history.append(accuracy(model, data.x_val, data.y_val))
            return self.rule.should_stop(epoch, history[-1], energy_j, finished)

        return on_epoch

    def __call__(self, trial: optuna.Trial) -> tuple[float, ...]:
        # who runs the trial, from its start: a restarted search fails it at once if this process dies
        set_user_attrs(trial, {"host": self.ctx.host, "pid": os.getpid()})
        try:
            return self._run(trial)
        except TrialFault as e:
            trial.set_user_attr("fail_reason", e.reason)
            trial.set_user_attr("fail_message", str(e))
            raise
        except KeyboardInterrupt:
            trial.set_user_attr("fail_reason", "interrupted")
            raise
        except NasError as e:
            trial.set_user_attr("fail_reason", f"error:{e.__class__.__name__}")
            trial.set_user_attr("fail_message", str(e)[:500])
            raise  # a configuration or sensor problem: stop the search, don't retry
        except Exception as e:
            if _out_of_memory(e):
                trial.set_user_attr("fail_reason", "out_of_memory")
                trial.set_user_attr("fail_message", str(e).splitlines()[0] if str(e) else "out of memory")
                raise TrialFault("out_of_memory", str(e)) from e
            reason = f"exception:{e.__class__.__name__}"
            trial.set_user_attr("fail_reason", reason)
            trial.set_user_attr("fail_message", str(e)[:500])
            raise TrialFault(reason, str(e)) from e

    def _run(self, trial: optuna.Trial) -> tuple[float, ...]:
        ctx, s = self.ctx, self.ctx.settings
        self._study = trial.study
        self.model = None
        phases: dict[str, float] = {}
        t = time.perf_counter()

        def lap(name: str) -> None:
            nonlocal t
            now = time.perf_counter()
            phases[name] = phases.get(name, 0.0) + now - t
            t = now

        arch = sample(trial, ctx.space)
        lap("sample")
        seed = self.fixed_seed if self.fixed_seed is not None else s.seed * 1_000_003 + trial.number
        torch.manual_seed(seed)
        model = build_model(arch, ctx.data.input_shape, ctx.data.num_classes)
        precision = str(arch.params.get("precision", ctx.profile.precision))
        prune_ratio = float(arch.params.get("prune_ratio", 0.0))
        full_stats = model_stats(model, ctx.data.input_shape)
        # Measure first: the deployed form's shape (pruned, at its precision) is known before
        # training, and a dense model's inference energy does not depend on its weights' values.
        # (It would for sparse kernels or data-dependent early exits, which we do not build.)
        deployed = prune(model, arch.family, prune_ratio) if prune_ratio else model
        stats = model_stats(deployed, ctx.data.input_shape) if prune_ratio else full_stats
        calibration = ctx.data.x_train[:CALIBRATION_SAMPLES]
        deployed = to_precision(deployed, precision, calibration)
        lap("build")
        record = measure_model(ctx.meter, deployed, stats, ctx.data, ctx.profile, precision,
                               torch.device("cpu") if precision == "int8" else ctx.device)
        lap("measure")
        base_attrs = {
            "architecture": arch.to_dict(), "arch": arch.describe(), "params": stats.params, "macs": stats.macs,
            "precision": precision, "prune_ratio": prune_ratio,
            "energy_per_inference_j": record.energy_per_inference_j, "energy_method": record.method,
            "latency_s": record.latency_s, "energy": record.to_dict(), "seed": seed, "host": ctx.host,
            "device": record.device_name,
        }
        if prune_ratio:
            base_attrs.update(params_before_pruning=full_stats.params, macs_before_pruning=full_stats.macs)
        violations = self.budget.violations(record.energy_per_inference_j, record.latency_s)
        for name, value in violations.items():
            trial.set_constraint(name, value)
        if any(v > 0 for v in violations.values()):
            return self._over_budget(trial, base_attrs, full_stats, phases, lap)

        finetune = max(1, s.epochs // 3) if prune_ratio and s.epochs >= 2 else 0
        history: list[float] = []
        on_epoch = self._early_stop_hook(record.energy_per_inference_j, history) if s.early_stop else None
        ctx.meter.begin_window()
        result = train(model, ctx.data, TrainConfig(s.epochs - finetune, s.batch_size, s.lr, seed), ctx.device, on_epoch)
        work = training_work(full_stats, result, s.batch_size)
        if prune_ratio:
            model = prune(model, arch.family, prune_ratio)
            tuned = train(model, ctx.data, TrainConfig(finetune, s.batch_size, s.lr, seed + 1), ctx.device) if finetune else None
            if tuned is not None:
                work = add_work(work, training_work(stats, tuned, s.batch_size))
                result = replace(result, epochs_done=result.epochs_done + tuned.epochs_done,
                                 samples_seen=result.samples_seen + tuned.samples_seen,
                                 final_loss=tuned.final_loss, duration_s=result.duration_s + tuned.duration_s)
        reading = ctx.meter.end_window(work)
        lap("train")
        deployed = to_precision(model, precision, calibration)
        val_acc = accuracy(deployed, ctx.data.x_val, ctx.data.y_val)
        test_acc = accuracy(deployed, ctx.data.x_test, ctx.data.y_test)
        lap("evaluate")
        self.model = model  # the trained float model (pruned), for whoever keeps weights
        values = {
            "accuracy": val_acc,
            "energy": record.energy_per_inference_j,
            "latency": record.latency_s,
            "params": float(stats.params),
        }
        attrs = {
            **base_attrs,
            "val_accuracy": val_acc,
            "test_accuracy": test_acc,
            "training": {
                "energy_j": reading.energy_j,
                "method": reading.method,
                # sensor meters: the idle-subtracted figure and the idle power it used (None: estimate)
                "net_energy_j": reading.net_energy_j,
                "idle_power_w": reading.idle_power_w,
                "duration_s": result.duration_s,
                "epochs": result.epochs_done,
                "samples": result.samples_seen,
                "final_loss": result.final_loss,
            },
        }
        if s.early_stop:
            attrs["val_accuracy_history"] = history
            if result.stopped_early:
                attrs["stopped_early_at_epoch"] = result.epochs_done
                # the epochs not run would have cost what the run ones did, per epoch
                attrs["training_saved_j"] = reading.energy_j / result.epochs_done * (s.epochs - result.epochs_done)
        if ctx.artifact_dir is not None:
            attrs[WEIGHTS_ATTR] = save_trial_weights(trial, model, ctx.artifact_dir)
        set_user_attrs(trial, attrs)
        lap("store")
        trial.set_user_attr("phases_s", phases)
        return tuple(values[o.name] for o in ctx.objectives)


# ------------------------------------------------------------------------------------ the study
def quiet_optuna() -> None:
    """Our own progress and summary replace Optuna's per-trial log lines."""
    import warnings

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    trial_log = logging.getLogger("optuna.study._optimize")
    if not any(isinstance(f, _OneLineFailures) for f in trial_log.filters):
        trial_log.addFilter(_OneLineFailures())


class _OneLineFailures(logging.Filter):
    """A failed trial is one warning line: its reason is stored with the trial, and a traceback
    (Optuna logs one for every failure, Ctrl-C included) reads like a crash of the search."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.exc_info = record.exc_text = None
        return " failed with value None" not in record.getMessage()


def open_storage(url: str, heartbeat: bool = True) -> optuna.storages.BaseStorage:
    """An RDB storage for `url`; with `heartbeat`, trials of dead workers are failed and retried.

    Heartbeats cost a thread and a write per trial (about 20 ms on SQLite on a 2-core machine), so
    a lone search on its run folder's SQLite goes without: when it is rerun after a crash, it fails
    and retries its lost trial at once from the process id (nas.workers.recover_lost_trials).

    SQLite runs in WAL mode (readers never block the writer) with synchronous=NORMAL (see
    _WalConnection) and waits up to 60 s for a lock instead of failing with "database is locked";
    PostgreSQL gives up connecting after 10 s.
    """
    import warnings

    from nas.workers import heartbeat_kwargs

    netloc = url.split("://", 1)[-1].split("/", 1)[0]
    if netloc.count("@") > 1:  # drivers would read part of the password as the host, and print it
        raise StorageError(
            f"storage {url.split('://', 1)[0]}://***: the user name or password contains '@'; write it as %40"
        )
    kwargs: dict[str, Any] = {}
    try:
        if url.startswith("sqlite"):
            _sqlite_wal(url)
            kwargs = {"connect_args": {"timeout": 60, "factory": _WalConnection}}
        elif url.startswith("postgresql"):
            kwargs = {"connect_args": {"connect_timeout": 10}}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(url, engine_kwargs=kwargs, **(heartbeat_kwargs() if heartbeat else {}))
    except Exception as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        msg = _without_password(redact_url(msg) if "://" in msg else msg, url)
        hint = " (no database driver for this URL; PostgreSQL: postgresql+psycopg://)" if isinstance(e, ImportError) else ""
        raise StorageError(f"storage {redact_url(url)}: cannot open ({e.__class__.__name__}: {msg}){hint}") from None


class _WalConnection(sqlite3.Connection):
    """A SQLite connection with synchronous=NORMAL: in WAL mode it syncs at checkpoints instead of
    at every commit. Optuna commits every suggest and attribute, so a full sync per commit was a
    large share of a trial's storage time (docs/benchmarks.md). The database stays consistent and
    survives a crash of any process; only a power loss or OS crash may undo the last commits
    (SQLite documentation, PRAGMA synchronous), which costs at most the trials in flight."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.execute("PRAGMA journal_mode").fetchone()[0] == "wal":  # NORMAL is only this safe with WAL
            self.execute("PRAGMA synchronous=NORMAL")


def _sqlite_wal(url: str) -> None:
    """Switch a SQLite database file to WAL journaling (stored in the file, so once is enough)."""
    from contextlib import closing

    from sqlalchemy.engine import make_url

    path = make_url(url).database
    if not path or path == ":memory:" or path.startswith("file:"):
        return
    with closing(sqlite3.connect(path, timeout=60)) as conn:
        conn.execute("PRAGMA journal_mode=WAL")


def _without_password(text: str, url: str) -> str:
    """`text` with the URL's password cut out, wherever a driver chose to repeat it."""
    from urllib.parse import unquote

    netloc = url.split("://", 1)[-1].split("/", 1)[0]
    userinfo = netloc.rsplit("@", 1)[0] if "@" in netloc else ""
    password = userinfo.split(":", 1)[1] if ":" in userinfo else ""
    for secret in {password, unquote(password)} - {""}:
        text = text.replace(secret, "***")
    return text


def create_or_load_study(ctx: SearchContext, storage: optuna.storages.BaseStorage, name: str) -> optuna.Study:
    directions = [o.direction for o in ctx.objectives]
    try:
        study = optuna.create_study(
            storage=storage, study_name=name, directions=directions,
            sampler=make_sampler(ctx.settings.sampler, ctx.settings.seed), load_if_exists=True,
        )
    except ValueError as e:  # directions differ from the stored study's
        raise RunError(f"study {name!r}: {e}") from None
    resolved = ctx.resolved()
    stored = study.user_attrs.get(SETTINGS_ATTR)
    if stored is None:
        study.set_metric_names([o.metric for o in ctx.objectives])
        study.set_user_attr(SETTINGS_ATTR, resolved)
        study.set_user_attr("nas.space", ctx.space_doc)
        study.set_user_attr("nas.profile", ctx.profile_doc)
        study.set_user_attr("nas.dataset", ctx.data.describe())
    else:
        for key in FINGERPRINT:
            if stored.get(key) != resolved.get(key):
                raise RunError(
                    f"study {name!r} was run with {key}={stored.get(key)!r}, not {resolved.get(key)!r}; "
                    f"resume with the same settings, or use another --out / --study"
                )
        if stored.get("space") == resolved["space"] and study.user_attrs.get("nas.space") != ctx.space_doc:
            raise RunError(f"study {name!r}: the search space file changed since the study began; use another --out / --study")
    return study


@dataclass(frozen=True)
class SearchResult:
    run: RunFolder
    study_name: str
    complete: int
    failed: dict[str, int]
    front: list[TrialRecord]
    objectives: tuple[Objective, ...]
    meter_method: str
    new_trials: int
    wall_s: float
    interrupted: bool = False
    savings: dict[str, Any] = field(default_factory=dict)


class _Progress:
    """A tqdm bar over the study's complete trials, showing the current front size."""

    def __init__(self, ctx: SearchContext, study: optuna.Study, enabled: bool) -> None:
        # the front's distinct value vectors -> how many trials hold each: ties cost nothing, where
        # a list of records made every trial of a 10,000-trial study scan hundreds of equal ones
        self.ctx, self.front, self.failed = ctx, {}, 0
        self.done = sum(1 for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE)
        self.bar = None
        if enabled:  # the front size is only shown on the bar
            from tqdm.auto import tqdm

            for r in trial_records(study, ctx.objectives):
                self._add(r)
            self.bar = tqdm(total=ctx.settings.trials, initial=min(self.done, ctx.settings.trials), unit="trial", dynamic_ncols=True)
            self._postfix()

    def _add(self, r: TrialRecord) -> None:
        if not r.feasible:
            return
        v = tuple(-r.values[o.name] if o.direction == "maximize" else r.values[o.name] for o in self.ctx.objectives)
        if v in self.front:
            self.front[v] += 1
        elif not any(all(a <= b for a, b in zip(f, v, strict=True)) for f in self.front):
            self.front = {f: n for f, n in self.front.items() if not all(a <= b for a, b in zip(v, f, strict=True))}
            self.front[v] = 1

    @property
    def front_size(self) -> int:
        return sum(self.front.values())

    def _postfix(self) -> None:
        if self.bar is not None:
            self.bar.set_postfix(front=self.front_size, failed=self.failed, refresh=False)

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if trial.state == optuna.trial.TrialState.COMPLETE:
            self.done += 1
            if self.bar is None:
                return
            rec = TrialRecord(
                number=trial.number,
                values={o.name: v for o, v in zip(self.ctx.objectives, trial.values, strict=True)},
                accuracy=trial.values[0], test_accuracy=None,
                energy_per_inference_j=trial.values[1], energy_method="", latency_s=None,
                params=0, macs=0, architecture={}, feasible=all(c <= 0 for c in trial.constraints.values()),
            )
            self._add(rec)
            self._postfix()
            self.bar.update(1)
        elif trial.state == optuna.trial.TrialState.FAIL:
            self.failed += 1
            self._postfix()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class _StopAtTarget:
    """Stop when the study holds `target` complete trials, counted in the storage after every
    trial (those of other workers too), as Optuna's MaxTrialsCallback does, but with one COUNT
    query instead of a listing of every trial (nas.storage.count_trials)."""

    def __init__(self, target: int) -> None:
        self.target = target

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if count_trials(study, optuna.trial.TrialState.COMPLETE) >= self.target:
            study.stop()


class _StopOnFailures:
    """Stop a search whose candidates keep failing instead of looping forever."""

    def __init__(self, limit: int) -> None:
        self.limit, self.failed, self.complete = limit, 0, 0

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if trial.state == optuna.trial.TrialState.FAIL:
            self.failed += 1
        elif trial.state == optuna.trial.TrialState.COMPLETE:
            self.complete += 1
        if self.failed >= self.limit and self.failed > self.complete:
            study.stop()


def run_search(settings: SearchSettings) -> SearchResult:
    """Run (or continue) a search until the study holds `settings.trials` complete trials."""
    from nas.workers import check_worker_devices, run_local_workers, set_target

    quiet_optuna()
    ctx = prepare(settings)
    check_worker_devices(ctx)
    run = RunFolder(Path(settings.out))
    if run.path.exists() and not run.path.is_dir():
        raise RunError(f"{run.path}: exists and is not a folder")
    if run.path.is_dir() and any(run.path.iterdir()) and not run.run_json.exists():
        raise RunError(f"{run.path}: folder is not empty and is not a run folder; choose another --out")
    run.path.mkdir(parents=True, exist_ok=True)
    ctx.artifact_dir = artifact_dir(run)
    url = settings.storage or run.sqlite_url
    name = settings.study_name or run.path.resolve().name
    # workers (nas.workers) and server databases, which other machines may join, keep heartbeats
    storage = open_storage(url, heartbeat=not url.startswith("sqlite"))
    study = create_or_load_study(ctx, storage, name)
    set_target(study, settings)
    write_run_json(run, ctx, study, status="running")
    if settings.workers > 1:
        return run_local_workers(ctx, study, run, url)
    return optimize(ctx, study, run)


def optimize(
    ctx: SearchContext, study: optuna.Study, run: RunFolder | None, worker_index: int = 0
) -> SearchResult:
    """Run trials until the study has enough complete trials, then write the results.

    `worker_index` tells workers of one study apart: each draws from its own sampler seed.
    """
    from nas.workers import recover_lost_trials, run_trials, sampler_seed

    s = ctx.settings
    set_threads(s.threads)
    quiet_optuna()
    # PyTorch imports torch._dynamo (about 1 s) on the first forward pass under FlopCounterMode
    # or the first optimizer step, whoever comes first. Doing it here, once, keeps a one-time
    # import out of the first trial's phases, so `phases_s` shows what each trial costs.
    importlib.import_module("torch._dynamo")

    before = len(study.get_trials(deepcopy=False))
    recover_lost_trials(study, ctx.host)
    # a resumed search must not replay the first run's random draws, nor two workers the same ones
    study.sampler = make_sampler(s.sampler, sampler_seed(s.seed, before, worker_index))
    progress = _Progress(ctx, study, s.progress)
    t0 = time.perf_counter()
    interrupted = False
    try:
        if progress.done < s.trials:
            run_trials(
                study,
                TableObjective(ctx, ctx.table) if ctx.table is not None else TrialObjective(ctx),
                timeout_s=s.timeout_s,
                callbacks=[
                    _StopAtTarget(s.trials),
                    _StopOnFailures(limit=max(10, s.trials)),
                    progress,
                ],
            )
    except KeyboardInterrupt:
        interrupted = True
    finally:
        progress.close()
        ctx.meter.close()
    return finish(ctx, study, run, before, time.perf_counter() - t0, interrupted)


def finish(
    ctx: SearchContext, study: optuna.Study, run: RunFolder | None, before: int, wall: float, interrupted: bool
) -> SearchResult:
    """Summarise the study (and write the run folder's results, if there is one)."""
    from nas.workers import failure_reasons

    trials = study.get_trials(deepcopy=False)
    failed = failure_reasons(trials)
    records = trial_records(study, ctx.objectives)
    front = pareto_front(records, ctx.objectives)
    if run is not None:
        write_results(run, ctx, study, front)
    return SearchResult(
        run=run, study_name=study.study_name, complete=len(records), failed=dict(failed), front=front,
        objectives=ctx.objectives, meter_method=_meter_method(records, ctx), new_trials=len(trials) - before,
        wall_s=wall, interrupted=interrupted,
        savings=savings_summary(t.user_attrs for t in trials if t.state == optuna.trial.TrialState.COMPLETE),
    )


def _out_of_memory(e: BaseException) -> bool:
    """CUDA raises torch.OutOfMemoryError; the CPU allocator raises a RuntimeError saying so."""
    return isinstance(e, (torch.OutOfMemoryError, MemoryError)) or (
        isinstance(e, RuntimeError) and "can't allocate memory" in str(e)
    )


def _meter_method(records: list[TrialRecord], ctx: SearchContext) -> str:
    methods = sorted({r.energy_method for r in records})
    return ", ".join(methods) if methods else ctx.meter.name


def _dist_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def write_run_json(run: RunFolder, ctx: SearchContext, study: optuna.Study, status: str) -> None:
    write_json(
        run.run_json,
        {
            "status": status,
            "study_name": study.study_name,
            "storage_url": redact_url(ctx.settings.storage) if ctx.settings.storage else None,
            "settings": ctx.resolved(),
            "space": ctx.space.to_dict(),
            "profile": ctx.profile_doc,
            "dataset": ctx.data.describe(),
            "meter": {"backend": ctx.meter.name, "profile_meter": ctx.profile.meter,
                      "estimated": ctx.meter.name == "estimate"},
            "runtime": ctx.profile.runtime.to_dict(),
            "versions": {
                "python": platform.python_version(), "torch": torch.__version__, "optuna": optuna.__version__,
                # from the installed metadata: importing scikit-learn and matplotlib costs about 1 s
                **{name: _dist_version(name) for name in ("numpy", "scikit-learn", "matplotlib")},
                "energy-nas": _own_version(),
            },
            "host": ctx.host,
            "platform": platform.platform(),
        },
    )


def _own_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("energy-nas")
    except PackageNotFoundError:
        return "unknown"


def write_results(run: RunFolder, ctx: SearchContext, study: optuna.Study, front: list[TrialRecord]) -> None:
    from nas.plot import pareto_figure, save_figure

    write_front(run, front, ctx.objectives)
    write_run_json(run, ctx, study, status="finished")
    records = trial_records(study, ctx.objectives)
    if records:
        save_figure(pareto_figure(records, front, title=study.study_name), run.pareto_png)


def architecture_of(trial: optuna.trial.FrozenTrial) -> Architecture:
    return Architecture.from_dict(trial.user_attrs.get("architecture"), f"trial {trial.number}")


__all__ = ["SAMPLERS", "SearchContext", "SearchResult", "SearchSettings", "run_search"]
