"""``python -m fastdistill <command>``: every module in ``fastdistill.commands`` is one sub-command.

A command module defines ``NAME``, ``HELP``, ``Options`` (a dataclass of :func:`~fastdistill.commands._options.option`
fields: flags, help, validation, resume keys and config.json derive from it) and ``run(options) -> int``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import os
import pkgutil
import sys

from fastdistill.commands._options import add_options, parse_options
from fastdistill.commands.rundir import release_run_dirs
from fastdistill.errors import FastDistillError
from fastdistill.utils import distributed


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors that say where to look."""

    def error(self, message: str):  # noqa: D102
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _command_modules():
    import fastdistill.commands as pkg

    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"fastdistill.commands.{info.name}")
        if hasattr(module, "NAME"):
            yield module


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m fastdistill", description="Fast dataset distillation: DELT, PDD, MGD3.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for module in _command_modules():
        p = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        add_options(p, module.Options)
        p.set_defaults(_command=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    command = getattr(args, "_command", None)
    if command is None:
        parser.print_help()
        return 2
    resumes = "resume" in {f.name for f in dataclasses.fields(command.Options)}
    if resumes and int(os.environ.get("TORCHELASTIC_RESTART_COUNT", 0)) > 0:
        args.resume = True  # torchrun restarted the job after a rank died: continue from the checkpoints
    rank = 0
    try:
        options = parse_options(command.Options, args, command.NAME)
        rank = distributed.init_from_env(getattr(options, "device", "auto")).rank
        with contextlib.ExitStack() as quiet:
            if rank > 0:  # rank 0 alone prints; every rank's progress bars still go to stderr
                quiet.enter_context(contextlib.redirect_stdout(quiet.enter_context(open(os.devnull, "w"))))
            return int(command.run(options) or 0)
    except FastDistillError as exc:
        if rank == 0 or not isinstance(exc, distributed.AgreedError):
            print(f"error: {f'rank {rank}: ' if rank else ''}{exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: " + ("finished work is saved; rerun with --resume to continue" if resumes
                                 else "nothing is kept; rerun the command"), file=sys.stderr)
        return 130
    finally:
        release_run_dirs()
        distributed.shutdown()


if __name__ == "__main__":
    raise SystemExit(main())
