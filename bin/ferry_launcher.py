"""Ferry's command-line entry: runs the collection's engine without Ansible.

The engine lives in plugins/module_utils and imports itself as
``ansible_collections.ferry.kube.plugins.module_utils...``. This launcher makes that
name resolve to this checkout (a symlink under .build/collections), then hands over to the
sub-command's ``main(argv)``.
"""
import importlib
import os
import sys

# sub-command -> module whose main(argv) implements it
COMMANDS = {
    "pool": "ansible_collections.ferry.kube.plugins.module_utils.pool.cli",
}


def collection_root():
    return os.path.dirname(os.path.dirname(os.path.realpath(__file__)))


def ensure_import_path():
    root = collection_root()
    base = os.path.join(root, ".build", "collections")
    link = os.path.join(base, "ansible_collections", "ferry", "kube")
    if not os.path.exists(link):
        os.makedirs(os.path.dirname(link), exist_ok=True)
        try:
            os.symlink(root, link)
        except FileExistsError:
            pass
    if base not in sys.path:
        sys.path.insert(0, base)


def main(argv):
    if len(argv) < 1 or argv[0] not in COMMANDS:
        sys.stderr.write("usage: ferry {%s} ...\n" % ",".join(sorted(COMMANDS)))
        return 2
    ensure_import_path()
    module = importlib.import_module(COMMANDS[argv[0]])
    return module.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
