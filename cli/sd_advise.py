"""`explore sd advise`: per batch size the best draft shape or speculation off, and the launch
flags of vLLM and SGLang for it (models/sd_advise.py, docs/sd.md §9)."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import ClassVar, Optional

from explore.models.spec import AT_LEAST_1

from .common import RANGE_HELP, Output, SearchOptions
from .options import option, uses
from .sd import app
from .studies.sd import (MAX_GAMMA, SdFormats, SdHardware, SdReport, SdRequest, SdSpace,
                          SdWorkload)


@dataclass
class AdviseOptions:
    """What the advisor tries and what it writes."""
    PANEL: ClassVar[str] = "Advice"
    batch: str = option("1-256", "--batch", "-b", help=f"batch sizes to advise for: {RANGE_HELP}",
                        ints=1)
    steps: str = option("1-8", "--draft-steps", "--gamma", "-g", help="draft steps tried (a "
                        "chain's length, a tree's depth); trees of topk 2, 4, 8 and 8-64 "
                        f"verified tokens are tried for EAGLE and MTP drafts: {RANGE_HELP}",
                        ints=1, most=MAX_GAMMA)
    min_speedup: float = option(1.0, "--min-speedup", help="speculate only where it is at "
                                "least this much faster than plain decoding", range=AT_LEAST_1)
    emit: Optional[str] = option(None, "--emit", help="print only the launch flags of vllm or "
                                 "sglang, ready to paste", default_text="both, after the table")


@app.command("advise")
@uses(work=SdWorkload, hw=SdHardware, formats=SdFormats, advice=AdviseOptions, output=Output)
def advise_command(work: SdWorkload, hw: SdHardware, formats: SdFormats, advice: AdviseOptions,
                   output: Output) -> None:
    """For each batch size the draft configuration that pays most, or speculation off; the
    batch range where speculation pays; vLLM and SGLang launch flags for it.

    Example: explore sd advise --model qwen3-30b-a3b --tp 2 --engine sglang --emit sglang
    """
    from .output import present

    out = advise(work, hw, formats, advice)
    if advice.emit and not output.json:
        print(_flags_text(out["launch"][advice.emit]))
        return
    present(out, output.json, output.save_dir, _render, _save,
            force=output.force)


def advise(work: SdWorkload, hw: SdHardware, formats: SdFormats, opts: AdviseOptions) -> dict:
    from explore import presets
    from explore.models.errors import InputError
    from explore.models.sd_advise import ENGINES, advise as run_advice, launch

    from .common import parse_int_range
    from .studies.sd import build

    if opts.emit is not None and opts.emit not in ENGINES:
        raise InputError(f"--emit {opts.emit!r}: choose from {', '.join(ENGINES)}")
    batches = parse_int_range(opts.batch, "--batch")
    steps = parse_int_range(opts.steps, "--draft-steps")
    built = build(SdRequest(work, hw, formats, SdSpace(batch=opts.batch, gamma=opts.steps),
                            SearchOptions(), SdReport()))
    setup, info = built.setup, built.info
    result = run_advice(setup, batches, steps, opts.min_speedup)
    name = info["draft"]
    preset = presets.load("draft", name) if info["draft_family"] != "model" else None
    eagle3 = bool(preset and preset.vocab)
    result["launch"] = {e: launch(result, e, info["draft_family"], name,
                                  preset.repo if preset else "", info["draft_tp"], eagle3)
                        for e in ENGINES}
    return {"study": "sd-advise", "setup": info, "defaults": built.notes,
            "warnings": built.warnings, **result}


def _flags_text(launch: dict) -> str:
    lines = [" ".join(shlex.quote(x) for x in launch["flags"][i:i + 2])
             for i in range(0, len(launch["flags"]), 2)]
    return " \\\n".join(lines) + "".join(f"\n# {n}" for n in launch["notes"])


def _render(out: dict) -> None:
    from rich.text import Text

    from .render import console, key_values, table

    c = console()
    s = out["setup"]
    c.print(Text(f"explore sd advise: {s['target']} + draft {s['draft']} "
                 f"({s['draft_family']}) on {s['tp']} x {s['hardware']}, engine "
                 f"{s['engine']}", style="bold"))
    pays, peak = out["pays"], out["peak"]
    c.print(key_values("Advice", [
        ("speculation pays", f"batch {pays[0]}-{pays[1]}" if pays else "at no batch searched"),
        ("best", f"{peak['speedup']:.2f}x at batch {peak['batch']}: {peak['shape']}"),
        ("turn it off", f"from batch {out['off_from']}" if out["off_from"] else
         "nowhere in the batches searched"),
        ("acceptance", s["acceptance"]),
        ("tried", f"{out['shapes_tried']} draft shapes x {len(out['batches'])} batch sizes; "
                  f"off below {out['min_speedup']:g}x")]))
    for w in out["warnings"]:
        c.print(f"[bold yellow]warning:[/] {w}")
    def span(pair: list, fmt: str) -> str:
        lo, hi = pair
        return f"{lo:{fmt}}" if lo == hi else f"{lo:{fmt}}-{hi:{fmt}}"
    rows = [[span(r["batch"], "d"), r["shape"], span(r["speedup"], ".2f") if r["speedup"]
             else "-"] for r in out["schedule"]]
    c.print(table("Per batch size", ["batch", "draft", "speedup (x)"], rows, right=(0, 2),
                  caption="off: no shape reaches --min-speedup; speedup: the lowest and "
                          "highest over the run"))
    for engine, launch in out["launch"].items():
        c.print(Text(f"{engine} launch flags", style="bold"))
        c.print(_flags_text(launch) or "# " + "; ".join(launch["notes"]), markup=False,
                highlight=False)
    if out["defaults"]:
        c.print(key_values("Defaults used", [("", n) for n in out["defaults"]]))


def _save(data: dict, d) -> list:
    """--save-dir: result.json and advice.csv (batch, decision, speedup)."""
    from . import output

    output.write_json(d / "result.json", data)
    output.write_csv(d / "advice.csv", ["batch", "decision", "speedup_x"],
                     [list(x) for x in zip(data["batches"], data["choice"], data["speedup"])])
    return [d / "result.json", d / "advice.csv"]
