"""Local images: pods with these images really run, as host processes (the node runtime).

An image maps to ``{"entrypoint": [...], "cmd": [...], "workdir": ..., "env": {...}, "paths": [...]}``
(``paths``: host directories that belong to the image, kept visible under the pod's volumes); a
container's ``command`` replaces the entrypoint and ``args`` the cmd, as Kubernetes does. A name
ending in ``:*`` matches any tag. Every other image is simulated (Running, no process).
"""

import os
import sys

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def default_paths():
    """This checkout and the interpreter's environment: local images run programs from them."""
    return sorted({REPO, sys.prefix})


def default_images():
    python = sys.executable
    paths = default_paths()
    return {
        # Ferry's agent, from this checkout (its Dockerfile builds the same program into an image).
        'ferry/agent:*': {'entrypoint': [python, os.path.join(REPO, 'agent', 'ferry_agent.py')], 'cmd': [],
                          'env': {'PYTHONPATH': os.path.join(REPO, '.build', 'collections')}, 'paths': paths},
        # The demo's sample app: a static web server and a Python "tools" image that runs a script.
        'ferry-demo/web:*': {'entrypoint': [python, '-m', 'http.server'], 'cmd': ['8080'], 'paths': paths},
        'ferry-demo/tools:*': {'entrypoint': [python, '-c'], 'cmd': ['print("no script given")'], 'paths': paths},
    }


def load_images(path):
    with open(path, 'r', encoding='utf-8') as handle:
        extra = yaml.safe_load(handle) or {}
    images = default_images()
    images.update(extra)
    return images


def resolve(images, image):
    """The local image spec for ``image``, or None when it is simulated."""
    if image in images:
        return images[image]
    name = image.rsplit(':', 1)[0] if ':' in image.rsplit('/', 1)[-1] else image
    return images.get(name + ':*')
