//! The command tree, following the flux CLI's names and flags.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::cluster::{GlobalArgs, parse_duration};
use crate::kinds::{self, KindInfo};
use crate::manifests::InstallOptions;

#[derive(Parser)]
#[command(
    name = "driftless",
    version,
    about = "Driftless: a Flux-compatible GitOps toolkit",
    long_about = "Driftless: a Flux-compatible GitOps toolkit.\n\nCommands, flags and output follow the flux CLI; the controllers serve Flux's APIs."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Print the client version and the versions of the installed components.
    Version {
        /// Only the client version.
        #[arg(long)]
        client: bool,
    },
    /// Install the toolkit components (server-side apply) and wait for them.
    Install(InstallArgs),
    /// Remove the toolkit: finalizers first, so no managed workload is deleted.
    Uninstall(UninstallArgs),
    /// Check the prerequisites (`--pre`) or the installation.
    Check {
        /// Only the prerequisites.
        #[arg(long)]
        pre: bool,
    },
    /// Deploy the toolkit the GitOps way: commit its manifests to a repository and sync from it.
    Bootstrap {
        #[command(subcommand)]
        what: BootstrapCommand,
    },
    /// Show toolkit objects and their status.
    Get {
        /// List across all namespaces.
        #[arg(short = 'A', long, global = true)]
        all_namespaces: bool,
        /// Only objects whose conditions match, e.g. `ready=false`.
        #[arg(long, global = true)]
        status_selector: Option<String>,
        /// Skip the header row.
        #[arg(long, global = true)]
        no_header: bool,
        #[command(subcommand)]
        target: Target,
    },
    /// Ask for an immediate reconciliation and wait for it.
    Reconcile {
        /// Reconcile the source first.
        #[arg(long, global = true)]
        with_source: bool,
        /// HelmReleases: run a one-off install or upgrade, even in sync or out of retries.
        #[arg(long, global = true)]
        force: bool,
        /// HelmReleases: clear the failure counters so retries start over.
        #[arg(long, global = true)]
        reset: bool,
        #[command(subcommand)]
        target: Target,
    },
    /// Suspend reconciliation.
    Suspend {
        #[command(subcommand)]
        target: Target,
    },
    /// Resume reconciliation and wait for it.
    Resume {
        /// Wait for the reconciliation after resuming.
        #[arg(long, global = true, action = clap::ArgAction::Set, default_value_t = true, num_args = 0..=1, default_missing_value = "true")]
        wait: bool,
        #[command(subcommand)]
        target: Target,
    },
    /// Create or update toolkit objects and Secrets.
    Create {
        #[command(subcommand)]
        what: CreateCommand,
    },
    /// Print objects as clean YAML, ready to commit.
    Export {
        #[command(subcommand)]
        target: Target,
    },
    /// Delete toolkit objects.
    Delete {
        /// Do not ask for confirmation.
        #[arg(short, long, global = true)]
        silent: bool,
        #[command(subcommand)]
        target: Target,
    },
    /// Compare a local build of a Kustomization with the cluster (server-side dry-run).
    Diff {
        #[command(subcommand)]
        what: BuildCommand,
    },
    /// Build a Kustomization from local files, as the controller would.
    Build {
        #[command(subcommand)]
        what: BuildCommand,
    },
    /// Print the objects a Kustomization manages, as a tree.
    Tree {
        #[command(subcommand)]
        what: TreeCommand,
    },
    /// Events of toolkit objects.
    Events {
        /// Only the events of this object, `Kind/name`.
        #[arg(long = "for")]
        for_object: Option<String>,
        /// Across all namespaces.
        #[arg(short = 'A', long)]
        all_namespaces: bool,
    },
    /// Push artifacts to an OCI registry.
    Push {
        #[command(subcommand)]
        what: PushCommand,
    },
    /// Kustomize, built in (no kustomize binary needed).
    Kustomize {
        #[command(subcommand)]
        what: KustomizeCommand,
    },
    /// Shell completion scripts.
    Completion {
        /// bash, zsh, fish, powershell or elvish.
        shell: clap_complete::Shell,
    },
}

