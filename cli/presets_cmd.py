"""`explore presets`: list and show the shipped presets and what each field means."""

from __future__ import annotations

from typing import Optional

import typer

from .common import AsJson
from .options import uses

app = typer.Typer(help="List and show presets (models, GPUs, acceptance rates, ...).\n\n"
                       "Example: explore presets list gpu; explore presets show h800")


@app.command("list")
@uses(output=AsJson)
def list_presets(
    output: AsJson,
    kind: Optional[str] = typer.Argument(None, help="only this kind (model, gpu, ...)"),
) -> None:
    """List preset names by kind, with aliases.

    Example: explore presets list gpu
    """
    from explore import presets

    from .common import emit_json
    from .render import console, table

    kinds = [kind] if kind else list(presets.KINDS)
    for k in kinds:
        presets._kind(k)  # validates the kind with a helpful error
    if output.json:
        emit_json({k: presets.names(k) for k in kinds})
        return
    for k in kinds:
        alias: dict[str, list[str]] = {}
        for a, n in presets.aliases(k).items():
            alias.setdefault(n, []).append(a)
        from rich.markup import escape   # sources say "[inferred]": text, not Rich markup
        rows = []
        for n in presets.names(k):
            obj = presets.load(k, n)
            desc = getattr(obj, "description", "") or getattr(obj, "source", "")
            rows.append([n, ", ".join(alias.get(n, [])), escape(desc)])
        console().print(table(f"{k}: {presets.KINDS[k].help}", ["name", "aliases",
                                                                "description / source"], rows))


@app.command("show")
@uses(output=AsJson)
def show(
    output: AsJson,
    name: str = typer.Argument(..., help="preset name or alias"),
    kind: Optional[str] = typer.Option(None, "--kind", help="disambiguate when several kinds "
                                       "share the name"),
) -> None:
    """Show one preset: every field with its value, unit, meaning and source.

    Example: explore presets show h800
    """
    import dataclasses

    from explore import presets
    from explore.models.errors import ConfigError, shown
    from explore.models.spec import field_docs

    from .common import emit_json
    from .render import console, table

    hits = [(kind, presets.resolve(kind, name))] if kind else presets.find(name)
    if not hits and presets.is_path(name):    # the user's own file: the kinds that read it
        hits = _kinds_reading(name)
    if not hits:
        every = [n for k in presets.KINDS for n in presets.names(k)]
        close = presets.nearest(name, every)
        raise ConfigError(f"no preset called {shown(name)}"
                          + (f"; nearest: {', '.join(close)}" if close else "")
                          + " (`explore presets list` shows all)")
    if len(hits) > 1:
        raise ConfigError(f"{name!r} is a preset of several kinds "
                          f"({', '.join(k for k, _ in hits)}); add --kind")
    k, path = hits[0]
    obj = presets.load(k, str(path))
    values = dataclasses.asdict(obj)
    if output.json:
        emit_json({"kind": k, "file": str(path), **values})
        return
    from rich.markup import escape   # sources say "[literature]": text, not Rich markup

    sources = values.get("sources", {}) if isinstance(values.get("sources"), dict) else {}
    rows = []
    for fname, unit, doc, _required in field_docs(type(obj)):
        if fname in ("sources",):
            continue
        value = _fmt(values[fname]) + (f" {unit}" if unit else "")
        rows.append([fname, escape(value),
                     escape(doc + ("" if not sources.get(fname) else f"  [{sources[fname]}]"))])
    t = table(f"{k} preset {obj.name if hasattr(obj, 'name') else name} ({path})",
              ["field", "value", "meaning [source]"], rows)
    t.columns[0].no_wrap = True     # field names are what a YAML file must spell exactly
    console().print(t)


def _kinds_reading(path: str) -> list:
    """(kind, file) for every preset kind whose loader accepts the file; the error of the
    nearest kind when none does (the one whose fields the file shares most)."""
    from pathlib import Path

    from explore import presets
    from explore.models.errors import ConfigError, InputError

    if not Path(path).is_file():
        raise ConfigError(f"file not found: {path}")
    ok, errors = [], []
    for k in presets.KINDS:
        try:
            presets.load(k, path)
            ok.append((k, Path(path)))
        except (ConfigError, InputError) as e:
            errors.append(str(e))
    if not ok:
        raise ConfigError(f"{path} is not a preset of any kind; as the closest: "
                          f"{min(errors, key=len)}")
    return ok


@app.command("fields")
@uses(output=AsJson)
def fields(
    output: AsJson,
    kind: str = typer.Argument(..., help="preset kind (model, gpu, ...)"),
) -> None:
    """Every field a preset of KIND may have: unit, default and meaning, to write your own YAML.

    Example: explore presets fields gpu
    """
    import dataclasses

    from explore import presets
    from explore.models.spec import field_docs

    from .common import emit_json
    from .render import console, table

    from rich.markup import escape   # meanings quote YAML such as [sd]: text, not markup

    cls = presets._kind(kind).cls
    defaults = {f.name: (f.default if f.default is not dataclasses.MISSING else
                         f.default_factory() if f.default_factory is not dataclasses.MISSING
                         else None) for f in dataclasses.fields(cls)}
    rows = [{"field": n, "unit": u, "required": r and n != "name",
             "default": "the file name" if n == "name" else None if r else defaults[n],
             "meaning": d} for n, u, d, r in field_docs(cls)]
    if output.json:
        emit_json(rows)
        return
    t = table(f"Fields of a {kind} preset (YAML keys; quantities may carry units, e.g. "
              f"'80 GiB')", ["field", "unit", "default", "meaning"],
              [[r["field"], r["unit"], escape(_fmt(r["default"])) if not r["required"]
                else "required", escape(str(r["meaning"]))] for r in rows])
    t.columns[0].no_wrap = True     # field names are what a YAML file must spell exactly
    console().print(t)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)
