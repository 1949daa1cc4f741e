"""Load a trial file: YAML (safe_load only) validated against the schema and each evaluator's params.

Every mistake is reported with the key path and the line in the file, never a traceback.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from fhirscreen.fhir.codes import ValueSet
from fhirscreen.paths import default_trial_file
from fhirscreen.trial.model import CriterionDef, TrialDef, build_value_sets
from fhirscreen.trial.parsed_cache import parsed_text

if TYPE_CHECKING:
    import yaml

    from fhirscreen.criteria.base import EvaluatorKind, Params

# PyYAML is imported only to parse a trial file the cache (trial/parsed_cache.py) has not seen, or to
# place an error in it: not on every run.


def _safe_loader() -> Any:
    import yaml

    return getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _NotYaml(Exception):
    """A yaml.YAMLError, passed on without the caller having to import yaml to catch it."""


def _parse_yaml(text: str) -> Any:
    import yaml

    try:
        return yaml.load(text, Loader=_safe_loader())
    except yaml.YAMLError as exc:
        raise _NotYaml(exc) from None


class TrialFileError(Exception):
    """A trial file that cannot be used; the message names the file, the key and the line."""


@dataclass(frozen=True)
class Criterion:
    definition: CriterionDef
    kind: EvaluatorKind[Any]
    params: Params

    @property
    def id(self) -> str:
        return self.definition.id


@dataclass(frozen=True)
class TrialTerms:
    """What a source needs to plan its reads (the value sets and the population), known before the
    criteria are loaded: a server source can start the initial-population search meanwhile."""

    definition: TrialDef
    value_sets: dict[str, ValueSet]

    @property
    def population(self) -> ValueSet:
        return self.value_sets[self.definition.trial.population.value_set]


@dataclass(frozen=True)
class Trial:
    definition: TrialDef
    criteria: tuple[Criterion, ...]
    value_sets: dict[str, ValueSet]
    path: str

    @property
    def id(self) -> str:
        return self.definition.trial.id

    @property
    def population(self) -> ValueSet:
        return self.value_sets[self.definition.trial.population.value_set]

    def criterion(self, criterion_id: str) -> Criterion:
        for c in self.criteria:
            if c.id == criterion_id:
                return c
        raise KeyError(criterion_id)


def _line_of(node: yaml.Node | None, loc: Sequence[int | str]) -> int | None:
    """Follow a pydantic error location through the YAML node tree to a 1-based line number."""
    import yaml

    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            nxt = None
            for key, value in node.value:
                if key.value == part:
                    nxt = value
                    line = key.start_mark.line + 1
                    break
            if nxt is None:
                break
            node = nxt
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _describe(errors: ValidationError, root: yaml.Node | None, path: str, prefix: Sequence[int | str]) -> str:
    lines = []
    for err in errors.errors():
        loc = [*prefix, *err["loc"]]
        shown = ".".join(str(p) for p in loc) or "(top level)"
        line = _line_of(root, loc)
        where = f"{path}:{line}" if line else path
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (a typo?)"
        lines.append(f"{where}: {shown}: {msg}")
    return "\n".join(lines)


def load_trial(
    path: str | Path | None = None, terms_ready: Callable[[TrialTerms], None] | None = None
) -> Trial:
    """Read and validate a trial file (the bundled NCT06737380 definition by default).

    ``terms_ready`` is called with the value sets once they are built and valid, before the criteria
    (most of the loading time) are imported and their parameters checked; a mistake found after it is
    still a TrialFileError."""
    file = Path(path) if path is not None else default_trial_file()
    shown = str(file)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise TrialFileError(f"{shown}: cannot read trial file: {exc.strerror or exc}") from None
    try:
        data = parsed_text(text, _parse_yaml)
    except _NotYaml as wrapped:
        error = wrapped.args[0]
        mark = getattr(error, "problem_mark", None)
        where = f"{shown}:{mark.line + 1}" if mark is not None else shown
        raise TrialFileError(f"{where}: not valid YAML: {getattr(error, 'problem', error)}") from None
    root: yaml.Node | None = None

    def node_tree() -> yaml.Node | None:
        # Composed only when there is an error to place: it costs as much again as the load itself.
        nonlocal root
        if root is None:
            import yaml

            root = yaml.compose(text, Loader=_safe_loader())
        return root

    if not isinstance(data, dict):
        raise TrialFileError(f"{shown}: a trial file is a YAML mapping with trial, value_sets and criteria")
    try:
        definition = TrialDef.model_validate(data)
    except ValidationError as exc:
        raise TrialFileError(_describe(exc, node_tree(), shown, ())) from None
    value_sets = build_value_sets(definition.value_sets)
    if terms_ready is not None:
        terms_ready(TrialTerms(definition, value_sets))

    from fhirscreen.criteria import load_evaluators

    registry = load_evaluators()
    context = {"value_sets": set(definition.value_sets)}
    criteria: list[Criterion] = []
    problems: list[str] = []
    for index, cdef in enumerate(definition.criteria):
        kind = registry.get(cdef.evaluator)
        if kind is None:
            line = _line_of(node_tree(), ["criteria", index, "evaluator"])
            problems.append(
                f"{shown}:{line}: criteria.{index}.evaluator: unknown evaluator {cdef.evaluator!r} "
                f"for {cdef.id}; known: {', '.join(sorted(registry))}"
            )
            continue
        try:
            params = kind.params.model_validate(cdef.params, context=context)
        except ValidationError as exc:
            problems.append(_describe(exc, node_tree(), shown, ["criteria", index, "params"]))
            continue
        criteria.append(Criterion(cdef, kind, params))
    if problems:
        raise TrialFileError("\n".join(problems))
    # Protocol order (I1..In, then E1..En) drives the attrition table, whatever the order in the file.
    criteria.sort(key=lambda c: (c.id[0] != "I", int(c.id[1:])))
    return Trial(definition, tuple(criteria), value_sets, shown)