#[derive(Args)]
pub struct InstallArgs {
    #[command(flatten)]
    pub options: InstallOptions,
    /// Print the manifests instead of applying them.
    #[arg(long)]
    pub export: bool,
}

#[derive(Args)]
pub struct UninstallArgs {
    /// Keep the namespace.
    #[arg(long)]
    pub keep_namespace: bool,
    /// Do not ask for confirmation.
    #[arg(short, long)]
    pub silent: bool,
}

#[derive(Subcommand)]
pub enum BootstrapCommand {
    /// Bootstrap against any Git server (http(s) or ssh).
    Git(BootstrapGit),
}

#[derive(Args, Clone)]
pub struct BootstrapGit {
    /// Repository URL: http(s)://, ssh:// or user@host:path.
    #[arg(long)]
    pub url: String,
    /// Branch to commit to and sync from.
    #[arg(long, default_value = "main")]
    pub branch: String,
    /// Path in the repository of this cluster's manifests.
    #[arg(long, default_value = "")]
    pub path: String,
    /// Sync interval of the GitRepository.
    #[arg(long, default_value = "1m", value_parser = parse_duration)]
    pub interval: Duration,
    /// Basic auth username (http(s)).
    #[arg(short = 'u', long, default_value = "git")]
    pub username: String,
    /// Basic auth password or token (http(s)); also from $GIT_PASSWORD.
    #[arg(short = 'p', long, env = "GIT_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// Private key for SSH; without it a key is generated for the cluster (and the clone uses
    /// the SSH agent).
    #[arg(long)]
    pub private_key_file: Option<PathBuf>,
    /// Passphrase of the private key.
    #[arg(long, env = "GIT_PRIVATE_KEY_PASSWORD", hide_env_values = true)]
    pub password_private_key: Option<String>,
    /// Algorithm of a generated SSH key: ecdsa (P-384) or ed25519.
    #[arg(long, default_value = "ecdsa")]
    pub ssh_key_algorithm: String,
    /// Host (and port) to record in known_hosts, when it differs from the URL's.
    #[arg(long)]
    pub ssh_hostname: Option<String>,
    /// Keep an http:// URL (credentials over plain HTTP).
    #[arg(long)]
    pub allow_insecure_http: bool,
    /// Name of the Secret with the Git credentials.
    #[arg(long, default_value = "flux-system")]
    pub secret_name: String,
    /// Author name of the commits.
    #[arg(long, default_value = "Flux")]
    pub author_name: String,
    /// Author email of the commits.
    #[arg(long, default_value = "flux@users.noreply.github.com")]
    pub author_email: String,
    /// Appended to the commit messages.
    #[arg(long, default_value = "")]
    pub commit_message_appendix: String,
    /// Do not ask for confirmation (deploy key).
    #[arg(short, long)]
    pub silent: bool,
    #[command(flatten)]
    pub options: InstallOptions,
}

/// A kind (and optionally one name) after a verb: `source git podinfo`, `kustomization`.
#[derive(Subcommand, Clone, Debug)]
pub enum Target {
    /// Sources: git, oci, helm, chart, bucket, external (all: every kind, `get` only).
    #[command(visible_alias = "sources")]
    Source {
        #[command(subcommand)]
        kind: SourceKind,
    },
    /// Kustomizations.
    #[command(visible_aliases = ["kustomizations", "ks"])]
    Kustomization(Named),
    /// HelmReleases.
    #[command(visible_aliases = ["helmreleases", "hr"])]
    Helmrelease(Named),
    /// Alerts.
    #[command(visible_alias = "alerts")]
    Alert(Named),
    /// Alert providers.
    #[command(visible_alias = "alert-providers")]
    AlertProvider(Named),
    /// Webhook receivers.
    #[command(visible_alias = "receivers")]
    Receiver(Named),
    /// Image automation: repository, policy, update (all).
    #[command(visible_alias = "images")]
    Image {
        #[command(subcommand)]
        kind: ImageKind,
    },
    /// source-watcher's ArtifactGenerators: `artifact generator` (Flux's `flux get artifact
    /// generators`).
    #[command(visible_alias = "artifacts")]
    Artifact {
        #[command(subcommand)]
        kind: ArtifactKind,
    },
    /// Every kind (`get all`).
    All(Named),
}

