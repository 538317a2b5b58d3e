"""The placement rules by name: upstream's baselines, FGD, and our own rules."""

from __future__ import annotations

from optalloc.core import MethodUnavailable
from optalloc.heuristics import fgd_plus
from optalloc.heuristics.rules import RULE_LIST, Rule

_RULES: dict[str, Rule] = {rule.name: rule for rule in (*RULE_LIST, fgd_plus.RULE)}

RULES: tuple[str, ...] = tuple(_RULES)


def get_rule(name: str) -> Rule:
    """The rule called ``name``; :class:`MethodUnavailable` listing the valid names otherwise."""
    rule = _RULES.get(name) if isinstance(name, str) else None
    if rule is None:
        raise MethodUnavailable(f"unknown placement rule {name!r}; valid rules: {', '.join(RULES)}")
    return rule


def describe(rule: str) -> str:
    """One line on what ``rule`` does (shown by ``optalloc methods``)."""
    return get_rule(rule).summary
