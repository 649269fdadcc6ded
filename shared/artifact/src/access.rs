//! How a kind's spec says to reach a registry (ImageRepository, OCIRepository): registry
//! credentials from the docker configs of `secretRef` and of the image pull secrets of
//! `serviceAccountName` (the first with an entry for the registry), `certSecretRef` (`ca.crt`,
//! `tls.crt` + `tls.key`), `proxySecretRef` and `insecure`.

use crate::{oci, registry::Puller};
use driftless_runtime::secrets::{self, Problem};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::{Api, Client};
use oci_client::secrets::RegistryAuth;

/// The registry settings of one object, in its namespace.
#[derive(Clone, Copy, Debug, Default)]
pub struct RegistryAccess<'a> {
    /// Namespace of the object and of the Secrets it names.
    pub namespace: &'a str,
    /// docker-registry Secret (`.dockerconfigjson`).
    pub secret_ref: Option<&'a str>,
    /// ServiceAccount whose image pull secrets are tried after `secret_ref`.
    pub service_account_name: Option<&'a str>,
    /// Secret with `ca.crt` and/or `tls.crt` + `tls.key`.
    pub cert_secret_ref: Option<&'a str>,
    /// Secret with the proxy `address` (+ `username`, `password`).
    pub proxy_secret_ref: Option<&'a str>,
    /// Plain HTTP.
    pub insecure: bool,
}

impl RegistryAccess<'_> {
    /// A pull client for `repository` (`host/path`); the error names the Secret and what is
    /// wrong, classed as every controller classes it.
    pub async fn puller(&self, client: &Client, repository: &str) -> Result<Puller, Problem> {
        let ns = self.namespace;
        let registry = repository.split('/').next().unwrap_or_default();
        let mut auth = RegistryAuth::Anonymous;
        let mut tls = secrets::TlsMaterial::default();
        let mut proxy = None;
        let mut pull_secrets: Vec<String> = self.secret_ref.iter().map(|r| r.to_string()).collect();
        if let Some(sa) = self.service_account_name.filter(|s| !s.is_empty()) {
            let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
            let account = accounts
                .get(sa)
                .await
                .map_err(|e| Problem::of_read(&format!("service account '{ns}/{sa}'"), e))?;
            pull_secrets.extend(account.image_pull_secrets.into_iter().flatten().map(|r| r.name));
        }
        for name in pull_secrets {
            let data = secrets::secret_data(client, ns, &name).await?;
            let config = data.get(".dockerconfigjson").ok_or_else(|| {
                Problem::Invalid(format!("secret '{ns}/{name}' has no '.dockerconfigjson' key"))
            })?;
            auth = oci::auth_from_docker_config(config, registry)
                .map_err(|e| Problem::Invalid(format!("secret '{ns}/{name}': {e}")))?;
            if auth != RegistryAuth::Anonymous {
                break;
            }
        }
        if let Some(name) = self.cert_secret_ref {
            tls = secrets::tls_from_secret(client, ns, name).await?;
            if tls.ca.is_none() && tls.identity.is_none() {
                return Err(Problem::Invalid(format!(
                    "secret '{ns}/{name}' has neither 'ca.crt' nor 'tls.crt' and 'tls.key'"
                )));
            }
        }
        if let Some(name) = self.proxy_secret_ref {
            proxy = Some(secrets::proxy_from_secret_ref(client, ns, name).await?);
        }
        let connection = oci::Connection {
            insecure: self.insecure,
            ca: tls.ca.as_deref(),
            proxy: proxy.as_deref(),
        };
        Puller::new(&connection, tls.identity.as_deref(), repository, auth).map_err(Problem::Invalid)
    }
}
