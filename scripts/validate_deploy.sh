#!/usr/bin/env bash
# Validates deploy/ without Docker, a cluster or the zkfarm binary: the
# compose file against the compose specification, the Kubernetes manifests
# against the Kubernetes schemas, the Prometheus and Grafana files, the
# Dockerfiles, and every zkfarm command line and metric name they use against
# the Rust sources (deploy/check.py says what exactly). One line per check;
# exits non-zero when any fails.
#
# Needs python3 (3.11 or later) and pip; the Python packages go into
# .deploy-check/ (git-ignored), pinned, and are reused while the pins hold.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

DIR=.deploy-check
REQUIREMENTS="pyyaml==6.0.3 kubernetes-validate==1.37.0 check-jsonschema==0.39.0"

if ! python3 -m pip --version >/dev/null 2>&1; then
    echo "pip not found; installing python3-pip with apt" >&2
    apt_install python3-pip
fi
if [ "$(cat "$DIR/.requirements" 2>/dev/null)" != "$REQUIREMENTS" ]; then
    echo "installing $REQUIREMENTS into $DIR" >&2
    rm -rf "$DIR"
    # --target installs beside the system's packages, never into them (and
    # so is allowed where the system Python is marked externally managed).
    # shellcheck disable=SC2086
    python3 -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
        --root-user-action=ignore --target "$DIR" $REQUIREMENTS
    echo "$REQUIREMENTS" > "$DIR/.requirements"
fi
export PYTHONPATH="$PWD/$DIR${PYTHONPATH:+:$PYTHONPATH}"
exec python3 deploy/check.py "$@"
