"""What the command-line entry points share; no flag is defined here (flags live in experiments/).

- Config files (`--config=path[:variant]`) and overrides (`--config.<section>.<field>=value`) are read here, not by
  ml_collections' flag machinery: the GPU machine has no ml_collections, and bad input must give one line, not a
  traceback. An unknown field names the closest valid one; values are parsed by the type the field already has
  (a grid axis takes a comma list: `--config.sweep.grid.data.num_tasks=1,4,16,inf`).
- `run(main)` runs an absl main with SIGINT / SIGTERM turned into a clean stop (`stopping`), and with every bad
  input (a flag, a config value, a workdir) reported as `<program>: error: <one line>` on stderr and exit code 2.
- The persistent compilation cache is on by default (`configure_compilation_cache`), private to the run.

No jax at import: the entry points install the signal handlers before anything slow is imported.
"""

from __future__ import annotations

import logging
import math
import os
import shlex
import stat
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from icl_regression import stopping
from icl_regression.config import ConfigError, RunConfig, config_file, suggest
from icl_regression.store import StoreError, regular_file_on

EXIT_BAD_INPUT = 2
DISABLED = ("none", "off", "false", "0")


class UsageError(ValueError):
    """Bad command-line input; the message names it and what is allowed."""


BAD_INPUT = (UsageError, ConfigError, StoreError)


def program() -> str:
    return Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "icl_regression"


def fail(message: str) -> None:
    """Reports bad input on one line of stderr and exits with code 2."""
    text = " ".join(str(message).split())
    print(f"{program()}: error: {text}", file=sys.stderr, flush=True)
    sys.exit(EXIT_BAD_INPUT)


def rerun_command() -> str:
    """The command line this process was started with, to resume it."""
    return shlex.join(["python", *sys.argv])


# ---------------------------------------------------------------------------------------------------------------
# Config files and overrides.

