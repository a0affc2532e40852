"""The ``tensorslim`` command: a thin front end over the Python API, one module per command.

Every command turns a user-input problem into one line on stderr (``error: ...``) and exit status 2, never a
traceback; output files and directories are written atomically, so a failed command leaves nothing behind.

A command's module is imported when that command runs (or when ``--help`` lists them all), so
``tensorslim data`` does not import ONNX, Optuna or matplotlib. Add a command: a module here with one
``@click.command`` and one line in :data:`COMMANDS`. Shared option helpers are in :mod:`._common`.
"""

from __future__ import annotations

import importlib

import click

from .._interrupt import run_command
from ..trust import set_trusted

#: command name -> "module:function" in this package
COMMANDS = {
    "data": "data:data_cmd", "models": "models:models_cmd", "train": "train:train_cmd",
    "evaluate": "evaluate:evaluate_cmd", "inspect": "inspect:inspect_cmd", "compress": "compress:compress_cmd",
    "export": "export:export_cmd", "bench": "bench:bench_cmd", "report": "report:report_cmd",
    "pick": "pick:pick_cmd", "demo": "demo:demo_cmd", "finetune": "finetune:finetune_cmd",
    "explore": "explore:explore_cmd", "search": "search:search_cmd",
}


def _trust_code(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        set_trusted(True)


def _add_trust_option(command: click.Command) -> click.Command:
    """``--trust-code`` on every command: builders named in files (model.json, plans, studies) may then run
    user code; without it only built-in models are built (see ``tensorslim.trust``)."""
    if not any(p.name == "trust_code" for p in command.params):
        command.params.append(click.Option(
            ["--trust-code"], is_flag=True, expose_value=False, is_eager=True, callback=_trust_code,
            help="Allow model.json / plans / studies to name a user factory (module:function or file.py:function); "
                 "that code then runs. Off by default: only built-in models are built from files."))
    return command


class _Commands(click.Group):
    """The commands of :data:`COMMANDS`, each imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        module, attr = target.split(":")
        return _add_trust_option(getattr(importlib.import_module(f".{module}", __name__), attr))


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="tensorslim")
def cli() -> None:
    """Compress CNNs with tensor methods (SVD, CP, Tucker-2, Tensor-Train, TCL/TRL) for edge devices.

    Files never run code: a model.json, plan or study may only name a built-in model unless the command is
    given --trust-code."""
    set_trusted(False)  # each invocation starts untrusted; the command's own --trust-code sets it


def main(argv: list[str] | None = None) -> None:
    run_command(cli, argv, "tensorslim")  # errors: one line, exit 2; Ctrl-C: one line, exit 130, a rerun resumes
