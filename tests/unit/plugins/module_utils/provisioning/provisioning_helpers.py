"""Helpers of the provisioning tests: options validated as Ansible validates them, and a scripted clock."""

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.ferry.kube.plugins.module_utils.provisioning.command import command_options
from ansible_collections.ferry.kube.plugins.module_utils.provisioning.eks import eks_options

AWS = {'access_key': 'AKIAFERRYPROVISION', 'secret_key': 'ferry-provisioning-secret', 'region': 'eu-west-1'}
CLUSTER_ROLE = 'arn:aws:iam::123456789012:role/ferry-eks-cluster'
NODE_ROLE = 'arn:aws:iam::123456789012:role/ferry-eks-node'


def validated(option, spec, value):
    """``value`` as the module gets it: defaults applied, types checked (Ansible's own validator)."""
    result = ArgumentSpecValidator({option: dict(type='dict', options=spec, apply_defaults=True)}).validate({option: value})
    assert not result.error_messages, result.error_messages
    return result.validated_parameters[option]


def eks_params(moto=None, **values):
    params = dict(AWS, **values)
    if moto is not None:
        params.update(endpoint_url=moto.url, sts_endpoint_url=moto.url)
    return validated('eks', eks_options(), params)


def command_params(**values):
    return validated('command', command_options(), values)


class FakeTime:
    """A clock that moves only when the code under test sleeps."""

    def __init__(self):
        self.now = 1000.0
        self.sleeps = []

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds
