"""The `explore` command: root options, subcommands, and the one place errors become exit codes.

Exit codes: 0 an answer; 1 a validation or regression check failed; 2 bad input (any other
ExploreError: one line on stderr); 3 nothing in the space is feasible (InfeasibleError, whose
line names the binding constraint); 130 interrupted. With --debug (or EXPLORE_DEBUG=1) the
traceback is shown instead of the line."""

from __future__ import annotations

import os
import sys
from typing import Optional

import typer

from . import presets_cmd, regress, run, study, validate
from .registry import STUDIES, resolve

EXIT_BAD_INPUT, EXIT_INFEASIBLE = 2, 3

app = typer.Typer(
    name="explore",
    help="Design-space exploration of LLM systems: speculative decoding for MoE inference "
         "(sd), pipeline-parallel training memory (pipeline), chiplet training latency and "
         "energy (chiplet).\n\nExample: explore sd --model qwen2-57b",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
for _study in STUDIES:
    app.add_typer(resolve(f"{_study.cli}:app"), name=_study.name)
app.add_typer(presets_cmd.app, name="presets")
app.add_typer(validate.app, name="validate")
app.add_typer(study.app, name="study")
app.command("run", context_settings={"allow_extra_args": True,
                                     "ignore_unknown_options": True})(run.run_command)
app.command("regress")(regress.regress_command)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version
        typer.echo(f"explore {version('explore')}")
        raise typer.Exit()


@app.callback()
def root(
    version: Optional[bool] = typer.Option(None, "--version", callback=_version, is_eager=True,
                                           help="print the version and exit"),
    debug: bool = typer.Option(False, "--debug", help="show tracebacks for errors (also "
                               "EXPLORE_DEBUG=1); may appear anywhere on the line"),
) -> None:
    """explore: which LLM-system configuration should I build or run, and why?"""


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("EXPLORE_DEBUG") == "1"
    argv = [a for a in argv if a != "--debug"]
    from explore.models.errors import ExploreError, InfeasibleError

    from explore.search import interrupt

    from . import search_run
    search_run.ARGV, search_run.INTERRUPTED = argv, False
    try:
        # Ctrl-C is explore's: Typer would exit 130 before a search can stop
        with interrupt.installed():
            app(args=argv, prog_name="explore", standalone_mode=True)
    except ExploreError as e:
        if debug:
            raise
        from explore.search.storage import mask
        print(f"error: {mask(e)}", file=sys.stderr)   # a storage URL's password never shows
        return EXIT_INFEASIBLE if isinstance(e, InfeasibleError) else EXIT_BAD_INPUT
    except KeyboardInterrupt:
        if debug:
            raise
        print("interrupted", file=sys.stderr)
        return 130
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if code == 130 and not search_run.INTERRUPTED:   # Ctrl-C before any search ran
            print("interrupted", file=sys.stderr)
        return 130 if code == 0 and search_run.INTERRUPTED else code
    return 130 if search_run.INTERRUPTED else 0


if __name__ == "__main__":
    sys.exit(main())
