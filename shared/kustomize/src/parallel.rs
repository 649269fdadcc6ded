//! Independent pieces of a build (parsing the files of one kustomization, printing objects)
//! spread over the machine's cores: a large build is mostly YAML in and YAML out.

use std::sync::atomic::{AtomicUsize, Ordering};

/// `items.iter().map(f)`, in order, computed on up to as many threads as there are cores. Items
/// are handed out one at a time, so a few large ones do not leave a thread idle. Below
/// `min_items` (or on one core) it is a plain loop.
pub fn map<T: Sync, R: Send>(items: &[T], min_items: usize, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map(std::num::NonZero::get)
        .unwrap_or(1)
        .min(items.len());
    if threads < 2 || items.len() < min_items {
        return items.iter().map(f).collect();
    }
    let next = AtomicUsize::new(0);
    let mut done: Vec<(usize, R)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(index) else { break };
                        mine.push((index, f(item)));
                    }
                    mine
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| match worker.join() {
                Ok(mine) => mine,
                Err(panic) => std::panic::resume_unwind(panic),
            })
            .collect()
    });
    done.sort_unstable_by_key(|(index, _)| *index);
    done.into_iter().map(|(_, result)| result).collect()
}
