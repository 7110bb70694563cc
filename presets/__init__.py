"""Preset data (YAML shipped inside the package) and its strict loader.

A preset kind is a folder of YAML files, one preset per file (name = file stem, plus optional
`aliases`), each validated against a documented dataclass from models/. Unknown or misspelt keys,
wrong types and unreadable files raise ConfigError naming the file, the key and the nearest valid
name. Quantities may be written with units ("80 GiB", "2.039 TB/s"): they are converted to the SI
unit the field declares.
"""

from __future__ import annotations

import dataclasses
import importlib
import re
import types
import typing
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from explore.models.errors import ConfigError, ExploreError, nearest, shown
from explore.models.spec import ANY, NONNEGATIVE, Range
from explore.models.units import PREFIXES, parse_quantity

ROOT = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Kind:
    name: str
    folder: str
    target: str  # "module:Class" of the dataclass (imported on first use)
    help: str

    @property
    def cls(self) -> type:
        module, attr = self.target.split(":")
        return getattr(importlib.import_module(module), attr)


KINDS: dict[str, Kind] = {}


def register_kind(name: str, folder: str, target: str, help: str) -> None:
    KINDS[name] = Kind(name, folder, target, help)


register_kind("model", "models", "explore.models.shapes:ModelShape",
              "LLM shapes (decoder layers, attention, dense/MoE FFN)")
register_kind("gpu", "gpus", "explore.models.hardware:GpuSpec",
              "GPUs: peak FLOP/s, HBM, interconnect, efficiency factors")
register_kind("acceptance", "sd/acceptance", "explore.models.sd:Acceptance",
              "speculative-decoding acceptance rates (alpha) per workload")
register_kind("engine", "sd/engines", "explore.models.sd:EngineProfile",
              "serving-engine profiles: fixed costs around the kernels (explore sd --engine)")
register_kind("pairing", "sd/pairings", "explore.models.sd:Pairing",
              "a target model's usual draft and acceptance preset")
register_kind("draft", "sd/drafts", "explore.models.sd_draft:DraftPreset",
              "drafts as engines run them: EAGLE heads, MTP modules, n-gram lookup (explore sd "
              "--draft; a model preset is a standalone draft)")
register_kind("study", "studies", "explore.presets.study_schema:StudyPreset",
              "ready-made studies: an explore command and its options (explore run NAME)")
register_kind("die", "chiplet/dies", "explore.models.chiplet.hardware:DieSpec",
              "chiplet compute dies: MACs, clock, SRAM, energy and area constants")
register_kind("package", "chiplet/packages", "explore.models.chiplet.hardware:PackageSpec",
              "chiplet D2D packages: UCIe link bandwidth, energy, latency, shoreline")
register_kind("dram", "chiplet/dram", "explore.models.chiplet.hardware:DramSpec",
              "DRAM behind a chiplet I/O die: bandwidth, energy, capacity")
register_kind("node", "pipeline/nodes", "explore.models.pipeline.config:NodeSpec",
              "servers around the GPUs: host RAM, host links, network (pipeline study)")


def _did_you_mean(word: str, candidates: typing.Iterable[str]) -> str:
    close = nearest(word, candidates)
    return f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""


# ---- YAML ------------------------------------------------------------------------------------

# Presets are small, flat files: anything far past these bounds is a mistake or an attack (a
# 307-byte file of nested aliases expands to gigabytes; 5,000 nested lists overflow the stack).
MAX_BYTES = 1 << 20
MAX_DEPTH = 32
MAX_VALUES = 100_000      # scalars and collections once aliases are expanded


class _StrictLoader(yaml.SafeLoader):
    """Safe loader (no tag runs code) that refuses duplicate keys and deep nesting."""
    depth = 0

    def compose_node(self, parent, index):
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise ConfigError(f"nested more than {MAX_DEPTH} levels deep (line "
                                  f"{self.peek_event().start_mark.line + 1})")
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _construct_mapping(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise ConfigError(f"duplicate key {shown(key)} at line {key_node.start_mark.line + 1}")
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _expanded_size(node, sizes: dict[int, int]) -> int:
    """Values in `node` with every alias expanded, counted once per distinct node (linear in
    the file, however large the expansion)."""
    if id(node) not in sizes:
        children = (node.value if isinstance(node, yaml.SequenceNode) else
                    [n for kv in node.value for n in kv] if isinstance(node, yaml.MappingNode)
                    else [])
        sizes[id(node)] = min(1 + sum(_expanded_size(c, sizes) for c in children),
                              MAX_VALUES + 1)
    return sizes[id(node)]


def parse_yaml(text: str, where: str) -> Any:
    """YAML text -> Python values, safely and within the bounds above; every failure is one
    ConfigError starting with `where`."""
    loader = _StrictLoader(text)
    try:
        node = loader.get_single_node()
        if node is not None and _expanded_size(node, {}) > MAX_VALUES:
            raise ConfigError(f"expands to more than {MAX_VALUES:,} values through aliases")
        return None if node is None else loader.construct_document(node)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" line {mark.line + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{where}:{at} malformed YAML: {problem}") from None
    except ValueError as e:    # an integer of more than 4,300 digits, a 13th month
        raise ConfigError(f"{where}: cannot read a value: {str(e).split(';')[0]}") from None
    except RecursionError:     # a chain of thousands of aliases, each one level deeper
        raise ConfigError(f"{where}: nested too deeply through aliases") from None
    finally:
        loader.dispose()