#[derive(Subcommand, Clone, Debug)]
pub enum ArtifactKind {
    #[command(visible_alias = "generators")]
    Generator(Named),
}

#[derive(Subcommand, Clone, Debug)]
pub enum SourceKind {
    Git(Named),
    Oci(Named),
    Helm(Named),
    Chart(Named),
    Bucket(Named),
    External(Named),
    All(Named),
}

#[derive(Subcommand, Clone, Debug)]
pub enum ImageKind {
    Repository(Named),
    Policy(Named),
    Update(Named),
    All(Named),
}

#[derive(Args, Clone, Debug, Default)]
pub struct Named {
    /// Object name (all objects of the kind when omitted, where the command allows it).
    pub name: Option<String>,
    /// Every object of the kind in the namespace.
    #[arg(long)]
    pub all: bool,
}

impl Target {
    /// The kinds this target names, and the name arguments.
    pub fn resolve(&self) -> (Vec<&'static KindInfo>, &Named) {
        match self {
            Target::Source { kind } => match kind {
                SourceKind::Git(n) => (vec![&kinds::GIT_REPOSITORY], n),
                SourceKind::Oci(n) => (vec![&kinds::OCI_REPOSITORY], n),
                SourceKind::Helm(n) => (vec![&kinds::HELM_REPOSITORY], n),
                SourceKind::Chart(n) => (vec![&kinds::HELM_CHART], n),
                SourceKind::Bucket(n) => (vec![&kinds::BUCKET], n),
                SourceKind::External(n) => (vec![&kinds::EXTERNAL_ARTIFACT], n),
                SourceKind::All(n) => (kinds::SOURCES.to_vec(), n),
            },
            Target::Kustomization(n) => (vec![&kinds::KUSTOMIZATION], n),
            Target::Helmrelease(n) => (vec![&kinds::HELM_RELEASE], n),
            Target::Alert(n) => (vec![&kinds::ALERT], n),
            Target::AlertProvider(n) => (vec![&kinds::PROVIDER], n),
            Target::Receiver(n) => (vec![&kinds::RECEIVER], n),
            Target::Image { kind } => match kind {
                ImageKind::Repository(n) => (vec![&kinds::IMAGE_REPOSITORY], n),
                ImageKind::Policy(n) => (vec![&kinds::IMAGE_POLICY], n),
                ImageKind::Update(n) => (vec![&kinds::IMAGE_UPDATE], n),
                ImageKind::All(n) => (kinds::IMAGES.to_vec(), n),
            },
            Target::Artifact {
                kind: ArtifactKind::Generator(n),
            } => (vec![&kinds::ARTIFACT_GENERATOR], n),
            Target::All(n) => (kinds::ALL.to_vec(), n),
        }
    }

    /// Exactly one kind, for commands that act on one.
    pub fn single(&self) -> anyhow::Result<(&'static KindInfo, &Named)> {
        match self.resolve() {
            (kinds, named) if kinds.len() == 1 => Ok((kinds[0], named)),
            _ => anyhow::bail!("name one kind, e.g. `source git` or `kustomization`"),
        }
    }
}

