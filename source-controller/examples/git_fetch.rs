//! Benchmark driver (hack/bench/git-source.sh): runs source-controller's own fetch path once —
//! list the remote, and unless `--poll`, shallow-fetch + check out + archive — and prints the
//! revision and digest. Peak RSS and time are measured from outside.
//!
//! `cargo run --release -p source-controller --example git_fetch -- URL [--poll] [--user U --password P]`

use driftless_git::{
    auth::{GitAuth, GitCredentials},
    reference, transport as git,
};
use source_controller::{
    sourceignore::SourceIgnore,
    storage::{ObjectDir, Storage},
};
use std::time::{Duration, Instant};

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let url = args
        .first()
        .ok_or("usage: git_fetch URL [--poll] [--user U --password P]")?
        .clone();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let poll = args.iter().any(|a| a == "--poll");
    let auth = match (flag("--user"), flag("--password")) {
        (Some(username), Some(password)) => GitAuth::Basic { username, password },
        _ => GitAuth::None,
    };
    let creds = GitCredentials {
        auth,
        ..Default::default()
    };
    let remote = git::Remote {
        url: &url,
        creds: &creds,
        deadline: Instant::now() + Duration::from_secs(600),
    };
    let started = Instant::now();
    let phase = |name: &str| {
        if std::env::var_os("BENCH_PHASES").is_some() {
            eprintln!("{name}: {:?}", started.elapsed());
        }
    };
    let refs = git::list_remote(&remote).map_err(|e| e.0)?;
    phase("list");
    let resolved = reference::resolve(None, &refs).map_err(|e| e.to_string())?;
    if poll {
        println!("{}", resolved.revision);
        return Ok(());
    }
    let work = tempfile::tempdir().map_err(|e| e.to_string())?;
    let checkout = work.path().join("checkout");
    git::checkout(&remote, &resolved, &checkout, &[], false).map_err(|e| e.0)?;
    phase("fetch+checkout");
    let storage = Storage::new(
        work.path().join("storage"),
        "localhost",
        Duration::from_secs(60),
        2,
    )
    .map_err(|e| e.to_string())?;
    let rules = SourceIgnore::new(&checkout, None);
    let include = |p: &str, is_dir: bool| rules.includes(p, is_dir);
    let dir = ObjectDir {
        kind: "gitrepository",
        namespace: "bench",
        name: "bench",
    };
    let a = storage
        .store_dir(&dir, "a.tar.gz", &checkout, &include, &resolved.revision, None)
        .map_err(|e| e.to_string())?;
    println!(
        "{} {} {}",
        resolved.revision,
        a.digest,
        a.size.unwrap_or_default()
    );
    Ok(())
}
