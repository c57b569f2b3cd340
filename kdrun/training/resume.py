"""``kdrun train resume=<run dir>`` and ``resume=auto``: which run to continue, and its command line.

A run is continued in its own directory with the overrides it was started with (its
``.hydra/overrides.yaml``), so Hydra composes the same config. The student phase then continues
from its last epoch checkpoint (``kdrun.training.fit``); a teacher or baseline that was being trained when
the run died is trained again from the start, which gives the same weights (cached phases are
seeded and only enter the cache complete).
"""

import json
from pathlib import Path
from typing import Any

from omegaconf import ListConfig, OmegaConf

from kdrun.config.user_yaml import load_config
from kdrun.console import console
from kdrun.errors import KdrunConfigError

KEY = "resume"
ALLOWED = "must be null, auto, or the directory of a kdrun train run (with .hydra/overrides.yaml)"


def resume_args(args: list[str]) -> list[str] | None:
    """The overrides Hydra should run for ``kdrun train args``; ``None`` if the run has finished.

    Without ``resume=``, ``args`` unchanged. ``resume=<dir>``: that run's own overrides, in that
    directory. ``resume=auto``: the newest run of the same config under the runs folder, or a new
    run when there is none; ``resume=auto`` alone (no task override) first continues the newest
    unfinished run of any config there, with its own overrides.
    """
    given = [arg.split("=", 1)[1].strip("'\"") for arg in args if arg.startswith(f"{KEY}=")]
    if not given or given[-1] in ("null", "~", ""):
        return args
    value = given[-1]
    if "-m" in args or "--multirun" in args:
        raise KdrunConfigError(
            KEY, value, "not with -m; rerun the sweep (finished teachers and baselines come from the cache)"
        )
    rest = [arg for arg in args if not arg.startswith(f"{KEY}=")]
    if value == "auto" and all(arg.startswith("hydra.") for arg in rest):
        value = str(_newest_run(rest, unfinished=True) or "auto")  # what a bare resume means
    if value == "auto":
        run_dir = _newest_run(rest)
        if run_dir is None:
            console.print("resume=auto: no earlier run of this config; starting a new one")
            return args
        overrides = [arg for arg in rest if not arg.startswith("hydra.run.dir=")]
    else:
        run_dir = Path(value).expanduser()
        task = [arg for arg in rest if not arg.startswith("hydra.")]
        if task:
            raise KdrunConfigError(
                KEY, value, f"takes no other overrides (got {' '.join(task)}): the run's own are used"
            )
        overrides = _stored_overrides(run_dir, value) + [arg for arg in rest if arg.startswith("hydra.")]
        overrides = [arg for arg in overrides if not arg.startswith("hydra.run.dir=")]
    run_dir = run_dir.resolve()
    if finished(run_dir):
        console.print(f"resume: {run_dir} has finished; results in {run_dir / 'results.json'}")
        return None
    console.print(f"resume: continuing {run_dir}")
    return [*overrides, f"{KEY}='{run_dir}'", f"hydra.run.dir='{run_dir}'"]


def finished(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds a results.json of a run that completed."""
    try:
        return json.loads((run_dir / "results.json").read_text()).get("status") == "ok"
    except (OSError, ValueError):
        return False


def check_run_dir(value: Any) -> None:
    """``resume`` must be null, ``auto`` or a run directory (``kdrun.config.validate``)."""
    if value is None or value == "auto":
        return
    if not isinstance(value, str) or not (Path(value).expanduser() / ".hydra" / "overrides.yaml").is_file():
        raise KdrunConfigError(KEY, value, ALLOWED)


def _stored_overrides(run_dir: Path, value: str) -> list[str]:
    check_run_dir(value)
    path = run_dir / ".hydra" / "overrides.yaml"
    stored = load_config(path, KEY)
    if not isinstance(stored, ListConfig):
        raise KdrunConfigError(KEY, value, f"{path} is not a list of overrides")
    # Hydra stores the task's key=value overrides only: a flag, or a hydra.* key (hydra.job.env_set
    # would set LD_PRELOAD for the processes a run starts), was put there by someone else.
    foreign = [str(arg) for arg in stored if str(arg).startswith("-") or _is_hydra_key(str(arg))]
    if foreign:
        raise KdrunConfigError(
            KEY, value, f"{path} holds {foreign[0]!r}; a run's overrides are the task's key=value only"
        )
    return [str(arg) for arg in stored if not str(arg).startswith(f"{KEY}=")]


def _is_hydra_key(override: str) -> bool:
    key = override.lstrip("+~").split("=", 1)[0]
    return key == "hydra" or key.startswith(("hydra.", "hydra/"))


def _newest_run(overrides: list[str], unfinished: bool = False) -> Path | None:
    """The most recently started run whose saved config equals what ``overrides`` compose to;
    with ``unfinished``, the most recent run under the runs folder that has not finished, any config."""
    from hydra import compose, initialize_config_module
    from hydra.core.singleton import Singleton

    state = Singleton.get_state()  # leave Hydra's global state as hydra.main expects to find it
    try:
        with initialize_config_module(config_module="kdrun.conf", version_base="1.3"):
            cfg = compose(config_name="train", overrides=overrides, return_hydra_config=True)
            runs = Path(OmegaConf.to_container(cfg.hydra.run, resolve=True)["dir"]).parent
    finally:
        Singleton.set_state(state)
    explicit = [arg.split("=", 1)[1].strip("'\"") for arg in overrides if arg.startswith("hydra.run.dir=")]
    if explicit:
        candidates = [Path(explicit[-1])]
    else:
        candidates = [path.parent.parent for path in runs.glob("*/.hydra/config.yaml")]
    wanted = _task_config(OmegaConf.to_container(cfg, resolve=False))

    def same_config(run: Path) -> bool:
        return (
            _task_config(OmegaConf.to_container(load_config(run / ".hydra" / "config.yaml", KEY))) == wanted
        )

    def resumable(run: Path) -> bool:
        return not finished(run) and (run / ".hydra" / "overrides.yaml").is_file()

    matching = [
        run
        for run in candidates
        if (run / ".hydra" / "config.yaml").is_file() and (resumable(run) if unfinished else same_config(run))
    ]
    return max(matching, key=lambda run: (run / ".hydra" / "config.yaml").stat().st_mtime, default=None)


def _task_config(container: Any) -> dict[str, Any]:
    return {key: value for key, value in container.items() if key not in ("hydra", KEY)}
