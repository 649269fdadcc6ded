//! The controller runtime shared by every Driftless controller, written once.
//!
//! Newcomers start with [`reconcile`]: a kind implements [`reconcile::Reconciler`] (its ordered
//! steps and its cleanup) and [`reconcile::KindController`] runs it with Flux's semantics —
//! finalizer, deletion, suspend, progress, and one `finish` that maps the outcome to
//! [`conditions`], status ([`status`]), [`events`], [`metrics`] and the requeue. [`runtime`]
//! wires a binary: flags ([`args`]), logging ([`telemetry`]), probes and metrics, leader
//! election ([`leader`]) and graceful shutdown.

pub mod acl;
pub mod apiserver;
pub mod args;
pub mod azure;
pub mod conditions;
pub mod duration;
pub mod events;
pub mod features;
pub mod github_app;
pub mod google;
pub mod kubeconfig;
pub mod leader;
pub mod metrics;
pub mod minted;
pub mod object;
pub mod reconcile;
pub mod runtime;
pub mod secrets;
pub mod sources;
pub mod status;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod triggers;
pub mod work;
pub mod workload_identity;
