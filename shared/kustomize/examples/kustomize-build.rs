//! `kustomize build DIR` with this engine alone: what `hack/kustomize-differential.sh` runs
//! when iterating on the engine (it builds in seconds, where the CLI takes minutes).
#![allow(clippy::print_stdout, clippy::print_stderr)]

fn main() -> std::process::ExitCode {
    let Some(dir) = std::env::args().nth(1) else {
        eprintln!("usage: kustomize-build DIR");
        return std::process::ExitCode::from(2);
    };
    match driftless_kustomize::build_yaml(std::path::Path::new(&dir), None) {
        Ok(out) => {
            print!("{out}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("Error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