#[derive(Subcommand)]
pub enum CreateCommand {
    /// Sources.
    Source {
        #[command(subcommand)]
        what: CreateSource,
    },
    /// A Kustomization.
    Kustomization(CreateKustomization),
    /// A HelmRelease.
    #[command(visible_alias = "hr")]
    Helmrelease(CreateHelmRelease),
    /// A notification Provider (where Alerts send events).
    AlertProvider(CreateAlertProvider),
    /// An Alert (which events go to a Provider).
    Alert(CreateAlert),
    /// A Receiver (a webhook that makes resources reconcile).
    Receiver(CreateReceiver),
    /// Image automation: ImageRepository, ImagePolicy, ImageUpdateAutomation.
    Image {
        #[command(subcommand)]
        what: CreateImage,
    },
    /// Secrets.
    Secret {
        #[command(subcommand)]
        what: CreateSecret,
    },
}

#[derive(Args, Clone)]
pub struct CreateCommon {
    /// Object name.
    pub name: String,
    /// Reconciliation interval.
    #[arg(long, default_value = "1m", value_parser = parse_duration)]
    pub interval: Duration,
    /// Print the YAML instead of applying it.
    #[arg(long)]
    pub export: bool,
    /// Labels, `key=value` (repeatable or comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub label: Vec<String>,
}

#[derive(Subcommand)]
pub enum CreateSource {
    /// A GitRepository.
    Git(CreateSourceGit),
    /// An OCIRepository.
    Oci(CreateSourceOci),
    /// A HelmRepository (an HTTP(S) index, or `oci://` for an OCI repository).
    Helm(CreateSourceHelm),
    /// A HelmChart from a HelmRepository, GitRepository or Bucket.
    Chart(CreateSourceChart),
    /// A Bucket (S3-compatible, GCS or Azure Blob).
    Bucket(CreateSourceBucket),
}

#[derive(Args)]
pub struct CreateSourceBucket {
    #[command(flatten)]
    pub common: CreateCommon,
    /// Name of the bucket.
    #[arg(long)]
    pub bucket_name: String,
    /// Endpoint, `host[:port]`.
    #[arg(long)]
    pub endpoint: String,
    /// generic (any S3-compatible server), aws, gcp or azure.
    #[arg(long, default_value = "generic", value_parser = ["generic", "aws", "gcp", "azure"])]
    pub provider: String,
    /// Region of the bucket.
    #[arg(long)]
    pub region: Option<String>,
    /// Only objects under this key prefix.
    #[arg(long)]
    pub prefix: Option<String>,
    /// Plain HTTP to the endpoint.
    #[arg(long)]
    pub insecure: bool,
    /// Secret with `accesskey` and `secretkey`.
    #[arg(long)]
    pub secret_ref: Option<String>,
    /// Access key: a Secret named after the Bucket is made with it and --secret-key.
    #[arg(long)]
    pub access_key: Option<String>,
    /// Secret key (with --access-key).
    #[arg(long)]
    pub secret_key: Option<String>,
    /// Paths to leave out, comma-separated, gitignore syntax.
    #[arg(long, value_delimiter = ',')]
    pub ignore_paths: Vec<String>,
}

#[derive(Args)]
pub struct CreateSourceHelm {
    #[command(flatten)]
    pub common: CreateCommon,
    /// Repository URL: http(s):// (the index.yaml is under it) or oci:// (type oci).
    #[arg(long)]
    pub url: String,
    /// Secret with `username` and `password` for basic auth.
    #[arg(long)]
    pub secret_ref: Option<String>,
    /// Secret with TLS material: `ca.crt`, and/or `tls.crt` + `tls.key`.
    #[arg(long)]
    pub cert_ref: Option<String>,
    /// Send the credentials to hosts other than the repository's (chart URLs elsewhere).
    #[arg(long)]
    pub pass_credentials: bool,
}

