# Versions of everything the test environment builds or runs, pinned once. Sourced by hack/*.sh.
# The Kubernetes version must match the k8s-openapi feature in Cargo.toml (v1_36).
K8S_VERSION=${K8S_VERSION:-1.36.3}
ETCD_VERSION=${ETCD_VERSION:-3.6.8}
KWOK_VERSION=${KWOK_VERSION:-0.8.0}
HELM_VERSION=${HELM_VERSION:-4.3.1}
FLUX_VERSION=${FLUX_VERSION:-2.9.4}
# The controllers flux2 v2.9.4 pins (manifests/bases), for the side-by-side benchmarks (issue 7).
FLUX_SOURCE_CONTROLLER_VERSION=${FLUX_SOURCE_CONTROLLER_VERSION:-1.9.4}
FLUX_KUSTOMIZE_CONTROLLER_VERSION=${FLUX_KUSTOMIZE_CONTROLLER_VERSION:-1.9.4}
# What Flux's source-controller is built with instead of the github.com/fluxcd/pkg/artifact it
# asks for (v0.18.2 is not served by the module proxy here; issue 20).
FLUX_PKG_ARTIFACT_PIN=${FLUX_PKG_ARTIFACT_PIN:-0.18.0}
# The other controllers flux2 v2.9.4 pins, for the idle-memory comparison (hack/bench/idle-rss.sh).
FLUX_HELM_CONTROLLER_VERSION=${FLUX_HELM_CONTROLLER_VERSION:-1.6.3}
FLUX_NOTIFICATION_CONTROLLER_VERSION=${FLUX_NOTIFICATION_CONTROLLER_VERSION:-1.9.3}
FLUX_IMAGE_REFLECTOR_CONTROLLER_VERSION=${FLUX_IMAGE_REFLECTOR_CONTROLLER_VERSION:-1.2.4}
FLUX_IMAGE_AUTOMATION_CONTROLLER_VERSION=${FLUX_IMAGE_AUTOMATION_CONTROLLER_VERSION:-1.2.4}
# helm-controller v1.6.3 replaces helm.sh/helm/v4 by Flux's fork v4.2.4-flux.1, which the module
# proxy here does not serve; upstream Helm v4.2.4 carries the fix the fork was for (Flux's
# helm-controller v1.6.4 went back to it), so it is built with upstream v4.2.4.
FLUX_HELM_PIN=${FLUX_HELM_PIN:-4.2.4}
# sops encrypts the Secrets of the SOPS decryption tests (kustomize-controller).
SOPS_VERSION=${SOPS_VERSION:-3.13.3}
# cosign signs the artifacts of the OCIRepository verification tests (v2: signatures as `.sig` tags).
COSIGN_VERSION=${COSIGN_VERSION:-2.6.5}
# versitygw: the S3 server of the Bucket tests (posix backend over a directory; HTTP and TLS).
VERSITYGW_VERSION=${VERSITYGW_VERSION:-1.8.0}
# Google Cloud Storage emulator for Bucket sources with provider gcp.
FAKE_GCS_VERSION=${FAKE_GCS_VERSION:-1.56.1}
# Azure Blob Storage emulator (npm) for Bucket sources with provider azure.
AZURITE_VERSION=${AZURITE_VERSION:-3.37.0}
# The nats provider's server (notification-controller tests).
NATS_SERVER_VERSION=${NATS_SERVER_VERSION:-2.15.3}
# Go-built binaries live outside the repository, one directory per version.
TESTBINS_CACHE=${TESTBINS_CACHE:-$HOME/.cache/driftless-testbins}
TESTBINS_WORK=${TESTBINS_WORK:-$HOME/.cache/driftless-testbins-src}
