"""The footprint's ClusterRole: each rule has a reason, and docs/footprint.md lists exactly these rules."""

import os

from ansible_collections.ferry.kube.plugins.module_utils.kube import footprint

DOC = os.path.join(os.path.dirname(__file__), '..', '..', '..', '..', '..', 'docs', 'footprint.md')


def test_every_rule_has_a_reason_and_no_wildcard_write():
    for groups, resources, verbs, why in footprint.RULES:
        assert len(why) > 20
        if '*' in resources and '*' in groups:
            assert set(verbs) <= {'get', 'list', 'watch'}  # reading everything is needed for discovery; writing everything is not


def test_docs_list_the_same_rules():
    with open(DOC, encoding='utf-8') as handle:
        rows = [line for line in handle if line.startswith('| `')]
    assert len(rows) == len(footprint.RULES)
    for row, (_groups, resources, verbs, why) in zip(rows, footprint.RULES):
        assert ', '.join(resources) in row and ', '.join(verbs) in row and why in row


def test_objects_are_labelled_for_cleanup():
    for obj in footprint.objects(agent_image='ferry/agent:1'):
        assert obj['metadata']['labels']['app.kubernetes.io/managed-by'] == 'ferry'
