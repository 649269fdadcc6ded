//! source-controller end to end against the testenv's real servers, one module per kind. One
//! test binary for all of them: each binary links the whole controller, and a CI machine's disk
//! and two cores pay for every link.

#![allow(clippy::unwrap_used)]

mod support;

mod bucket;
mod git_repository;
mod helm_chart;
mod helm_repository;
mod oci_repository;
