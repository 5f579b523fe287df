# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Capture an app selection: list, link, pick what the selection brings, group into apps.

The result is a capture document: every captured object as the API returned it, the apps, why
each object was captured, and the source cluster's version and APIs. It is what a restore point
stores as its ``objects`` metadata and what ``ferry.kube.restore`` reads back.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.ferry.kube.plugins.module_utils.discovery.apps import group_apps
from ansible_collections.ferry.kube.plugins.module_utils.discovery.graph import BUILTIN_GROUPS, Graph, describe_key, key_of
from ansible_collections.ferry.kube.plugins.module_utils.discovery.inventory import Inventory, LIST_WORKERS
from ansible_collections.ferry.kube.plugins.module_utils.kube.capabilities import detect_platform, served_group_versions
from ansible_collections.ferry.kube.plugins.module_utils.kube.errors import ApiError
from ansible_collections.ferry.kube.plugins.module_utils.kube.objects import split_api_version

FORMAT = 'ferry.capture/v1'
METADATA_NAME = 'objects'  # the restore point metadata blob holding the capture document


class Capture:
    """``Capture(cluster, selection).run()`` -> the capture document (a dict)."""

    def __init__(self, cluster, selection, workers=LIST_WORKERS):
        self.cluster = cluster
        self.selection = selection
        self.workers = workers

    def run(self):
        started = time.monotonic()
        inventory = Inventory(self.cluster, self.selection, self.workers).collect()
        discovery = self.cluster.discovery()
        plurals = {(entry['group'], entry['kind']): entry['resource'] for entry in discovery if not entry['subresource']}
        candidates = inventory.objects + inventory.unlabelled + inventory.cluster_objects
        candidates += self._definitions(inventory.objects + inventory.unlabelled, plurals)
        graph = Graph(candidates, plurals)
        roots = [graph.find('Namespace', '', name) for name in inventory.namespaces] if not self.selection.label_selector else []
        roots += [key for key in (key_of(obj) for obj in inventory.objects) if key in graph.nodes]
        # owners first, so an object's reason names the workload rather than one of its pods
        roots = sorted((root for root in roots if root is not None), key=lambda key: bool((graph.nodes[key].get('metadata') or {}).get('ownerReferences')))
        reached = graph.closure(roots)
        captured = set(reached)
        apps, unassigned = group_apps(graph, captured)
        listed_kinds = {entry['kind'] for entry in inventory.types} | {obj.get('kind') for obj in inventory.cluster_objects}
        objects = [graph.nodes[key] for key in sorted(captured, key=_order)]
        captured_names = {describe_key(key) for key in captured}
        return {
            'format': FORMAT,
            'time': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
            'cluster': self._cluster_facts(discovery),
            'selection': {'namespaces': inventory.namespaces, 'label_selector': self.selection.label_selector,
                          'include_resources': self.selection.include_resources, 'exclude_resources': self.selection.exclude_resources},
            'objects': objects,
            'apps': apps,
            'unassigned': unassigned,
            'why': {describe_key(key): _why(edge, self.selection) for key, edge in reached.items()},
            'missing': [item for item in _unique(graph.missing) if item['kind'] in listed_kinds and item['from'] in captured_names],
            'warnings': sorted(inventory.warnings),
            'resource_types': len(inventory.types),
            'seconds': round(time.monotonic() - started, 3),
        }

    def _definitions(self, objects, plurals):
        """The CRDs of the custom resources found (fetched by name: a cluster may have hundreds)."""
        names = set()
        for obj in objects:
            group = split_api_version(obj.get('apiVersion') or 'v1')[0]
            if group not in BUILTIN_GROUPS and (group, obj.get('kind')) in plurals:
                names.add('%s.%s' % (plurals[(group, obj['kind'])], group))
        if not names or not self.cluster.find_resource(kind='CustomResourceDefinition', group='apiextensions.k8s.io', version='v1'):
            return []

        def fetch(name):
            try:
                crd = self.cluster.get('/apis/apiextensions.k8s.io/v1/customresourcedefinitions/%s' % name)
            except ApiError as exc:
                if exc.status in (403, 404):
                    return None  # an aggregated API, not a CRD; or not ours to read
                raise
            crd.setdefault('apiVersion', 'apiextensions.k8s.io/v1')
            crd.setdefault('kind', 'CustomResourceDefinition')
            return crd

        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            return [crd for crd in pool.map(fetch, sorted(names)) if crd is not None]

    def _cluster_facts(self, discovery):
        version = self.cluster.server_version
        group_versions = served_group_versions(discovery)
        return {'name': self.cluster.name, 'host': self.cluster.host, 'git_version': version.get('gitVersion'),
                'platform': detect_platform(version, group_versions, []), 'api_versions': group_versions}


def _why(edge, selection):
    if edge is None:
        return 'selected by labels %s' % selection.label_selector if selection.label_selector else 'selected namespace'
    source, reason = edge
    return '%s %s it' % (describe_key(source), reason)


def _order(key):
    return (key[2] != '', key[2], key[0], key[1], key[3])


def _unique(items):
    seen, result = set(), []
    for item in items:
        marker = json.dumps(item, sort_keys=True)
        if marker not in seen:
            seen.add(marker)
            result.append(item)
    return result


def document_bytes(document):
    """The capture as stored in a restore point (compact JSON; the pool compresses it)."""
    return json.dumps(document, separators=(',', ':'), sort_keys=True).encode('utf-8')


def load_document(data):
    document = json.loads(data)
    if not isinstance(document, dict) or document.get('format') != FORMAT:
        raise ValueError('not a Ferry capture document (format %r, expected %r)' % (document.get('format') if isinstance(document, dict) else None, FORMAT))
    return document
