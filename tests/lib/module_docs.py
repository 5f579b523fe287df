"""Compare a module's DOCUMENTATION with the argument_spec it declares (what ansible-test
validate-modules checks first), without Ansible: the module's ``main`` runs until it builds its
FerryModule, which is replaced to capture the spec."""

import importlib
import os
import sys

import yaml


def doc_spec(options):
    """{name: (type, required, default, choices, elements, aliases, suboptions)} of DOCUMENTATION options."""
    return _shape(options, 'suboptions')


def argument_spec(spec):
    """The same shape from an argument_spec."""
    return _shape(spec, 'options')


def _shape(options, children):
    """What both sides must agree on, per option; ``children`` names the key of nested options."""
    return {name: (option.get('type', 'str'), bool(option.get('required', False)), option.get('default'), option.get('choices'),
                   option.get('elements'), sorted(option.get('aliases') or []),
                   _shape(option[children], children) if children in option else None)
            for name, option in options.items()}


class _Stop(Exception):
    pass


def documented_and_declared(module_path, monkeypatch):
    """(the module, its parsed DOCUMENTATION, the argument_spec its main() declares)."""
    sys.path.insert(0, os.path.dirname(module_path))
    try:
        module = importlib.import_module(os.path.splitext(os.path.basename(module_path))[0])
    finally:
        sys.path.pop(0)
    captured = {}

    def fake_module(argument_spec, **kwargs):
        captured.update(argument_spec)
        raise _Stop()

    monkeypatch.setattr(module, 'FerryModule', fake_module)
    try:
        module.main()
    except _Stop:
        pass
    return module, yaml.safe_load(module.DOCUMENTATION), captured


def secrets_without_no_log(spec, secret_names):
    """Names of options called like a secret that are not no_log, at any depth."""
    missing = []
    for name, arg in spec.items():
        if name in secret_names and arg.get('no_log') is not True:
            missing.append(name)
        if 'options' in arg:
            missing += secrets_without_no_log(arg['options'], secret_names)
    return missing