#[derive(Args)]
pub struct CreateSourceChart {
    #[command(flatten)]
    pub common: CreateCommon,
    /// Chart name in the repository, or its path in a Git or Bucket source.
    #[arg(long)]
    pub chart: String,
    /// Version or semver range (default: the newest).
    #[arg(long)]
    pub chart_version: Option<String>,
    /// Source, `HelmRepository/<name>`, `GitRepository/<name>` or `Bucket/<name>`.
    #[arg(long)]
    pub source: String,
    /// ChartVersion (default) or Revision.
    #[arg(long)]
    pub reconcile_strategy: Option<String>,
    /// Values files in the chart (or Git/Bucket source) merged in order into the packaged
    /// values (repeatable).
    #[arg(long, value_delimiter = ',')]
    pub values_files: Vec<String>,
    /// Secret with cosign public keys (`*.pub`) the chart's signature must verify with
    /// (OCI HelmRepositories).
    #[arg(long)]
    pub verify_secret_ref: Option<String>,
}

#[derive(Subcommand)]
pub enum CreateImage {
    /// An ImageRepository (tags of an image are scanned).
    Repository(CreateImageRepository),
    /// An ImagePolicy (how the latest tag is chosen).
    Policy(CreateImagePolicy),
    /// An ImageUpdateAutomation (latest images committed to Git).
    Update(CreateImageUpdate),
}

#[derive(Args)]
pub struct CreateImageRepository {
    #[command(flatten)]
    pub common: CreateCommon,
    /// The image repository, e.g. `ghcr.io/org/app` (no tag).
    #[arg(long)]
    pub image: String,
    /// docker-registry Secret with the registry credentials.
    #[arg(long)]
    pub secret_ref: Option<String>,
    /// Secret with `ca.crt`, `tls.crt` and `tls.key`.
    #[arg(long)]
    pub cert_secret_ref: Option<String>,
    /// Timeout of a scan (default: the interval).
    #[arg(long)]
    pub scan_timeout: Option<String>,
    /// Plain-HTTP registry.
    #[arg(long)]
    pub insecure: bool,
    /// Regexes of tags to leave out (default `^.*\.sig$`; repeatable).
    #[arg(long, value_delimiter = ',')]
    pub exclusion_list: Vec<String>,
}

#[derive(Args)]
pub struct CreateImagePolicy {
    #[command(flatten)]
    pub common: CreateCommon,
    /// The ImageRepository whose tags are considered (`name` or `namespace/name`).
    #[arg(long)]
    pub image_ref: String,
    /// Semver range; the highest match wins.
    #[arg(long, group = "select")]
    pub select_semver: Option<String>,
    /// Numerical order: `asc` picks the highest, `desc` the lowest.
    #[arg(long, group = "select", value_parser = ["asc", "desc"])]
    pub select_numeric: Option<String>,
    /// Alphabetical order: `asc` picks the last, `desc` the first.
    #[arg(long, group = "select", value_parser = ["asc", "desc"])]
    pub select_alpha: Option<String>,
    /// Regex tags must match.
    #[arg(long)]
    pub filter_regex: Option<String>,
    /// What to order of a matching tag, e.g. `$ts` from a `(?P<ts>…)` group.
    #[arg(long)]
    pub filter_extract: Option<String>,
    /// Reflect the digest of the chosen tag: Never, IfNotPresent or Always.
    #[arg(long, value_parser = ["Never", "IfNotPresent", "Always"])]
    pub reflect_digest: Option<String>,
}

#[derive(Args)]
pub struct CreateImageUpdate {
    #[command(flatten)]
    pub common: CreateCommon,
    /// The GitRepository to update.
    #[arg(long)]
    pub git_repo_ref: String,
    /// Namespace of the GitRepository (default: the automation's).
    #[arg(long)]
    pub git_repo_namespace: Option<String>,
    /// Directory to update, relative to the repository root.
    #[arg(long, default_value = "./")]
    pub git_repo_path: String,
    /// Branch to check out (default: the GitRepository's ref).
    #[arg(long)]
    pub checkout_branch: Option<String>,
    /// Branch to push to (default: the checkout branch).
    #[arg(long)]
    pub push_branch: Option<String>,
    /// Commit author name.
    #[arg(long, default_value = "Flux")]
    pub author_name: String,
    /// Commit author email.
    #[arg(long)]
    pub author_email: String,
    /// Go template of the commit message.
    #[arg(long)]
    pub commit_template: Option<String>,
    /// Secret with the commit signing key (`git.asc`, or `identity` with --signing-key-type ssh).
    #[arg(long)]
    pub signing_key_secret_ref: Option<String>,
    /// Signing key type.
    #[arg(long, value_parser = ["gpg", "ssh"])]
    pub signing_key_type: Option<String>,
}

