# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters that share sync work between control nodes and count licence units."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible_collections.ferry.kube.plugins.module_utils import scaleout


def assign_work(items, nodes, criterion='apps', capacity=None, slack=0.15):
    try:
        return scaleout.assign(items, nodes, criterion=criterion, capacity=capacity, slack=slack)
    except scaleout.AssignmentError as exc:
        raise AnsibleFilterError('ferry.kube.assign_work: %s' % exc) from None


def licence_units(apps):
    return scaleout.licence_units(apps)


class FilterModule:
    def filters(self):
        return {'assign_work': assign_work, 'licence_units': licence_units}