def split_config_overrides(argv: Sequence[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """argv without its `--config.<path>=value` overrides, and the overrides as (dotted path, text)."""
    rest, overrides, i = [argv[0]], [], 1
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--config."):
            name, has_value, value = arg[len("--config."):].partition("=")
            if not has_value:
                if i + 1 >= len(argv):
                    raise UsageError(f"--config.{name} needs a value, e.g. --config.{name}=VALUE")
                i, value = i + 1, argv[i + 1]
            overrides.append((name, value))
        else:
            rest.append(arg)
        i += 1
    return rest, overrides


def load_config(spec: str | None, overrides: Sequence[tuple[str, str]] = ()) -> dict:
    """The dict of config file `spec` ('path' or 'path:variant', whose get_config(variant) builds it), with the
    overrides applied."""
    if not spec:
        raise UsageError("--config is required: a config file, e.g. --config=experiments/configs/cpu_demo.py")
    path_text, _, variant = spec.partition(":")
    built = _call_get_config(Path(path_text), variant, spec)
    if not (hasattr(built, "to_dict") or isinstance(built, Mapping)):
        raise UsageError(f"--config={spec}: get_config() in {path_text} returned {type(built).__name__}; it must "
                         "return a config mapping (ConfigDict or dict)")
    config = built.to_dict() if hasattr(built, "to_dict") else dict(built)
    for name, text in overrides:
        _override(config, name, text)
    return config


def _call_get_config(path: Path, variant: str, spec: str):
    if not path.is_file():
        raise UsageError(f"--config={spec}: {'no such file' if not path.exists() else 'not a file'}: {path}")
    try:
        module = config_file(path)
    except SyntaxError as e:
        raise UsageError(f"--config={spec} does not import: {path}:{e.lineno}: SyntaxError: {e.msg}") from None
    except Exception as e:
        raise UsageError(f"--config={spec} does not import: {_where(path, e)}") from None
    if not callable(getattr(module, "get_config", None)):
        raise UsageError(f"--config={spec}: {path} defines no get_config()")
    try:
        return module.get_config(variant) if variant else module.get_config()
    except Exception as e:
        raise UsageError(f"--config={spec}: get_config({variant!r}) failed: {_where(path, e)}") from None


def _where(path: Path, error: BaseException) -> str:
    """'file:line: Type: message' at the innermost frame of `path` in the error's traceback."""
    frames = [f for f in traceback.extract_tb(error.__traceback__) if Path(f.filename).resolve() == path.resolve()]
    place = f"{path}:{frames[-1].lineno}" if frames else str(path)
    return f"{place}: {type(error).__name__}: {error}"


def _override(config: dict, dotted: str, text: str) -> None:
    keys = dotted.split(".")
    node = config
    for depth, key in enumerate(keys):
        where = ".".join(keys[:depth + 1])
        if not isinstance(node, dict):
            raise UsageError(f"--config.{dotted}: {'.'.join(keys[:depth])} is a value, not a section")
        if key not in node:
            if not _is_new_grid_axis(keys):
                raise UsageError(f"--config.{dotted}: unknown config field {where}{suggest(key, node, keys[:depth])}")
            node[key] = {} if depth < len(keys) - 1 else ()
        if depth == len(keys) - 1:
            if isinstance(node[key], dict):
                raise UsageError(f"--config.{dotted}={text}: {where} is a section; set one of its fields, e.g. "
                                 f"--config.{dotted}.{_first_field(node[key])}=...")
            node[key] = parse_value(text, node[key], f"--config.{dotted}")
        else:
            node = node[key]


def _first_field(section: dict) -> str:
    """The dotted name of the first value under `section` (for an example), '<field>' if it holds none."""
    for key, value in section.items():
        if not isinstance(value, dict):
            return key
        if value:
            return f"{key}.{_first_field(value)}"
    return "<field>"


def _is_new_grid_axis(keys: Sequence[str]) -> bool:
    """`sweep.grid.<section>.<field>` where <section>.<field> is a run config field: a grid axis may be added."""
    fields = RunConfig().to_dict()
    return len(keys) == 4 and keys[:2] == ["sweep", "grid"] and keys[3] in fields.get(keys[2], {})


def parse_value(text: str, current: Any, name: str) -> Any:
    """`text` as a value of the type `current` has (a comma list for a tuple); a one-line UsageError if it is not."""
    if isinstance(current, bool):
        lowered = text.strip().lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
        raise UsageError(f"{name}={text!r} is not a boolean; allowed: true or false")
    if isinstance(current, (list, tuple)):
        items = [item.strip() for item in text.strip().strip("()[]").split(",") if item.strip()]
        if not items:
            raise UsageError(f"{name}={text!r} is empty; allowed: a comma-separated list, e.g. 1,4,16,inf")
        return tuple(_scalar(item) for item in items)
    if isinstance(current, int):
        return _integer(text, name)
    if isinstance(current, float):
        try:
            return float(text)
        except ValueError:
            raise UsageError(f"{name}={text!r} is not a number; allowed: a float, e.g. 3e-4") from None
    if current is None:
        return _scalar(text)
    return text


def _integer(text: str, name: str) -> Any:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
        if value.is_integer():
            return int(value)
    except ValueError:
        pass
    if name.endswith("num_tasks") and text.strip().lower() in ("inf", "infinity", "∞"):
        return text.strip()
    raise UsageError(f"{name}={text!r} is not an integer" + ("; allowed: an integer M >= 1, or inf"
                                                              if name.endswith("num_tasks") else ""))


def _scalar(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


# ---------------------------------------------------------------------------------------------------------------
# Flag values (absl checks the type, not the range): each takes the flag's holder, so the message names the flag.

def at_least(flag, minimum: int) -> int | None:
    """The value of integer `flag` (None stays None: a default chosen later); a UsageError if it is below
    `minimum`."""
    if flag.value is not None and flag.value < minimum:
        raise UsageError(f"--{flag.name}={flag.value}; allowed: an integer >= {minimum}")
    return flag.value


def positive_float(flag) -> float:
    """The value of float `flag`; a UsageError unless it is finite and > 0."""
    if not (math.isfinite(flag.value) and flag.value > 0):
        raise UsageError(f"--{flag.name}={flag.value}; allowed: a finite float > 0")
    return flag.value


def int_list(flag, minimum: int | None = None) -> list[int] | None:
    """The items of list `flag` as ints (None if unset or empty); a UsageError naming the first item that is not an
    integer (>= `minimum`)."""
    if not flag.value:
        return None
    bound = "" if minimum is None else f" >= {minimum}"
    out = []
    for item in flag.value:
        try:
            value = int(item)
        except ValueError:
            value = None
        if value is None or (minimum is not None and value < minimum):
            raise UsageError(f"--{flag.name}={','.join(flag.value)}: {item!r} is not an integer{bound}; allowed: a "
                             f"comma-separated list of integers{bound}")
        out.append(value)
    return out


# ---------------------------------------------------------------------------------------------------------------
# Workdir, compilation cache, logs.

def check_workdir(text: str | None, create: bool = True, must_exist: bool = False, flag: str = "--workdir") -> Path:
    """The workdir as a Path, created (if `create`) and checked writable; a one-line UsageError if it is a file,
    lies under one, cannot be written, or (with `must_exist`) does not exist."""
    if not text:
        raise UsageError(f"{flag} is required: the folder that holds (or will hold) the results")
    path = Path(text)
    blocking = regular_file_on((path, *path.parents))
    if blocking is not None:
        where = "is" if blocking == path else "lies under"
        raise UsageError(f"{flag}={text} {where} the regular file {blocking}; allowed: a folder")
    if must_exist and not path.is_dir():
        raise UsageError(f"{flag}={text} does not exist")
    if not create:
        return path
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write_check"):
            pass
    except OSError as e:
        raise UsageError(f"{flag}={text} is not writable: {e.strerror} ({e.filename or path})") from None
    return path


def scratch_folder(scratch: str | None, retrain: bool, workdir: str) -> Path | None:
    """Where an analysis retrains runs that have no final checkpoint: `scratch` (--scratch), or by default
    runs/retrained/<name of the sweep folder> (git-ignored); None when retraining is off (--retrain=false)."""
    if not retrain:
        return None
    return check_workdir(scratch or str(Path("runs") / "retrained" / Path(workdir).resolve().name), create=False,
                         flag="--scratch")


def check_output_file(text: str | None, flag: str = "--out") -> Path:
    """The path of a file to write, its folder created and checked writable (`check_workdir`); a one-line
    UsageError if it is a folder or lies under a regular file."""
    if not text:
        raise UsageError(f"{flag} is required: the file to write")
    path = Path(text)
    if path.is_dir():
        raise UsageError(f"{flag}={text} is a folder; allowed: the path of a file to write")
    blocking = regular_file_on(path.parents)
    if blocking is not None:
        raise UsageError(f"{flag}={text} lies under the regular file {blocking}; allowed: a file in a folder")
    check_workdir(str(path.parent), flag=flag)
    return path


def configure_compilation_cache(setting: str | None, workdir: Path) -> Path | None:
    """Turns on jax's persistent compilation cache (and on GPU the per-fusion autotuning cache) in `setting`, or
    by default $JAX_COMPILATION_CACHE_DIR or `<workdir>/.jax_cache`; 'none' turns it off. The cache holds
    programs this process will execute, so it must be private: a folder other users can write is refused."""
    if setting and setting.lower() in DISABLED:
        return None
    path = Path(setting or os.environ.get("JAX_COMPILATION_CACHE_DIR") or Path(workdir) / ".jax_cache")
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        info = path.stat()
    except OSError as e:
        raise UsageError(f"--compilation_cache={path} cannot be used: {e.strerror}") from None
    if info.st_uid != os.getuid() or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UsageError(f"--compilation_cache={path} is writable by other users or owned by another (mode "
                         f"{stat.filemode(info.st_mode)}); it holds programs this run executes: use a private folder")
    import jax

    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    try:  # GPU: also keep the autotuning results of every fusion (no effect on CPU)
        jax.config.update("jax_persistent_cache_enable_xla_caches", "xla_gpu_per_fusion_autotune_cache_dir")
    except (AttributeError, KeyError, ValueError):
        pass
    return path


def quiet_backend_logs() -> None:
    """Hides jax's INFO lines about backends it probes and does not find ("Unable to initialize backend 'tpu'")."""
    logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)


# ---------------------------------------------------------------------------------------------------------------
# Running a main.

def _parse_flags(argv: list[str]) -> list[tuple[str, str]]:
    from absl import app, flags

    if any(arg in ("--help", "-h", "--helpshort", "-?") for arg in argv[1:]):
        app.usage(shorthelp=True, writeto_stdout=True, exitcode=0)  # help is not an error: exit 0
    if "--helpfull" in argv[1:]:
        app.usage(shorthelp=False, writeto_stdout=True, exitcode=0)
    if "--helpxml" in argv[1:]:
        flags.FLAGS.write_help_in_xml_format(sys.stdout)
        sys.exit(0)
    try:
        rest, overrides = split_config_overrides(argv)
        remaining = flags.FLAGS(rest)
    except UsageError as e:
        fail(str(e))
    except flags.Error as e:
        fail(f"{e}; see --help")
    if len(remaining) > 1:
        fail(f"unexpected argument(s) {remaining[1:]}; flags look like --name=value (see --help)")
    return overrides


def run_without_config(main: Callable[[], Any]) -> None:
    """`run` for a program that reads no config (figures, analyses of stored results, tools): `main()` takes no
    arguments, a `--config.*` override is bad input, and SIGINT / SIGTERM stop it as usual (nothing to checkpoint)."""

    def main_without_config(overrides, stop):
        del stop
        if overrides:
            raise UsageError(f"{program()} takes no --config.* overrides")
        return main()

    run(main_without_config, signals=False)


def run(main: Callable[[list[tuple[str, str]], stopping.Stop], Any], signals: bool = True) -> None:
    """Runs `main(config_overrides, stop)` under absl with one-line errors for bad input (exit code 2).

    With `signals`, SIGINT and SIGTERM set `stop` (the training loop checkpoints and returns) instead of raising.
    """
    from absl import app

    for stream in (sys.stdout, sys.stderr):  # progress reaches a log file (a detached run) line by line
        stream.reconfigure(line_buffering=True)
    stop = stopping.Stop()
    if signals:
        stopping.install_signal_handlers(stop)
    quiet_backend_logs()
    try:
        app.run(lambda overrides: main(overrides, stop), flags_parser=_parse_flags)
    except BAD_INPUT as e:
        fail(str(e))