#[derive(Args)]
pub struct CreateAlertProvider {
    #[command(flatten)]
    pub common: CreateCommon,
    /// Provider type: generic, generic-hmac, slack, … (Flux's types).
    #[arg(long = "type")]
    pub provider_type: String,
    /// Secret with `address`, `token`, `headers`, … (keeps the webhook URL out of the spec).
    #[arg(long)]
    pub secret_ref: Option<String>,
    /// Channel (Slack, …).
    #[arg(long)]
    pub channel: Option<String>,
    /// User name shown by chat providers.
    #[arg(long)]
    pub username: Option<String>,
    /// Address (webhook URL) when no Secret gives it.
    #[arg(long)]
    pub address: Option<String>,
}

#[derive(Args)]
pub struct CreateAlert {
    #[command(flatten)]
    pub common: CreateCommon,
    /// Provider, in the same namespace.
    #[arg(long)]
    pub provider_ref: String,
    /// Event sources, `Kind/name[.namespace]` (`name` may be `*`; repeatable).
    #[arg(long, value_delimiter = ',', required = true)]
    pub event_source: Vec<String>,
    /// `info` (everything) or `error`.
    #[arg(long, default_value = "info", value_parser = ["info", "error"])]
    pub event_severity: String,
}

#[derive(Args)]
pub struct CreateReceiver {
    #[command(flatten)]
    pub common: CreateCommon,
    /// Receiver type: generic, generic-hmac, github, gitlab.
    #[arg(long = "type")]
    pub receiver_type: String,
    /// Events to act on (`push`, `Push Hook`; repeatable).
    #[arg(long, value_delimiter = ',')]
    pub event: Vec<String>,
    /// Resources to reconcile, `Kind/name[.namespace]` (repeatable).
    #[arg(long, value_delimiter = ',', required = true)]
    pub resource: Vec<String>,
    /// Secret with the `token` the webhook is signed with.
    #[arg(long)]
    pub secret_ref: String,
}

#[derive(Args)]
pub struct CreateSourceGit {
    #[command(flatten)]
    pub common: CreateCommon,
    /// Repository URL (http(s):// or ssh://).
    #[arg(long)]
    pub url: String,
    #[arg(long)]
    pub branch: Option<String>,
    #[arg(long)]
    pub tag: Option<String>,
    #[arg(long = "tag-semver")]
    pub semver: Option<String>,
    #[arg(long = "ref-name")]
    pub ref_name: Option<String>,
    #[arg(long)]
    pub commit: Option<String>,
    /// Secret with the credentials.
    #[arg(long)]
    pub secret_ref: Option<String>,
    #[arg(long)]
    pub ignore_paths: Vec<String>,
}

#[derive(Args)]
pub struct CreateSourceOci {
    #[command(flatten)]
    pub common: CreateCommon,
    /// Artifact URL, `oci://<registry>/<repository>`.
    #[arg(long)]
    pub url: String,
    #[arg(long)]
    pub tag: Option<String>,
    #[arg(long = "tag-semver")]
    pub semver: Option<String>,
    #[arg(long)]
    pub digest: Option<String>,
    /// Secret with registry credentials (docker config JSON).
    #[arg(long)]
    pub secret_ref: Option<String>,
    /// Secret with TLS material: `ca.crt`, and/or `tls.crt` + `tls.key` for a client certificate.
    #[arg(long)]
    pub cert_ref: Option<String>,
    /// Plain-HTTP registry.
    #[arg(long)]
    pub insecure: bool,
}

