"""Search space files: find them, read them, validate them against their families' rules.

A space names one `family` whose `params` and repeated group (with nested groups) follow that
family's `ParamSpec`/`GroupSpec` rules (nas/models/family.py), or under `families` gives several
families each such a body (the family is then a searched choice). Errors name the file, the field
and what was expected; the result is a frozen `nas.searchspace.SearchSpace`.
"""

from __future__ import annotations

import math
from importlib.resources import files
from pathlib import Path
from typing import Any

from nas.errors import ConfigError
from nas.searchspace import Param, Repeated, SearchSpace
from nas.yamldoc import MAX_INT, MAX_NUMBER, MAX_TEXT, Doc, field_name, read_yaml, show_value

MAX_UNITS = 64  # the repeated group's `count`: deeper models are a typo at this scale
# upper bounds of per-unit sizes; a width of 2**31 fails every trial for memory instead of being refused
UNIT_BOUNDS = {"channels": 65536, "width": 65536, "kernel": 31, "repeats": 32, "stride": 8, "expansion": 32}

# The shipped spaces are package data (nas/resources/search_spaces), found through the import system.
SPACES_DIR = Path(str(files("nas").joinpath("resources"))) / "search_spaces"


_PARAM_KEYS = {"choices", "type", "low", "high", "step", "log", "when"}


def _param(doc: Doc, name: str, registry_choices: tuple[str, ...] | None) -> Param:
    doc.check_keys(_PARAM_KEYS)
    when: tuple[tuple[str, tuple[Any, ...]], ...] = ()
    if doc.has("when"):
        w = doc.sub("when")
        if not w.data:
            raise w.error("expected at least one condition")
        conds = []
        for key, allowed in w.data.items():
            values = tuple(allowed) if isinstance(allowed, list) else (allowed,)
            if not values:
                raise w.error("expected a value or a non-empty list of values", allowed, str(key))
            if not isinstance(key, str):
                raise w.error("expected a parameter name", key, str(key))
            for v in values:
                if not isinstance(v, (str, int, float, bool)) or isinstance(v, float) and not math.isfinite(v):
                    raise w.error("expected scalar values (string, number, bool)", v, str(key))
                if isinstance(v, str) and len(v) > MAX_TEXT:
                    raise w.error(f"expected values of at most {MAX_TEXT} characters", f"{len(v)} characters", str(key))
            conds.append((str(key), values))
        when = tuple(conds)
    if doc.has("choices"):
        if doc.has("low") or doc.has("high"):
            raise doc.error("give either 'choices' or 'low'/'high', not both")
        choices = doc.raw("choices")
        if not isinstance(choices, list) or not choices:
            raise doc.error("expected a non-empty list", choices, "choices")
        for c in choices:
            if not isinstance(c, (str, int, float, bool)) or isinstance(c, float) and not math.isfinite(c):
                raise doc.error("expected scalar values (string, number, bool)", c, "choices")
            if isinstance(c, int) and not isinstance(c, bool) and abs(c) > MAX_INT:
                raise doc.error(f"expected integers of at most {MAX_INT}", c, "choices")
            if isinstance(c, float) and abs(c) > MAX_NUMBER:
                raise doc.error(f"expected numbers of magnitude at most {MAX_NUMBER:g}", c, "choices")
            if isinstance(c, str) and len(c) > MAX_TEXT:
                raise doc.error(f"expected values of at most {MAX_TEXT} characters", f"{len(c)} characters", "choices")
        if len(set(map(repr, choices))) != len(choices):
            raise doc.error("values must be distinct", choices, "choices")
        if registry_choices is not None:
            for c in choices:
                if c not in registry_choices:
                    raise doc.error(
                        f"unknown {name} {show_value(c)} (valid: {', '.join(registry_choices)})", key="choices"
                    )
        return Param(name, "choice", choices=tuple(choices), when=when)
    kind = doc.raw("type", None)
    low, high = doc.raw("low"), doc.raw("high")
    if kind is None:
        kind = "int" if isinstance(low, int) and isinstance(high, int) else "float"
    if kind not in ("int", "float"):
        raise doc.error("expected 'int' or 'float'", kind, "type")
    if kind == "int":
        lo, hi = doc.int("low"), doc.int("high")
        step = doc.int("step", 1, low=1)
    else:
        lo, hi = doc.real("low"), doc.real("high")
        step = doc.number("step", None, positive=True) if doc.has("step") else None
    if lo > hi:
        raise doc.error(f"low ({lo}) is above high ({hi})", key="low")
    log = doc.raw("log", False)
    if not isinstance(log, bool):
        raise doc.error("expected true or false", log, "log")
    if log and (lo <= 0 or step not in (None, 1)):
        raise doc.error("a log range needs low > 0 and no step", key="log")
    return Param(name, kind, low=lo, high=hi, step=step, log=log, when=when)


