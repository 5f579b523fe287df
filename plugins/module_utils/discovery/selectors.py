# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Label selectors as Kubernetes evaluates them: selector strings, Service selector maps and
LabelSelector objects (matchLabels plus matchExpressions)."""

from __future__ import annotations

import re

from ansible_collections.ferry.kube.plugins.module_utils.kube.errors import FerryError

_SET = re.compile(r'^\s*([A-Za-z0-9./_-]+)\s+(in|notin)\s+\(([^)]*)\)\s*$')
_COMPARE = re.compile(r'^\s*([A-Za-z0-9./_-]+)\s*(==|!=|=)\s*([A-Za-z0-9._-]*)\s*$')
_EXISTS = re.compile(r'^\s*(!?)\s*([A-Za-z0-9./_-]+)\s*$')


def _clauses(selector):
    """Split on commas outside parentheses."""
    depth, current, parts = 0, [], []
    for char in selector:
        if char == '(':
            depth += 1
        elif char == ')':
            depth -= 1
        if char == ',' and depth == 0:
            parts.append(''.join(current))
            current = []
        else:
            current.append(char)
    parts.append(''.join(current))
    return [part for part in parts if part.strip()]


def parse_selector(selector):
    """``app=web,tier in (a,b),!legacy`` -> requirements [(key, operator, values)]."""
    requirements = []
    for clause in _clauses(selector or ''):
        found = _SET.match(clause)
        if found:
            values = [v.strip() for v in found.group(3).split(',') if v.strip()]
            requirements.append((found.group(1), 'In' if found.group(2) == 'in' else 'NotIn', values))
            continue
        found = _COMPARE.match(clause)
        if found:
            requirements.append((found.group(1), 'NotIn' if found.group(2) == '!=' else 'In', [found.group(3)]))
            continue
        found = _EXISTS.match(clause)
        if found:
            requirements.append((found.group(2), 'DoesNotExist' if found.group(1) else 'Exists', []))
            continue
        raise FerryError('label selector %r: cannot read %r; write key=value, key!=value, key in (a,b), key notin (a,b), key or !key' % (selector, clause))
    return requirements


def matches(requirements, labels):
    for key, operator, values in requirements:
        present = key in labels
        if operator == 'In' and not (present and labels[key] in values):
            return False
        if operator == 'NotIn' and present and labels[key] in values:
            return False
        if operator == 'Exists' and not present:
            return False
        if operator == 'DoesNotExist' and present:
            return False
    return True


def label_selector_requirements(selector):
    """Requirements of a LabelSelector object; None for a null selector (selects nothing)."""
    if selector is None:
        return None
    requirements = [(key, 'In', [value]) for key, value in (selector.get('matchLabels') or {}).items()]
    for expression in selector.get('matchExpressions') or []:
        requirements.append((expression['key'], expression['operator'], list(expression.get('values') or [])))
    return requirements


def selects(selector, labels):
    """Whether a LabelSelector object selects ``labels`` (an empty selector selects everything)."""
    requirements = label_selector_requirements(selector)
    return requirements is not None and matches(requirements, labels or {})


def map_selects(selector_map, labels):
    """Whether a Service-style selector map selects ``labels`` (an empty map selects nothing)."""
    if not selector_map:
        return False
    labels = labels or {}
    return all(labels.get(key) == value for key, value in selector_map.items())
