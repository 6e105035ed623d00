"""The command line: ``python -m metanas experiment=NAME [overrides]`` (also the ``metanas`` script).

Only argument handling, the Hydra entry, printing and exit codes live here; running an experiment (the run
store, resume, the summary and meta-dataset records) is ``metanas.experiment``, which library code calls.

A single run composes the config once up front with Hydra's compose API, so every configuration error
(an unknown group option or key, a wrong type) is reported as one line with exit code 2 before any run
directory exists. Then Hydra runs ``task``, which writes the run store (see ``metanas.run_store``).
Under ``-m`` (multirun) each job validates itself; a failing job is recorded in its ``summary.json`` and
in the sweep's ``failures.jsonl`` and does not stop the other jobs.
"""

from __future__ import annotations

import logging
import re
import signal
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from metanas.config import CONF_DIR, ConfigError
from metanas.experiment import RESUME_HONOURED, is_resume_override, prepare, quiet_logs, run_experiment
from metanas.run_store import Interrupted, check_stop

log = logging.getLogger("metanas")
EXIT_CONFIG = 2
EXIT_FAILED = 1


def _one_line(exc: BaseException, overrides: list[str] | None = None) -> str:
    """Condense Hydra/OmegaConf messages (several lines, with hints) into one line naming what would be right."""
    skip = ("Set the environment variable", "Config search path", "provider=", "HYDRA_FULL_ERROR", "full_key:",
            "object_type=", "reference_type=", "To append to your config")
    out, options = [], []
    for chained in (exc, exc.__cause__):
        for ln in (ln.strip() for ln in str(chained or "").splitlines()):
            if not ln or any(s in ln for s in skip):
                continue
            if out and out[-1].startswith("Available options"):
                options.append(ln)
            else:
                out.append(ln)
    msg = " ".join(dict.fromkeys(out))
    if options:
        msg += " " + ", ".join(options)
    m = re.match(r"Could not override '([^']+)'", str(exc))
    if m and overrides is not None:  # an unknown key: list the keys that exist there
        valid = _valid_keys(m.group(1), [o for o in overrides if not o.startswith(m.group(1) + "=")])
        msg = f"unknown key '{m.group(1)}'" + (f"; valid keys there: {', '.join(valid)}" if valid else "")
    return msg


def _valid_keys(dotted: str, overrides: list[str]) -> list[str]:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            cfg = compose(config_name="config", overrides=overrides)
        parent = dotted.rpartition(".")[0]
        node = OmegaConf.select(cfg, parent) if parent else cfg
        return [str(k) for k in node.keys()] if isinstance(node, DictConfig) else []
    except Exception:
        return []
    finally:
        GlobalHydra.instance().clear()


EXIT_INTERRUPTED = {signal.SIGINT: 130, signal.SIGTERM: 143}


def _install_signal_handlers() -> None:
    """SIGINT (Ctrl-C) and SIGTERM (SLURM, ``kill``): stop at the next step, a second one at once (``request_stop``)."""
    from metanas.run_store import request_stop

    default_hook = sys.unraisablehook

    def hook(u: Any) -> None:
        if isinstance(u.exc_value, Interrupted):  # raised where Python ignores it (a gc callback): check_stop()
            return  # raises it again at the next step
        if isinstance(u.exc_value, RuntimeError) and "Event loop is closed" in str(u.exc_value):
            return  # tensorstore's callbacks after a failed checkpoint read, already named in one warning line
        default_hook(u)

    sys.unraisablehook = hook
    try:
        for sig in EXIT_INTERRUPTED:
            if signal.getsignal(sig) is not signal.SIG_IGN:
                signal.signal(sig, request_stop)
    except ValueError:  # not the main thread (a launcher's worker): keep the defaults
        pass


def _run_dir_of_job() -> Path:
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.output_dir)