def read_text(path: str | Path, what: str = "file", max_bytes: int = MAX_BYTES) -> str:
    """A UTF-8 text file of at most `max_bytes`; a ConfigError naming the file when it is
    missing, too large or not text."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise ConfigError(f"{path}: {size:,} bytes; a {what} is at most {max_bytes:,}")
        data = path.read_bytes()
    except (OSError, ValueError) as e:   # ValueError: a NUL byte in the path
        raise ConfigError(f"cannot read {shown(str(path))}: "
                          f"{getattr(e, 'strerror', None) or e}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte 0x{data[e.start]:02x} at offset "
                          f"{e.start})") from None


def read_yaml(path: str | Path) -> dict:
    """Load one YAML mapping safely; every failure is a ConfigError naming the file."""
    data = parse_yaml(read_text(path, "YAML file"), str(path))
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys to values at the top level")
    return data


# ---- building dataclasses --------------------------------------------------------------------

def coerce(value: Any, hint: Any, unit: str, where: str,
           typical: tuple[float, float] | None = None) -> Any:
    """A value read from a file as type `hint` (quantities with units converted to `unit`);
    ConfigError naming `where` otherwise."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        hint = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {shown(value)}")
    if hint is int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool):
            _checked(ANY, value, where)
            return value
        raise ConfigError(f"{where}: expected an integer, got {shown(value)}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(_checked(ANY, value, where))
        elif isinstance(value, str):
            try:
                number = parse_quantity(value, unit)
            except ValueError as e:
                raise ConfigError(f"{where}: {e}") from None
        else:
            raise ConfigError(f"{where}: expected a number{f' in {unit}' if unit else ''}, "
                              f"got {shown(value)}")
        return _plausible(number, unit, typical, where)
    if hint is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: expected text, got {shown(value)}")
    if hint is dict or origin is dict:
        if isinstance(value, dict):
            return dict(value)
        raise ConfigError(f"{where}: expected a mapping, got {shown(value)}")
    if origin is tuple or hint is tuple:
        if isinstance(value, (list, tuple)):
            inner = args[0] if args else typing.Any
            return tuple(coerce(v, inner, unit, f"{where}[{i}]") if inner is not typing.Any
                         else v for i, v in enumerate(value))
        raise ConfigError(f"{where}: expected a list, got {shown(value)}")
    return value


def _checked(rng: Range, value: Any, where: str) -> Any:
    try:
        rng.check(value, where)
    except ExploreError as e:
        raise ConfigError(str(e)) from None
    return value


def _plausible(value: float, unit: str, typical: tuple[float, float] | None,
               where: str) -> float:
    """A quantity whose magnitude no real part has (`spec(typical=)`) is an error; a bare
    number is most likely the unit forgotten, and the message offers the prefix that fits."""
    if typical is None or value == 0 or typical[0] <= abs(value) <= typical[1]:
        return value
    fits = [p for p in ("k", "M", "G", "T", "P") if typical[0] <= abs(value) * PREFIXES[p]
            <= typical[1]]
    hint = f"; did you mean {value:g} {fits[0]}{unit}?" if fits else ""
    raise ConfigError(f"{where}: {value:g} {unit} is implausible (expected {typical[0]:.3g} to "
                      f"{typical[1]:.3g} {unit}){hint}")


def _field(value: Any, f: dataclasses.Field, hint: Any, where: str) -> Any:
    """One preset value for field `f`: its type, unit and plausible magnitude; a number whose
    field declares no range (`spec(range=)`, checked by the class) must be >= 0, as every
    size, rate, energy and count is."""
    meta = f.metadata
    value = coerce(value, hint, meta.get("unit", ""), where, meta.get("typical"))
    return value if meta.get("range") else _checked(NONNEGATIVE, value, where)


def build(cls: type, data: dict, where: str, extra: typing.Iterable[str] = ()) -> Any:
    """Construct dataclass `cls` from a mapping, strictly: unknown keys are errors naming the
    nearest valid key; values are type-checked and quantities converted to SI."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    allowed = set(fields) | set(extra)
    kwargs = {}
    for key, value in data.items():
        if key not in allowed:
            raise ConfigError(f"{where}: unknown key {key!r}{_did_you_mean(str(key), allowed)}")
        if key in fields:
            kwargs[key] = _field(value, fields[key], hints[key], f"{where}: {key}")
    missing = [n for n, f in fields.items() if n not in kwargs
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"{where}: missing required key(s): {', '.join(missing)}")
    try:
        return cls(**kwargs)
    except ExploreError as e:
        raise ConfigError(f"{where}: {e}") from None


def override(obj: Any, changes: dict[str, str], where: str) -> Any:
    """A copy of preset dataclass `obj` with fields changed from text values ("1.5 GHz"),
    checked like YAML keys: unknown names are errors naming the nearest field."""
    fields = {f.name: f for f in dataclasses.fields(obj)}
    hints = typing.get_type_hints(type(obj))
    kwargs = {}
    for key, text in changes.items():
        if key not in fields:
            raise ConfigError(f"{where}: unknown key {key!r}{_did_you_mean(key, fields)}")
        value = parse_yaml(text, f"{where}: {key}") if isinstance(text, str) else text
        if hints[key] is str:
            value = text
        kwargs[key] = _field(value, fields[key], hints[key], f"{where}: {key}")
    try:
        return dataclasses.replace(obj, **kwargs)
    except ExploreError as e:
        raise ConfigError(f"{where}: {e}") from None


# ---- registry access -------------------------------------------------------------------------

def _kind(kind: str) -> Kind:
    if kind not in KINDS:
        raise ConfigError(f"unknown preset kind {kind!r}{_did_you_mean(kind, KINDS)}; "
                          f"kinds: {', '.join(sorted(KINDS))}")
    return KINDS[kind]


@lru_cache(maxsize=None)
def _index(kind: str) -> dict[str, Path]:
    """name and aliases -> file, for one kind."""
    folder = ROOT / _kind(kind).folder
    index: dict[str, Path] = {}
    for path in sorted(folder.glob("*.yaml")):
        index[path.stem] = path
        text = path.read_text()
        m = re.search(r"^aliases:\s*\[(.*)\]\s*$", text, re.M)
        if m:
            for alias in (a.strip().strip("'\"") for a in m.group(1).split(",")):
                if alias:
                    index[alias] = path
    return index


def names(kind: str) -> list[str]:
    """Canonical preset names (file stems) of one kind."""
    return sorted({p.stem for p in _index(kind).values()})


def aliases(kind: str) -> dict[str, str]:
    return {a: p.stem for a, p in _index(kind).items() if a != p.stem}


def is_path(ref: str) -> bool:
    return ref.endswith((".yaml", ".yml", ".json")) or "/" in ref or is_file(Path(ref))


def is_file(path: Path) -> bool:
    """Path.is_file, False also for a name the file system cannot hold."""
    try:
        return path.is_file()
    except (OSError, ValueError):   # a name too long for the file system, a NUL byte
        return False


def resolve(kind: str, ref: str) -> Path:
    """A preset name, alias or file path -> the file. Unknown names list the nearest ones."""
    if is_path(ref):
        path = Path(ref)
        if not is_file(path):
            raise ConfigError(f"{kind} file not found: {shown(ref)}")
        return path
    index = _index(kind)
    if ref in index:
        return index[ref]
    by_file: dict[Path, str] = {}     # an alias and its preset are one suggestion
    for n in nearest(ref, index, 6):
        by_file.setdefault(index[n], n)
    close = list(by_file.values())[:3]
    raise ConfigError(f"unknown {kind} preset {shown(ref)}"
                      + (f"; nearest: {', '.join(close)}" if close else "")
                      + f" (`explore presets list {kind}` shows all)")


def load(kind: str, ref: str) -> Any:
    """Load a preset by name, alias or path (YAML; a Hugging Face config.json for models)."""
    path = resolve(kind, ref)
    if path.suffix == ".json":
        if kind != "model":
            raise ConfigError(f"{path}: only model presets may be a config.json")
        from .hf import shape_from_hf_config
        return shape_from_hf_config(path)
    return _load_file(kind, str(path))


@lru_cache(maxsize=256)
def _load_file(kind: str, path: str) -> Any:
    cls = _kind(kind).cls
    data = read_yaml(path)
    if "name" in {f.name for f in dataclasses.fields(cls)}:
        data.setdefault("name", Path(path).stem)
    return build(cls, data, path, extra=("aliases",))


def find(name: str) -> list[tuple[str, Path]]:
    """Every (kind, file) whose preset is called `name` (or aliased so)."""
    return [(k, _index(k)[name]) for k in KINDS if name in _index(k)]




# ---- data files ------------------------------------------------------------------------------

def data_path(*parts: str) -> Path:
    """A file shipped with the presets (validation tables live under validation/)."""
    return ROOT.joinpath(*parts)


def read_csv(path: str | Path) -> list[dict]:
    """Rows of a CSV file as dicts of strings; ConfigError when unreadable or empty."""
    import csv
    import io

    text = read_text(path, "CSV file", max_bytes=64 * MAX_BYTES)
    try:
        rows = list(csv.DictReader(io.StringIO(text, newline="")))
    except csv.Error as e:
        raise ConfigError(f"{path}: malformed CSV: {e}") from None
    if not rows:
        raise ConfigError(f"{path}: no data rows")
    return rows


def load_dataclass(cls: type, path: str | Path) -> Any:
    """A strict YAML file -> dataclass (unknown keys are errors)."""
    return build(cls, read_yaml(path), str(path))
