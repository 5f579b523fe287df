# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Share sync work between control nodes, and count licence units.

Assignment is rendezvous (highest-random-weight) hashing with bounded loads: every item ranks the
control nodes by a hash of (item, node), and takes the best-ranked node that still has room. An
item only moves when its node leaves, or when a new node outranks its current one, so adding a
node moves about 1/N of the work; the bound keeps the shares balanced. Ansible runs each node's
share (inventory, forks, AWX instance groups); this code only decides who syncs what.
"""

from __future__ import annotations

import hashlib
import math

APP_UNIT_GB = 200  # one app unit covers one micro-service and 200 GB, pooled across apps
STORAGE_UNIT_GB = 200

CRITERIA = ('apps', 'namespaces', 'gb', 'clusters')


class AssignmentError(ValueError):
    """The work cannot be shared as asked (bad input or not enough capacity)."""


def _score(item_key, node):
    return hashlib.blake2b(('%s\0%s' % (item_key, node)).encode('utf-8'), digest_size=8).digest()


def _weight(item, criterion):
    if criterion == 'gb':
        return float(item.get('gb') or 0.0)
    return 1.0


def _group_key(item, criterion):
    """Items that must stay together: a namespace's apps, a cluster's namespaces."""
    if criterion == 'namespaces':
        return '%s/%s' % (item.get('cluster', ''), item.get('namespace', ''))
    if criterion == 'clusters':
        return item.get('cluster', '')
    return '%s/%s/%s' % (item.get('cluster', ''), item.get('namespace', ''), item.get('name', ''))


def assign(items, nodes, criterion='apps', capacity=None, slack=0.15):
    """Map each node name to the items it syncs.

    items: dicts with ``name``, ``namespace``, ``cluster`` and ``gb`` (size of its volumes).
    nodes: control node names (inventory hostnames).
    criterion: what is balanced: ``apps`` (count), ``namespaces`` (a namespace stays on one node),
      ``gb`` (volume size), ``clusters`` (a cluster stays on one node).
    capacity: optional ``{node: max units}`` (apps, namespaces, GB or clusters per node).
    slack: how far above an even share a node may go before items spill to their next choice.
    """
    if criterion not in CRITERIA:
        raise AssignmentError('criterion must be one of %s, not %r' % (', '.join(CRITERIA), criterion))
    nodes = sorted(set(nodes or []))
    if not nodes:
        raise AssignmentError('no control nodes to share the work between: give at least one host')
    capacity = {node: _number(limit, 'capacity of %s' % node) for node, limit in (capacity or {}).items()
                if limit not in (None, '')}  # None: no limit
    unknown = sorted(set(capacity) - set(nodes))
    if unknown:
        raise AssignmentError('capacity names hosts that are not control nodes: %s' % ', '.join(unknown))

    groups = {}
    for item in items or []:
        if not item.get('name') and criterion in ('apps', 'gb'):
            raise AssignmentError('every item needs a name (got %r)' % (item,))
        groups.setdefault(_group_key(item, criterion), []).append(item)
    weights = {key: (sum(_weight(i, criterion) for i in members) if criterion == 'gb' else 1.0) for key, members in groups.items()}

    total = sum(weights.values())
    even = total / len(nodes) if nodes else 0
    limit = {node: capacity.get(node, math.inf) for node in nodes}
    heaviest = max(weights.values(), default=0)
    bound = {node: min(limit[node], max(even * (1 + slack), heaviest)) for node in nodes}
    if sum(limit.values()) < total:
        raise AssignmentError('the control nodes can take %s %s in all, but there are %s: add a node or raise capacity'
                              % (_fmt(sum(limit.values())), criterion, _fmt(total)))

    load = {node: 0.0 for node in nodes}
    assignment = {node: [] for node in nodes}
    # Heaviest first, so big items get their first choice and small ones fill the gaps.
    for key in sorted(groups, key=lambda k: (-weights[k], k)):
        ranked = sorted(nodes, key=lambda node, key=key: _score(key, node), reverse=True)
        chosen = next((n for n in ranked if load[n] + weights[key] <= bound[n] + 1e-9), None)
        if chosen is None:  # over the soft bound everywhere: take the best node still under its hard capacity
            chosen = next((n for n in ranked if load[n] + weights[key] <= limit[n] + 1e-9), None)
        if chosen is None:
            raise AssignmentError('%s (%s %s) fits on no control node within its capacity' % (key, _fmt(weights[key]), criterion))
        load[chosen] += weights[key]
        assignment[chosen].extend(groups[key])
    for node in nodes:
        assignment[node].sort(key=lambda i: (i.get('cluster', ''), i.get('namespace', ''), i.get('name', '')))
    return assignment


def _number(value, what):
    try:
        return float(value)
    except (TypeError, ValueError):
        raise AssignmentError('%s must be a number, not %r' % (what, value)) from None


def _fmt(number):
    return ('%d' % number) if float(number).is_integer() else ('%.1f' % number)


def licence_units(apps, app_unit_gb=APP_UNIT_GB, storage_unit_gb=STORAGE_UNIT_GB):
    """Units under the per-app-per-GB model.

    Each app (a Service, i.e. a micro-service) needs one app unit, which also covers ``app_unit_gb``
    of replicated volume data; the allowance is pooled across apps. Data beyond the pool needs
    storage units of ``storage_unit_gb`` each. Two apps with 300 GB and 100 GB: two app units, no
    storage unit.
    """
    app_count = len(apps)
    total_gb = sum(float(a.get('gb') or 0.0) for a in apps)
    included = app_count * app_unit_gb
    extra = max(0.0, total_gb - included)
    return {
        'apps': app_count,
        'gb': round(total_gb, 3),
        'app_units': app_count,
        'included_gb': included,
        'storage_units': int(math.ceil(extra / storage_unit_gb - 1e-12)) if extra > 0 else 0,
    }


def check_limits(units, max_apps=None, max_gb=None):
    """Messages for each policy limit the usage exceeds (empty when within limits)."""
    problems = []
    if max_apps is not None and units['apps'] > max_apps:
        problems.append('%d apps replicate but the policy allows at most %d: raise max_apps or narrow the selection' % (units['apps'], max_apps))
    if max_gb is not None and units['gb'] > max_gb:
        problems.append('%s GB of volumes replicate but the policy allows at most %s GB: raise max_gb or exclude volumes'
                        % (_fmt(units['gb']), _fmt(max_gb)))
    return problems
