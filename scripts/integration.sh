#!/usr/bin/env bash
# ansible-test integration targets against sandbox clusters started here and stopped afterwards.
# Targets get the clusters through tests/integration/integration_config.yml (ansible-test strips
# KUBECONFIG and friends from the environment).
set -euo pipefail
source "$(dirname "$0")/env.sh"
state="$(mktemp -d /tmp/ferry-it-XXXXXX)"
cleanup() {
  .venv/bin/python -m ferry_sandbox down --state-dir "$state" >/dev/null 2>&1 || true
  rm -rf "$state"
}
trap cleanup EXIT
.venv/bin/python -m ferry_sandbox up --detach --state-dir "$state" \
  --cluster source --cluster dr --cluster legacy:version=1.21 --cluster ocp:openshift
.venv/bin/python - "$state" > tests/integration/integration_config.yml <<'PY'
import json, sys, yaml
from ferry_sandbox.cli import load_state
state = load_state(sys.argv[1])
config = {}
for name, cluster in state['clusters'].items():
    config['ferry_%s_kubeconfig' % name] = cluster['kubeconfig']
    config['ferry_%s_restricted_kubeconfig' % name] = cluster['restricted_kubeconfig']
    config['ferry_%s_host' % name] = cluster['api_url']
    config['ferry_%s_ca' % name] = cluster['ca_file']
config['ferry_openshift_kubeconfig'] = config['ferry_ocp_kubeconfig']
config['ferry_repo_root'] = __import__('os').getcwd()  # bin/ferry for targets that prepare data with the CLI
print(yaml.safe_dump(config))
PY
scripts/ansible-test.sh integration --local --python 3.11 "$@"
