"""Label and field selectors in the API's string syntax."""

import re

from .errors import bad_request

_SET = re.compile(r'^\s*(!)?\s*([A-Za-z0-9./_-]+)\s*(?:(in|notin)\s*\(([^)]*)\))?\s*$')
_EQ = re.compile(r'^\s*([A-Za-z0-9./_-]+)\s*(==|=|!=)\s*([A-Za-z0-9._-]*)\s*$')


def _split(selector):
    """Split on commas that are not inside parentheses."""
    parts, depth, current = [], 0, ''
    for char in selector:
        if char == '(':
            depth += 1
        elif char == ')':
            depth -= 1
        if char == ',' and depth == 0:
            parts.append(current)
            current = ''
        else:
            current += char
    if current.strip():
        parts.append(current)
    return parts


def parse_labels(selector):
    """A predicate over a labels dict."""
    if not selector:
        return lambda labels: True
    tests = []
    for part in _split(selector):
        eq = _EQ.match(part)
        if eq:
            key, op, value = eq.groups()
            tests.append((lambda k, v: lambda l: l.get(k) == v)(key, value) if op in ('=', '==')
                         else (lambda k, v: lambda l: l.get(k) != v)(key, value))
            continue
        st = _SET.match(part)
        if not st:
            raise bad_request('unable to parse requirement: %r' % part.strip())
        negate, key, op, values = st.groups()
        if op:
            options = {v.strip() for v in values.split(',') if v.strip()}
            tests.append((lambda k, o: lambda l: k in l and l[k] in o)(key, options) if op == 'in'
                         else (lambda k, o: lambda l: k not in l or l[k] not in o)(key, options))
        elif negate:
            tests.append((lambda k: lambda l: k not in l)(key))
        else:
            tests.append((lambda k: lambda l: k in l)(key))
    return lambda labels: all(test(labels or {}) for test in tests)


def matches_selector_dict(selector, labels):
    """A LabelSelector object (matchLabels + matchExpressions) against labels."""
    if selector is None:
        return False
    labels = labels or {}
    for key, value in (selector.get('matchLabels') or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get('matchExpressions') or []:
        key, op, values = expr.get('key'), expr.get('operator'), expr.get('values') or []
        if op == 'In' and labels.get(key) not in values:
            return False
        if op == 'NotIn' and key in labels and labels[key] in values:
            return False
        if op == 'Exists' and key not in labels:
            return False
        if op == 'DoesNotExist' and key in labels:
            return False
    return True


def field_value(obj, path):
    current = obj
    for part in path.split('.'):
        if not isinstance(current, dict):
            return None
        current = current.get(part)
    return current


def parse_fields(selector):
    if not selector:
        return lambda obj: True
    tests = []
    for part in _split(selector):
        eq = _EQ.match(part)
        if not eq:
            raise bad_request('invalid field selector: %r' % part.strip())
        path, op, value = eq.groups()
        if op in ('=', '=='):
            tests.append((lambda p, v: lambda o: str(field_value(o, p) or '') == v)(path, value))
        else:
            tests.append((lambda p, v: lambda o: str(field_value(o, p) or '') != v)(path, value))
    return lambda obj: all(test(obj) for test in tests)