#[derive(Args)]
pub struct CreateKustomization {
    #[command(flatten)]
    pub common: CreateCommon,
    /// Source, `[Kind/]name[.namespace]` (kind GitRepository unless given).
    #[arg(long)]
    pub source: String,
    /// Path in the source.
    #[arg(long, default_value = "./")]
    pub path: String,
    /// Prune objects that leave the source.
    #[arg(long, action = clap::ArgAction::Set, default_value_t = false, num_args = 0..=1, default_missing_value = "true")]
    pub prune: bool,
    /// Wait for every applied object to become ready.
    #[arg(long, action = clap::ArgAction::Set, default_value_t = false, num_args = 0..=1, default_missing_value = "true")]
    pub wait: bool,
    /// Timeout of apply and health checks.
    #[arg(long = "health-check-timeout", value_parser = parse_duration)]
    pub health_check_timeout: Option<Duration>,
    /// Namespace the objects are applied to.
    #[arg(long)]
    pub target_namespace: Option<String>,
    /// Dependencies, `[namespace/]name` (repeatable).
    #[arg(long, value_delimiter = ',')]
    pub depends_on: Vec<String>,
    /// ServiceAccount to impersonate.
    #[arg(long)]
    pub service_account: Option<String>,
}

#[derive(Args)]
pub struct CreateHelmRelease {
    #[command(flatten)]
    pub common: CreateCommon,
    /// Chart source for a chart template, `Kind/name[.namespace]` (HelmRepository,
    /// GitRepository or Bucket).
    #[arg(long)]
    pub source: Option<String>,
    /// Chart name (with --source), or its path in a Git or Bucket source.
    #[arg(long)]
    pub chart: Option<String>,
    /// Chart version or semver range (with --source).
    #[arg(long)]
    pub chart_version: Option<String>,
    /// An existing chart artifact instead of a template, `Kind/name[.namespace]`
    /// (OCIRepository, HelmChart or ExternalArtifact).
    #[arg(long, conflicts_with_all = ["source", "chart", "chart_version"])]
    pub chart_ref: Option<String>,
    /// Release name (default: `[target-namespace-]name`).
    #[arg(long)]
    pub release_name: Option<String>,
    /// Namespace the release is installed into.
    #[arg(long)]
    pub target_namespace: Option<String>,
    /// Create the target namespace on install.
    #[arg(long)]
    pub create_target_namespace: bool,
    /// HelmReleases that must be ready first, `[namespace/]name` (repeatable).
    #[arg(long, value_delimiter = ',')]
    pub depends_on: Vec<String>,
    /// Values files merged in order into `spec.values` (repeatable).
    #[arg(long = "values")]
    pub values: Vec<std::path::PathBuf>,
    /// Values from `Secret/name` or `ConfigMap/name` (key `values.yaml`; repeatable).
    #[arg(long)]
    pub values_from: Vec<String>,
    /// ServiceAccount to impersonate.
    #[arg(long)]
    pub service_account: Option<String>,
    /// CRD policy for install and upgrade: Skip, Create or CreateReplace.
    #[arg(long)]
    pub crds: Option<String>,
}

#[derive(Subcommand)]
pub enum CreateSecret {
    /// A Secret for a GitRepository: basic auth or SSH.
    Git(CreateSecretGit),
    /// A docker config Secret with registry credentials, for an OCIRepository's `secretRef`.
    Oci(CreateSecretOci),
    /// A Secret with a CA and/or a client certificate, for a `certSecretRef`.
    Tls(CreateSecretTls),
}

#[derive(Args)]
pub struct CreateSecretOci {
    /// Secret name.
    pub name: String,
    /// Registry host (`ghcr.io`, `127.0.0.1:5000`), or an oci:// URL on it.
    #[arg(long)]
    pub url: String,
    #[arg(short = 'u', long)]
    pub username: String,
    #[arg(short = 'p', long)]
    pub password: String,
    /// Print the YAML instead of applying it.
    #[arg(long)]
    pub export: bool,
}