def _check_conditions(params: tuple[Param, ...], known: dict[str, Param], doc: Doc) -> None:
    for p in params:
        for key, values in p.when:
            target = known.get(key)
            if target is None or target is p:
                raise doc.error(
                    f"'when' refers to {show_value(key)}, which is not a parameter declared before it",
                    key=f"{p.name}.when",
                )
            if target.kind == "choice":
                bad = [v for v in values if v not in target.choices]
                if bad:
                    raise doc.error(
                        f"'when' value {show_value(bad[0])} is not one of {field_name(key)}'s choices {show_value(list(target.choices))}",
                        key=f"{p.name}.when",
                    )


def resolve_space(name_or_path: str | Path) -> Path:
    """The YAML file of a space: a path, a shipped space's name, or a space a family ships.

    Raises ConfigError listing the valid names when `name_or_path` is neither.
    """
    text = str(name_or_path)
    candidate = Path(text)
    if candidate.suffix in (".yaml", ".yml") or candidate.exists() or "/" in text:
        return candidate
    shipped = {p.stem: p for p in list_spaces()}
    if text in shipped:
        return shipped[text]
    names = ", ".join(sorted(shipped)) or "none"
    raise ConfigError(f"unknown search space {text!r} (valid: {names}; or give a path to a .yaml file)")


def load_space(name_or_path: str | Path) -> SearchSpace:
    """Load and validate a search space by name (`nas/resources/search_spaces/NAME.yaml`, or a
    space a family ships) or path."""
    path = resolve_space(name_or_path)
    return parse_space(read_yaml(path), str(path), path.stem)


def _declared(p: Param) -> tuple[Any, ...]:
    return p.choices if p.kind == "choice" else (p.low, p.high)


def _params(doc: Doc, specs: tuple[Any, ...], known: dict[str, Param]) -> tuple[Param, ...]:
    """The parameters of one mapping, checked against the family's ParamSpecs and `when` rules."""
    by_name = {s.name: s for s in specs}
    doc.check_keys(set(by_name))
    for spec in specs:
        if spec.required:
            doc.raw(spec.name)
    out: list[Param] = []
    for k in doc.data:
        spec = by_name[str(k)]
        p = _param(doc.sub(k), str(k), tuple(spec.choices()) if spec.choices else None)
        problem = spec.check(_declared(p), p.kind)
        if problem:
            raise doc.error(problem, list(_declared(p)), p.name)
        _check_conditions((p,), {**known, **{q.name: q for q in out}}, doc)
        out.append(p)
    return tuple(out)


