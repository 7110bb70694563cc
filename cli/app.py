"""The `explore` command: root options, subcommands, and the one place errors become exit codes.

Exit codes: 0 an answer; 1 a validation or regression check failed; 2 bad input (any other
ExploreError: one line on stderr); 3 nothing in the space is feasible (InfeasibleError, whose
line names the binding constraint); 130 interrupted. With --debug (or EXPLORE_DEBUG=1) the
traceback is shown instead of the line."""

from __future__ import annotations

import functools
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


@functools.lru_cache(maxsize=None)
def command():
    """The Click command tree behind `app`, built once per process (Typer rebuilds it on
    every call, a sixth of a second: too slow for the in-process tests and `explore run`)."""
    return typer.main.get_command(app)


# Messages bound the values they quote (models.errors.shown); this is the net under them. A
# long line loses its middle: the start says what is wrong, the end usually how to fix it.
MAX_LINE = 1000


def error_line(message: str) -> str:
    """The one `error:` line: whitespace (newlines too) collapsed, a storage URL's password
    masked, the length bounded."""
    from explore.search.storage import mask

    text = " ".join(mask(message).split())
    if len(text) > MAX_LINE:
        head = 2 * MAX_LINE // 3
        text = text[:head] + " ... " + text[len(text) - (MAX_LINE - head - 5):]
    return "error: " + text


def _usage_message(e: Exception) -> str:
    """Click's usage error (bad int, bad choice, missing or unknown option) as one sentence,
    with the command it concerns; an unknown option names the nearest real one (Click's own
    list pads with unrelated names)."""
    from typer._click.exceptions import NoSuchOption

    from explore.models.errors import did_you_mean

    ctx = getattr(e, "ctx", None)
    if isinstance(e, NoSuchOption) and ctx is not None:
        known = [o for p in ctx.command.get_params(ctx) for o in getattr(p, "opts", [])
                 + getattr(p, "secondary_opts", []) if o.startswith("--")]
        message = f"no such option {e.option_name}{did_you_mean(e.option_name, known)}"
    else:
        message = e.format_message()   # type: ignore[attr-defined]
    if ctx is None:
        return message
    return f"{ctx.command_path}: {message} (see `{ctx.command_path} --help`)"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("EXPLORE_DEBUG") == "1"
    argv = [a for a in argv if a != "--debug"]
    import warnings

    from explore.models.errors import ExploreError, InfeasibleError

    from explore.search import interrupt

    from . import search_run
    search_run.ARGV, search_run.INTERRUPTED = argv, False
    try:
        # Ctrl-C is explore's: Typer would exit 130 before a search can stop
        with interrupt.installed(), warnings.catch_warnings():
            if not debug:   # numpy's overflow / invalid-value notes are not for the user
                warnings.simplefilter("ignore", RuntimeWarning)
            # not standalone: Click's usage errors come here and take the one-line form
            code = command().main(args=argv, prog_name="explore", standalone_mode=False)
    except ExploreError as e:
        if debug:
            raise
        print(error_line(str(e)), file=sys.stderr)
        return EXIT_INFEASIBLE if isinstance(e, InfeasibleError) else EXIT_BAD_INPUT
    except typer.TyperException as e:   # Click's usage errors (bad int, missing option, ...)
        from typer._click.exceptions import NoArgsIsHelpError

        if isinstance(e, NoArgsIsHelpError):   # `explore` alone: the help, as before
            print(e.format_message())
            return EXIT_BAD_INPUT
        if debug:
            raise
        print(error_line(_usage_message(e)), file=sys.stderr)
        return EXIT_BAD_INPUT if isinstance(e, typer._click.exceptions.UsageError) else 1
    except (KeyboardInterrupt, typer.Abort):
        if debug:
            raise
        print("interrupted", file=sys.stderr)
        return 130
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if code == 130 and not search_run.INTERRUPTED:   # Ctrl-C before any search ran
            print("interrupted", file=sys.stderr)
    code = code if isinstance(code, int) else 0   # a command's return value is not a code
    return 130 if code == 0 and search_run.INTERRUPTED else code


if __name__ == "__main__":
    sys.exit(main())
