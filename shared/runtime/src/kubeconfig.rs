//! Kubeconfigs from `kubeConfig.secretRef` Secrets (Kustomization, HelmRelease), read the way
//! Flux reads them (the Secret's `key`, else `value`, else `value.yaml`), and checked: a
//! tenant's kubeconfig must not make the controller run a command (`exec`, `auth-provider`)
//! unless `--insecure-kubeconfig-exec`, nor skip TLS verification unless
//! `--insecure-kubeconfig-tls`, and never read the controller's own files (token, certificate,
//! key and CA paths): its credentials travel inline.

use k8s_openapi::ByteString;
use kube::config::Kubeconfig;
use std::collections::BTreeMap;

/// What the controller's flags allow a kubeconfig to do (Flux's flags of kustomize- and
/// helm-controller).
#[derive(clap::Args, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KubeconfigPolicy {
    /// Run `exec` and `auth-provider` entries of kubeConfig Secrets (commands in the controller).
    #[arg(long = "insecure-kubeconfig-exec", action = clap::ArgAction::Set, default_value_t = false, num_args = 0..=1, default_missing_value = "true")]
    pub allow_exec: bool,
    /// Honour `insecure-skip-tls-verify` in kubeConfig Secrets.
    #[arg(long = "insecure-kubeconfig-tls", action = clap::ArgAction::Set, default_value_t = false, num_args = 0..=1, default_missing_value = "true")]
    pub allow_insecure_tls: bool,
}

/// The kubeconfig of Secret `name` (its `data`, the spec's `key`): its text and the parsed,
/// checked kubeconfig. The error is the message for a stalled condition.
pub fn from_secret(
    name: &str,
    data: &BTreeMap<String, ByteString>,
    key: Option<&str>,
    policy: KubeconfigPolicy,
) -> Result<(String, Kubeconfig), String> {
    // A key named in the spec must be there, as in Flux; without one, `value` then
    // `value.yaml`.
    let bytes = match key.filter(|k| !k.is_empty()) {
        Some(key) => data
            .get(key)
            .ok_or_else(|| format!("kubeconfig secret '{name}' has no '{key}' key"))?,
        None => ["value", "value.yaml"]
            .iter()
            .find_map(|k| data.get(*k))
            .ok_or_else(|| format!("kubeconfig secret '{name}' has no 'value' or 'value.yaml' key"))?,
    };
    let text = String::from_utf8_lossy(&bytes.0).into_owned();
    let kubeconfig = Kubeconfig::from_yaml(&text).map_err(|e| format!("invalid kubeconfig: {e}"))?;
    let users = || kubeconfig.auth_infos.iter().filter_map(|n| n.auth_info.as_ref());
    let clusters = || kubeconfig.clusters.iter().filter_map(|n| n.cluster.as_ref());
    if !policy.allow_exec && users().any(|a| a.exec.is_some() || a.auth_provider.is_some()) {
        return Err(format!(
            "kubeconfig secret '{name}' uses exec or an auth provider, which runs commands in the controller: \
             refused without --insecure-kubeconfig-exec"
        ));
    }
    if !policy.allow_insecure_tls && clusters().any(|c| c.insecure_skip_tls_verify == Some(true)) {
        return Err(format!(
            "kubeconfig secret '{name}' skips TLS verification: refused without --insecure-kubeconfig-tls"
        ));
    }
    let reads_files = users()
        .any(|a| a.token_file.is_some() || a.client_certificate.is_some() || a.client_key.is_some())
        || clusters().any(|c| c.certificate_authority.is_some());
    if reads_files {
        return Err(format!(
            "kubeconfig secret '{name}' names files (token, certificate, key or CA paths), which the controller does not read: \
             put the credentials inline (token, client-certificate-data, client-key-data, certificate-authority-data)"
        ));
    }
    Ok((text, kubeconfig))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn secret(kubeconfig: &str) -> BTreeMap<String, ByteString> {
        BTreeMap::from([("value".to_string(), ByteString(kubeconfig.as_bytes().to_vec()))])
    }

    const BASE: &str = "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: 'https://127.0.0.1:6443'CLUSTER}\nusers:\n- name: u\n  user: USER\ncontexts:\n- name: x\n  context: {cluster: c, user: u}\ncurrent-context: x\n";

    fn config(cluster: &str, user: &str) -> String {
        BASE.replace("CLUSTER", cluster).replace("USER", user)
    }

    #[test]
    fn exec_insecure_tls_and_files_are_refused_unless_allowed() {
        let strict = KubeconfigPolicy::default();
        let exec = config(
            "",
            "{exec: {apiVersion: client.authentication.k8s.io/v1, command: /bin/touch, args: [/tmp/x]}}",
        );
        let e = from_secret("kc", &secret(&exec), None, strict).unwrap_err();
        assert!(e.contains("--insecure-kubeconfig-exec"), "{e}");
        let allowed = KubeconfigPolicy {
            allow_exec: true,
            ..strict
        };
        assert!(from_secret("kc", &secret(&exec), None, allowed).is_ok());
        let insecure = config(", insecure-skip-tls-verify: true", "{token: t}");
        assert!(
            from_secret("kc", &secret(&insecure), None, strict)
                .unwrap_err()
                .contains("--insecure-kubeconfig-tls")
        );
        let file = config(
            "",
            "{tokenFile: /var/run/secrets/kubernetes.io/serviceaccount/token}",
        );
        assert!(
            from_secret("kc", &secret(&file), None, allowed)
                .unwrap_err()
                .contains("names files")
        );
        assert!(from_secret("kc", &secret(&config("", "{token: t}")), None, strict).is_ok());
        // A key the spec names must be there: no fallback to `value`.
        assert_eq!(
            from_secret(
                "kc",
                &secret(&config("", "{token: t}")),
                Some("remote.yaml"),
                strict
            )
            .unwrap_err(),
            "kubeconfig secret 'kc' has no 'remote.yaml' key"
        );
        assert!(
            from_secret("kc", &BTreeMap::new(), None, strict)
                .unwrap_err()
                .contains("no 'value'")
        );
    }
}
