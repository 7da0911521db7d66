#!/usr/bin/env bash
# CI entry for packaging: build the PEX files, then lint, build and smoke-test the image,
# then run its Kubernetes export with `podman kube play` (hippo_tasks/packaging/kube.py).
#
#   bash build/ci-docker.sh            # PEX files + image, profile ecom (--no-seed)
#   bash build/ci-docker.sh --profile full
#
# Installs what it needs when missing (Debian: podman, runc, debootstrap; as root, or
# through sudo), and nox in .venv (as .ci/run does). Arguments go to `nox -s docker`.
# Measured on the project's 2-core machines: about 6.5 min cold (debootstrap, pip
# downloads, first image build; apt adds ~10 s), about 2 min warm; docs/packaging.md.
set -euo pipefail
cd "$(dirname "$0")/.."

stamp() { date +%s; }
t0=$(stamp)

missing=()
command -v podman >/dev/null 2>&1 || missing+=(podman)
command -v runc >/dev/null 2>&1 || missing+=(runc)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
if ((${#missing[@]})); then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "== installing ${missing[*]}"
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${missing[@]}"
fi
# podman here needs runc and lower ulimits; keep /etc as it is.
export CONTAINERS_CONF="${CONTAINERS_CONF:-$PWD/build/containers.conf}"

if [ ! -x .venv/bin/nox ]; then
    python3 -m venv .venv
    .venv/bin/pip install -q nox
fi
t1=$(stamp)
.venv/bin/nox -s pex
t2=$(stamp)
.venv/bin/nox -s docker -- "$@"
t3=$(stamp)
# Issue 15: `hd export k8s --layout stack` of this checkout, run by `podman kube play`,
# the same smoke test from outside, the seed job's output on the volume, `kube down`
# (about 10 s; standard library only, so the system python3 runs it).
python3 -m hippo_tasks.packaging.kube
t4=$(stamp)
echo "== ci-docker: setup $((t1 - t0)) s, pex $((t2 - t1)) s, docker $((t3 - t2)) s, kube $((t4 - t3)) s, total $((t4 - t0)) s"