#[derive(Args)]
pub struct CreateSecretTls {
    /// Secret name.
    pub name: String,
    /// PEM CA certificate that signed the server's certificate.
    #[arg(long)]
    pub ca_crt_file: Option<PathBuf>,
    /// PEM client certificate.
    #[arg(long)]
    pub tls_crt_file: Option<PathBuf>,
    /// PEM key of the client certificate.
    #[arg(long)]
    pub tls_key_file: Option<PathBuf>,
    /// Print the YAML instead of applying it.
    #[arg(long)]
    pub export: bool,
}

#[derive(Args)]
pub struct CreateSecretGit {
    /// Secret name.
    pub name: String,
    /// Repository URL; an ssh:// URL makes an SSH secret with known_hosts scanned from its host.
    #[arg(long)]
    pub url: String,
    #[arg(short = 'u', long)]
    pub username: Option<String>,
    #[arg(short = 'p', long)]
    pub password: Option<String>,
    #[arg(long)]
    pub bearer_token: Option<String>,
    /// Private key for SSH (generated when omitted).
    #[arg(long)]
    pub private_key_file: Option<PathBuf>,
    /// Algorithm of a generated SSH key: ecdsa (P-384) or ed25519.
    #[arg(long, default_value = "ecdsa")]
    pub ssh_key_algorithm: String,
    /// CA certificate for https.
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// Print the YAML instead of applying it.
    #[arg(long)]
    pub export: bool,
}

#[derive(Subcommand)]
pub enum BuildCommand {
    /// A Kustomization.
    Kustomization(BuildKustomization),
}

#[derive(Args)]
pub struct BuildKustomization {
    /// Name of the Kustomization in the cluster.
    pub name: String,
    /// Local directory to build (the Kustomization's path in your checkout).
    #[arg(long)]
    pub path: PathBuf,
    /// With `build`: do not read the Kustomization from the cluster (no overlay, no
    /// substituteFrom).
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Subcommand)]
pub enum TreeCommand {
    /// The inventory of a Kustomization, nested Kustomizations expanded.
    Kustomization {
        name: String,
        /// Only the toolkit objects.
        #[arg(long)]
        compact: bool,
    },
}

#[derive(Subcommand)]
pub enum KustomizeCommand {
    /// Print the YAML stream `kubectl kustomize DIR` prints.
    Build {
        /// The kustomization directory.
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Which files a kustomization may read, as kubectl's flag: LoadRestrictionsRootOnly
        /// (in or below its own directory) or LoadRestrictionsNone (anywhere).
        #[arg(long, default_value = "LoadRestrictionsRootOnly", value_parser = ["LoadRestrictionsRootOnly", "LoadRestrictionsNone"])]
        load_restrictor: String,
    },
}

#[derive(Subcommand)]
pub enum PushCommand {
    /// Push a directory as a Flux OCI artifact (the layout `flux push artifact` writes).
    Artifact(PushArtifact),
}

#[derive(Args)]
pub struct PushArtifact {
    /// Destination, `oci://<registry>/<repository>:<tag>`.
    pub url: String,
    /// Directory to package.
    #[arg(long)]
    pub path: PathBuf,
    /// Source URL recorded in `org.opencontainers.image.source`.
    #[arg(long)]
    pub source: String,
    /// Source revision recorded in `org.opencontainers.image.revision`, e.g. `main@sha1:<commit>`.
    #[arg(long)]
    pub revision: String,
    /// Registry credentials, `<user>:<password>`.
    #[arg(long)]
    pub creds: Option<String>,
    /// Extra annotations, `key=value` (repeatable).
    #[arg(long = "annotations", short = 'a')]
    pub annotations: Vec<String>,
    /// Use plain HTTP.
    #[arg(long)]
    pub insecure_registry: bool,
}
