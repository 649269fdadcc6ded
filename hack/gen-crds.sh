#!/usr/bin/env bash
# Regenerates manifests/crds/ from the Rust API types (shared/api).
set -euo pipefail
cd "$(dirname "$0")/.."
UPDATE_CRDS=1 cargo test -q -p driftless-api --test crds generated_crds_are_up_to_date
echo "manifests/crds regenerated"
