//! Helm charts as files, as Helm lays them out: `Chart.yaml` metadata and dependencies
//! ([`metadata`]), values merged as Helm and Flux merge them ([`values`]), and packaging a chart
//! directory into `<name>-<version>.tgz` with its `.helmignore` ([`package`]).
//!
//! Shared by source-controller (building chart artifacts from Git and Bucket sources),
//! helm-controller (reading them) and the CLI (`create helmrelease --values`); rendering,
//! hooks and releases stay the real `helm`'s.

pub mod metadata;
pub mod package;
pub mod values;
