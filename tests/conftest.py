"""Shared test set-up: the collection's import name and tests/lib helpers on sys.path."""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIONS = os.path.join(ROOT, '.build', 'collections')
for path in (COLLECTIONS, os.path.join(ROOT, 'tests', 'lib'), os.path.join(ROOT, 'sandbox')):
    if path not in sys.path:
        sys.path.insert(0, path)
