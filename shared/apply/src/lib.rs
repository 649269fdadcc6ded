//! Applying manifests, one engine for every controller and the CLI (as Flux keeps it in
//! `fluxcd/pkg/ssa`):
//!
//! - [`object`]: object ids as Flux's inventory writes them, and the comparable view of a manifest;
//! - [`discovery`]: API resources by group/version/kind, cached, and CRDs waited for;
//! - [`ssa`]: server-side apply in Flux's stages, each stage validated by a dry-run first,
//!   with [`takeover`] of kubectl's field managers and [`ignore`] rules for drift;
//! - [`observed`]: what was last seen of each object, so a no-op apply needs one request;
//! - [`owner`]: the ownership labels and the per-object steering annotations;
//! - [`inventory`]: the inventory and pruning of what left it;
//! - [`health`] and [`wait`]: kstatus and CEL health, and waiting for it.
//!
//! Nothing else in the workspace knows how to apply.

pub mod dependency;
pub mod discovery;
pub mod health;
pub mod ignore;
pub mod inventory;
pub mod object;
pub mod observed;
pub mod owner;
pub mod ssa;
pub mod takeover;
pub mod wait;

pub use discovery::{Discovery, api};
pub use health::{CustomHealth, Health};
pub use ignore::DriftIgnore;
pub use inventory::{Pruned, inventory, prune, stale_entries};
pub use object::{ObjectId, comparable, field_text, group_version};
pub use observed::Observed;
pub use owner::Owner;
pub use ssa::{
    Action, Applied, AppliedObject, ApplyError, ApplyFailure, ApplyOptions, DEFAULT_CONCURRENCY, Desired,
    GroupKind, Preview, apply_staged, preview, stage_of,
};
pub use wait::{HealthWait, Unhealthy};
