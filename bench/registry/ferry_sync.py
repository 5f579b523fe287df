"""The timed Ferry process of bench.py: the engine registry_sync runs (sync.py), without Ansible around it.

    python bench/registry/ferry_sync.py CONFIG.json

Imports only the engine, so the bench's own tooling (cryptography, the registry helpers) is not in Ferry's time.
Prints the summary without the per-image list.
"""

import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), '.build', 'collections'))
from ansible_collections.ferry.kube.plugins.module_utils.registry.sync import sync  # noqa: E402 pylint: disable=wrong-import-position


def main():
    with open(sys.argv[1], encoding='utf-8') as handle:
        params = json.load(handle)
    summary = sync(params)
    images = summary.pop('images')
    summary['from_record'] = sum(1 for image in images if image.get('from_record'))
    sys.stdout.write(json.dumps(summary) + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
