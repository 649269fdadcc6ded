//! Git for the controllers that read or write repositories (source-controller's GitRepository,
//! image-automation-controller's ImageUpdateAutomation): credentials from a Flux Git Secret
//! ([`auth`]), ref resolution and Flux's revision strings ([`reference`]), and the libgit2
//! operations ([`transport`]: list, fetch and check out, commit, push) with commits signed by
//! [`sign`] keys. Remotes behind a proxy or
//! needing a TLS client certificate go through a reqwest transport ([`http`]).
//!
//! Everything here blocks: callers run it off the async runtime.

pub mod auth;
pub mod http;
pub mod reference;
pub mod sign;
pub mod transport;
