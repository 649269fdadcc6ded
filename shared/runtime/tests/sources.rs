//! A consumer's controller and its sources, against the testenv's apiserver: an artifact that a
//! consumer's reconcile has read already does not wake it a second time (the race that made a
//! Kustomization apply twice when its source's watch event came after its reconcile had read the
//! source), and a reconcile reads its source from the trigger's watch, not from the apiserver
//! (unless Flux's DirectSourceFetch gate asks for the apiserver).

use std::collections::BTreeSet;
use std::time::Duration;

use driftless_api::kustomize::Kustomization;
use driftless_api::source::GitRepository;
use driftless_runtime::sources::SourceCache;
use driftless_runtime::{testing, triggers};
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, ResourceExt};

const WAIT: Duration = Duration::from_secs(30);

/// Writes the artifact of GitRepository `name` as source-controller would.
async fn publish(repos: &Api<GitRepository>, name: &str, revision: &str) {
    let status = serde_json::json!({"status": {"artifact": {
        "path": format!("gitrepository/{name}/{revision}.tar.gz"),
        "url": format!("http://127.0.0.1:1/{name}.tar.gz"),
        "revision": revision,
        "digest": format!("sha256:{:0>64}", revision.rsplit(':').next().unwrap_or_default()),
        "lastUpdateTime": "2026-12-03T00:00:00Z",
    }}});
    repos
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("artifact written");
}

/// The next two consumers `woken` wakes are both of them, `read` and `unread`, in any order.
async fn assert_both_woken(woken: &mut BoxStream<'static, reflector::ObjectRef<Kustomization>>) {
    let both: BTreeSet<String> = [next(woken).await, next(woken).await].into();
    assert_eq!(both, BTreeSet::from(["read".to_string(), "unread".to_string()]));
}

/// Whether Kustomization `ks` reads GitRepository `repo`.
fn uses(ks: &Kustomization, repo: &GitRepository) -> bool {
    ks.spec.source_ref.name == repo.name_any()
}

/// The name of the next consumer `woken` wakes.
async fn next(woken: &mut BoxStream<'static, reflector::ObjectRef<Kustomization>>) -> String {
    tokio::time::timeout(WAIT, woken.next())
        .await
        .expect("a consumer woken in time")
        .expect("the trigger stream runs")
        .name
}

#[tokio::test]
#[ignore = "needs the testenv control plane (hack/test.sh)"]
async fn an_artifact_a_consumer_has_read_wakes_it_no_second_time_and_sources_come_from_the_watch() {
    let client = testing::client().await;
    testing::install_toolkit_crds(&client).await;
    let ns = testing::namespace(&client, "sources").await;
    let repos: Api<GitRepository> = Api::namespaced(client.clone(), &ns);
    let repo: GitRepository = serde_json::from_value(serde_json::json!({
        "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
        "metadata": {"name": "app"},
        "spec": {"url": "http://127.0.0.1:1/app.git", "interval": "1h"},
    }))
    .expect("a GitRepository");
    repos
        .create(&PostParams::default(), &repo)
        .await
        .expect("created");
    publish(
        &repos,
        "app",
        "main@sha1:1111111111111111111111111111111111111111",
    )
    .await;

    // Two consumers of it: `read` has read the first artifact (its reconcile ran before the
    // watch saw the artifact), `unread` has not.
    let kustomizations: Api<Kustomization> = Api::namespaced(client.clone(), &ns);
    let mut created = Vec::new();
    for name in ["read", "unread"] {
        let ks: Kustomization = serde_json::from_value(serde_json::json!({
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
            "metadata": {"name": name},
            "spec": {"interval": "1h", "prune": false, "sourceRef": {"kind": "GitRepository", "name": "app"}},
        }))
        .expect("a Kustomization");
        created.push(
            kustomizations
                .create(&PostParams::default(), &ks)
                .await
                .expect("created"),
        );
    }
    let (read, unread) = (&created[0], &created[1]);
    let (consumers, writer) = reflector::store();
    let reflect = watcher(kustomizations.clone(), watcher::Config::default())
        .reflect(writer)
        .applied_objects()
        .for_each(|_| futures::future::ready(()));
    let reflect = tokio::spawn(reflect);
    consumers.wait_until_ready().await.expect("consumers listed");

    let cache = SourceCache::default();
    let requeue = Duration::from_secs(30);
    let first = cache
        .artifact_for(read, &client, "GitRepository", &ns, "app", requeue)
        .await
        .expect("the first artifact");
    assert_eq!(
        first.revision,
        "main@sha1:1111111111111111111111111111111111111111"
    );

    let mut woken = triggers::artifact_referrers(&client, Some(&ns), consumers.clone(), &cache, uses);
    // The watch's first sight of the artifact wakes only the consumer that has not read it.
    assert_eq!(next(&mut woken).await, "unread");
    // (Both would come from the same event, one right after the other.)
    assert!(
        woken.next().now_or_never().is_none(),
        "the consumer that read it is not woken"
    );

    // A new artifact wakes both; reading it afterwards needs no right to read the source: the
    // watch that woke them has it.
    publish(
        &repos,
        "app",
        "main@sha1:2222222222222222222222222222222222222222",
    )
    .await;
    assert_both_woken(&mut woken).await;
    let nobody = testing::client_as("driftless-test-nobody").await;
    assert!(
        Api::<GitRepository>::namespaced(nobody.clone(), &ns)
            .get("app")
            .await
            .is_err(),
        "the identity without rights cannot read the source itself"
    );
    let second = cache
        .artifact_for(read, &nobody, "GitRepository", &ns, "app", requeue)
        .await
        .expect("the second artifact, from the watch");
    assert_eq!(
        second.revision,
        "main@sha1:2222222222222222222222222222222222222222"
    );
    cache
        .artifact_for(unread, &nobody, "GitRepository", &ns, "app", requeue)
        .await
        .expect("the second artifact, from the watch");

    // A look at the latest artifact (has a newer one come while applying?) is no read: the
    // next artifact still wakes the consumer.
    publish(
        &repos,
        "app",
        "main@sha1:3333333333333333333333333333333333333333",
    )
    .await;
    assert_both_woken(&mut woken).await;
    let third = cache
        .latest(&nobody, "GitRepository", &ns, "app", requeue)
        .await
        .expect("the third artifact, from the watch");
    assert_eq!(
        third.revision,
        "main@sha1:3333333333333333333333333333333333333333"
    );
    assert!(!cache.was_read(read, Some(&third)));
    assert!(cache.was_read(read, Some(&second)));

    // Flux's DirectSourceFetch gate: sources are read from the apiserver although a watch of
    // them runs, so a read needs the right to read them. The watch has listed (its first list
    // woke the consumers, neither of which read through this cache), and still the identity
    // without rights, which the watched cache above served, is refused.
    let direct = SourceCache::new(true);
    let mut direct_woken = triggers::artifact_referrers(&client, Some(&ns), consumers, &direct, uses);
    assert_both_woken(&mut direct_woken).await;
    assert!(
        direct
            .artifact_for(read, &nobody, "GitRepository", &ns, "app", requeue)
            .await
            .is_err(),
        "a direct fetch asks the apiserver, which refuses the identity without rights"
    );
    let fetched = direct
        .artifact_for(read, &client, "GitRepository", &ns, "app", requeue)
        .await
        .expect("the third artifact, from the apiserver");
    assert_eq!(fetched.revision, third.revision);

    reflect.abort();
    testing::delete_namespace(&client, &ns).await;
}
