#!/usr/bin/env bash
# Copies the generated CRDs (crds/*.yaml) into the Helm chart and the kustomize base, which must
# hold byte-identical copies (Helm reads only charts/<chart>/crds/, kustomize only files under its
# own directory). tests/packaging.rs fails when the copies drift.
#   cargo run -- crds ... (regenerate crds/ first, see README), then: scripts/sync-crds.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
shopt -s nullglob
files=("$root"/crds/*.yaml)
if [ "${#files[@]}" -eq 0 ]; then
    echo "sync-crds: no CRDs in $root/crds" >&2
    exit 1
fi
for dir in "$root/charts/azlin-operator/crds" "$root/config/crd"; do
    mkdir -p "$dir"
    find "$dir" -maxdepth 1 -name '*.yaml' ! -name kustomization.yaml -delete
    cp "${files[@]}" "$dir/"
done
{
    echo "# Copies of the generated CRDs in crds/ (kustomize reads no files outside this directory);"
    echo "# a test keeps them byte-identical. Refresh with scripts/sync-crds.sh."
    echo "apiVersion: kustomize.config.k8s.io/v1beta1"
    echo "kind: Kustomization"
    echo "resources:"
    for f in "${files[@]}"; do echo "  - $(basename "$f")"; done
} >"$root/config/crd/kustomization.yaml"
echo "sync-crds: copied ${#files[@]} CRDs into charts/azlin-operator/crds and config/crd" >&2