def _group(doc: Doc, spec: Any, known: dict[str, Param]) -> Repeated:
    """One repeated group (and its nested groups) as the family's GroupSpec allows."""
    doc.check_keys({"count", "params", *(g.name for g in spec.groups)})
    count = _param(doc.sub("count"), "count", None)
    if count.kind != "int" or count.low < 1 or count.when:
        raise doc.error("expected an integer range with low >= 1 (and no 'when')", key="count")
    if count.high > MAX_UNITS:
        raise doc.error(f"expected high <= {MAX_UNITS}", count.high, "count.high")
    params = _params(doc.sub("params"), spec.params, known)
    for p in params:  # per-unit sizes: a width of 2**31 fails every trial for memory instead of being refused
        if p.name in UNIT_BOUNDS:
            values = p.choices if p.kind == "choice" else (p.low, p.high)
            if any(isinstance(v, (int, float)) and v > UNIT_BOUNDS[p.name] for v in values):
                raise doc.sub("params").error(f"expected values of at most {UNIT_BOUNDS[p.name]}", list(values), p.name)
    inner = {**known, **{p.name: p for p in params}}
    groups = []
    for g in spec.groups:
        if doc.has(g.name):
            groups.append(_group(doc.sub(g.name), g, inner))
        elif g.required:
            doc.raw(g.name)
    return Repeated(spec.name, count, params, tuple(groups))


def _family_space(doc: Doc, family: str, name: str, description: str, file: str) -> SearchSpace:
    """The part of a space document that one family's rules govern: `params` and its group."""
    # imported here, not at the top: importing nas.models fills the family registry as the
    # families' modules import torch (seconds), which reading a hardware profile (`nas report`,
    # `nas plot`) must not pay
    from nas.models.registry import get_family

    fam = get_family(family)
    pdoc = doc.sub("params")
    params = _params(pdoc, fam.params, {})
    for p in params:
        if p.name == "precision":
            bad = [c for c in p.choices if c not in fam.precisions]
            if bad:
                raise pdoc.error(
                    f"family {family!r} does not deploy in {bad[0]!r} (its precisions: {', '.join(fam.precisions)})",
                    key="precision",
                )
        if p.name == "prune_ratio" and not fam.prunable:
            raise pdoc.error(f"structured pruning is not defined for family {family!r}", key="prune_ratio")
    group = _group(doc.sub(fam.unit.name), fam.unit, {p.name: p for p in params})
    space = SearchSpace(name=name, family=family, description=description, params=params, repeated=group, source=file)
    fam.check_space(space)
    return space


def parse_space(data: Any, file: str, default_name: str = "space") -> SearchSpace:
    """Validate a search-space document (as read from YAML) that came from `file`.

    A document names one `family` (its `params` and repeated group follow that family's rules),
    or under `families` maps several family names to such bodies: the family is then itself a
    searched choice. Raises ConfigError naming the file and field.
    """
    from nas.models.registry import family_names, get_family

    doc = Doc(data, file)
    name = doc.str("name", default_name)
    description = doc.text("description")
    if doc.has("families"):
        doc.check_keys({"name", "description", "families"})
        fdoc = doc.sub("families")
        if not fdoc.data:
            raise fdoc.error("expected at least one family")
        valid = family_names()
        subs = []
        for fam_name in fdoc.data:
            if fam_name not in valid:
                raise fdoc.error(f"unknown family (valid: {', '.join(valid)})", fam_name)
            body = fdoc.sub(fam_name)
            body.check_keys({"params", get_family(fam_name).unit.name})
            subs.append(_family_space(body, str(fam_name), name, description, file))
        return SearchSpace(
            name=name,
            family="|".join(f.family for f in subs),
            description=description,
            params=(),
            repeated=None,
            source=file,
            families=tuple(subs),
        )
    family = doc.str("family")
    valid = family_names()
    if family not in valid:
        raise doc.error(f"unknown family (valid: {', '.join(valid)})", family, "family")
    doc.check_keys({"name", "family", "description", "params", get_family(family).unit.name})
    return _family_space(doc, family, name, description, file)


def list_spaces() -> list[Path]:
    """Every shipped space: search_spaces/*.yaml, then those installed families ship."""
    from nas.models.registry import FAMILIES, load_plugin_families

    load_plugin_families()
    own = sorted(SPACES_DIR.glob("*.yaml"))
    extra = {p for fam in FAMILIES.values() for p in fam.spaces()} - set(own)
    return own + sorted(extra)


__all__ = ["SPACES_DIR", "list_spaces", "load_space", "parse_space", "resolve_space"]