def task(cfg: DictConfig, resume_overrides: Sequence[str] = ()) -> float | None:
    """Hydra task function (one job). Returns ``metrics[cfg.objective]`` for sweepers (NaN if the job failed).
    ``resume_overrides``: the dotted/honoured keys of a resume's command line (see ``_split_resume_args``)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    quiet_logs()
    run_dir = _run_dir_of_job()
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        summary = run_experiment(cfg, run_dir, list(HydraConfig.get().overrides.task),
                                 resume_overrides=resume_overrides)
        print(f"{summary['experiment']}: {summary['metrics']}  ->  {run_dir}")
        if (run_dir / "report.md").is_file():  # a runner's text report (e.g. search_nb201's paired table)
            print((run_dir / "report.md").read_text(), end="")
    except Interrupted as e:
        print(f"metanas: interrupted ({signal.Signals(e.signum).name}); status 'interrupted' recorded in "
              f"{run_dir / 'summary.json'}; resume with: python -m metanas resume={run_dir}", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED.get(e.signum, 130))
    except ConfigError as e:
        _fail(run_dir, multirun, f"config error: {e}", EXIT_CONFIG, resumed=bool(cfg.resume))
        return float("nan")
    except Exception as e:
        _fail(run_dir, multirun, f"{type(e).__name__}: {e}", EXIT_FAILED)
        return float("nan")
    if cfg.objective is None:
        return None
    if cfg.objective not in summary["metrics"]:
        msg = (f"objective={cfg.objective} is not a final metric of {cfg.name}; "
               f"choose one of {', '.join(summary['metrics'])}")
        if not multirun:
            log.warning("%s (objective is used only by sweepers)", msg)
            return None
        _abort_sweep(msg)
    return float(summary["metrics"][cfg.objective])


def _abort_sweep(message: str) -> None:
    """A sweep that cannot go on (every job would fail the same way): one line, and still a sweep_summary.json."""
    from hydra.core.hydra_config import HydraConfig

    from metanas.run_store import append_jsonl, atomic_write_json
    from metanas.sweep import summarize_sweep

    hc = HydraConfig.get()
    sweep_dir = Path(hc.sweep.dir)
    append_jsonl(sweep_dir / "failures.jsonl", {"job": hc.job.num, "overrides": list(hc.overrides.task),
                                                "error": message})
    summary = summarize_sweep(sweep_dir) | {"aborted": message}
    atomic_write_json(sweep_dir / "sweep_summary.json", summary)
    print(f"metanas: error: {message}; sweep stopped, see {sweep_dir / 'sweep_summary.json'}", file=sys.stderr)
    sys.exit(EXIT_CONFIG)


def _fail(run_dir: Path, multirun: bool, message: str, code: int, *, resumed: bool = False) -> None:
    from metanas.run_store import append_jsonl

    if multirun:  # record and go on with the other points of the sweep
        from hydra.core.hydra_config import HydraConfig

        hc = HydraConfig.get()
        append_jsonl(Path(hc.sweep.dir) / "failures.jsonl",
                     {"job": hc.job.num, "overrides": list(hc.overrides.task), "error": message})
        log.error("job %s failed: %s", hc.job.num, message)
        return
    if code == EXIT_CONFIG and not resumed and not (run_dir / "checkpoints").exists():
        # a config error found by the runner before any work was saved: leave nothing behind
        shutil.rmtree(run_dir, ignore_errors=True)
    print(f"metanas: error: {message}", file=sys.stderr)
    sys.exit(code)


def _precompose(overrides: list[str], resume_overrides: Sequence[str] = ()) -> None:
    """Compose and validate once, before Hydra creates a run directory; exit 2 with one line on error."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    log.disabled = True  # the run itself logs what prepare() says, once logging is set up
    try:
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            cfg = compose(config_name="config", overrides=overrides)
        prepare(cfg, overrides, resume_overrides)
    except Exception as e:
        GlobalHydra.instance().clear()
        print(f"metanas: error: {_one_line(e, overrides)}", file=sys.stderr)
        sys.exit(EXIT_CONFIG)
    finally:
        log.disabled = False
    GlobalHydra.instance().clear()


def _print_job_config(args: list[str]) -> None:
    """``--cfg job [--resolve]``: the composed config as it will run; a config error is one line (exit 2)."""
    from hydra import compose, initialize_config_dir

    overrides = [a for a in args if not a.startswith("-") and a not in ("job",)]
    try:
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            cfg = compose(config_name="config", overrides=overrides)
    except Exception as e:
        print(f"metanas: error: {_one_line(e, overrides)}", file=sys.stderr)
        sys.exit(EXIT_CONFIG)
    print(OmegaConf.to_yaml(cfg, resolve="--resolve" in args), end="")


def _split_resume_args(args: list[str]) -> tuple[list[str], list[str], list[str]]:
    """A resume keeps ``resume=``, ``hydra.*`` and flags for Hydra; dotted keys and ``RESUME_HONOURED`` go to the
    saved config; every other argument is ignored, named in one line. Returns (for Hydra, for the saved config,
    ignored)."""
    honoured = [a for a in args if is_resume_override(a)]
    keep = [a for a in args if a.startswith(("resume=", "hydra.", "hydra/", "-"))]
    ignored = [a for a in args if a not in keep and a not in honoured]
    return keep, honoured, ignored


def _task_with(resume_overrides: Sequence[str]) -> Callable[[DictConfig], float | None]:
    def metanas_task(cfg: DictConfig) -> float | None:
        return task(cfg, resume_overrides)

    return metanas_task


def main() -> None:
    import hydra

    _install_signal_handlers()
    try:
        import metanas.schemas  # noqa: F401 - each experiment's train schema in ConfigStore, before composing

        check_stop()  # a signal that came while Python was starting (see metanas/__main__.py)
        args = sys.argv[1:]
        multirun = any(a in ("-m", "--multirun") for a in args)
        honoured: list[str] = []
        ignored: list[str] = []
        if not multirun and any(a.startswith("resume=") for a in args):
            args, honoured, ignored = _split_resume_args(args)
            sys.argv = sys.argv[:1] + args
        flags = [a for a in args if a.startswith("-")]
        cfg_flag = next((args[i + 1] for i, a in enumerate(args[:-1]) if a in ("--cfg", "-c")), None)
        if cfg_flag == "job" and not multirun:
            _print_job_config(args)
            return
        if not multirun and not flags:
            _precompose([a for a in args if not a.startswith("hydra.") and not a.startswith("hydra/")], honoured)
        if ignored:
            print(f"metanas: warning: resume ignores {' '.join(ignored)} (the saved config decides these; dotted "
                  f"keys and {', '.join(RESUME_HONOURED)} are applied)", file=sys.stderr)
        hydra.main(config_path=CONF_DIR, config_name="config", version_base="1.3")(_task_with(honoured))()
    except (KeyboardInterrupt, Interrupted) as e:  # before or between runs: nothing to record
        signum = getattr(e, "signum", signal.SIGINT)
        print(f"metanas: interrupted ({signal.Signals(signum).name})", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED.get(signum, 130))


if __name__ == "__main__":
    main()
