//! postBuild variable substitution: the variables (`substituteFrom`, `substitute`) and their
//! substitution into every object with Flux's envsubst language ([`crate::envsubst`]).

use std::collections::BTreeMap;

use driftless_api::kustomize::PostBuild;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::{Api, Client};
use serde_json::Value;

use crate::BuildError;

/// postBuild variables: `substituteFrom` in order (later wins), then the inline `substitute`.
pub async fn variables(
    client: &Client,
    namespace: &str,
    post_build: &PostBuild,
) -> Result<BTreeMap<String, String>, BuildError> {
    let mut vars = BTreeMap::new();
    for reference in post_build.substitute_from.iter().flatten() {
        let optional = reference.optional.unwrap_or(false);
        let message = |e: String| {
            format!(
                "substitute from '{}/{}' error: {e}",
                reference.kind, reference.name
            )
        };
        let missing = |e: String| BuildError::Missing(message(e));
        let unavailable = |e: kube::Error| BuildError::Unavailable(message(e.to_string()));
        match reference.kind.as_str() {
            "ConfigMap" => match Api::<ConfigMap>::namespaced(client.clone(), namespace)
                .get_opt(&reference.name)
                .await
            {
                Ok(Some(cm)) => vars.extend(cm.data.unwrap_or_default()),
                Ok(None) if optional => {}
                Ok(None) => return Err(missing("not found".into())),
                Err(e) => return Err(unavailable(e)),
            },
            "Secret" => match Api::<Secret>::namespaced(client.clone(), namespace)
                .get_opt(&reference.name)
                .await
            {
                Ok(Some(secret)) => {
                    for (k, v) in secret.data.unwrap_or_default() {
                        vars.insert(k, String::from_utf8_lossy(&v.0).into_owned());
                    }
                    for (k, v) in secret.string_data.unwrap_or_default() {
                        vars.insert(k, v);
                    }
                }
                Ok(None) if optional => {}
                Ok(None) => return Err(missing("not found".into())),
                Err(e) => return Err(unavailable(e)),
            },
            other => {
                return Err(BuildError::Invalid(message(format!(
                    "unsupported kind '{other}'"
                ))));
            }
        }
    }
    vars.extend(post_build.substitute.clone().unwrap_or_default());
    Ok(vars)
}

/// Substitutes `vars` in every object (with `strict`, Flux's StrictPostBuildSubstitutions gate,
/// on by default, an unset variable without a default is an error), except those that opt out with `kustomize.toolkit.fluxcd.io/substitute:
/// disabled` as an annotation or label. As Flux, nothing is substituted without variables unless
/// `substituteStrategy: Always`.
pub fn substitute_objects(
    objects: &mut [Value],
    vars: &BTreeMap<String, String>,
    post_build: &PostBuild,
    strict: bool,
) -> Result<(), BuildError> {
    if vars.is_empty() && post_build.substitute_strategy.as_deref() != Some("Always") {
        return Ok(());
    }
    for object in objects.iter_mut() {
        let disabled = |field: &str| {
            object
                .pointer(&format!(
                    "/metadata/{field}/kustomize.toolkit.fluxcd.io~1substitute"
                ))
                .and_then(Value::as_str)
                == Some("disabled")
        };
        if disabled("annotations") || disabled("labels") {
            continue;
        }
        let text = driftless_kustomize::yaml::to_yaml(object);
        let substituted = substitute(&text, vars, strict).map_err(|e| {
            let name = object
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            BuildError::Invalid(format!("post build failed for '{name}': {e}"))
        })?;
        if substituted != text {
            // Read back as Flux does (`sigs.k8s.io/yaml`: YAML 1.1, so `yes` is a boolean).
            *object = driftless_kustomize::yaml::parse_documents_yaml11(&substituted)
                .map_err(|e| BuildError::Invalid(format!("post build produced invalid YAML: {e}")))?
                .into_iter()
                .next()
                .unwrap_or(Value::Null);
        }
    }
    Ok(())
}

/// Substitutes the variables in `input` with Flux's envsubst ([`crate::envsubst`]). With
/// `strict`, an undefined variable outside a default form is an error naming it.
pub fn substitute(input: &str, vars: &BTreeMap<String, String>, strict: bool) -> Result<String, String> {
    crate::envsubst::eval(input, vars, strict)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> BTreeMap<String, String> {
        BTreeMap::from([("cluster".into(), "prod".into()), ("empty".into(), String::new())])
    }

    #[test]
    fn substitutes_defaults_and_escapes() {
        let out = substitute(
            "a: ${cluster}-${region:=eu} ${empty:=x} $${kept} $plain ${empty}",
            &vars(),
            true,
        )
        .unwrap();
        assert_eq!(out, "a: prod-eu x ${kept} $plain ");
    }

    #[test]
    fn without_variables_nothing_is_substituted_unless_always() {
        let object = || vec![serde_json::json!({"metadata": {"name": "x"}, "data": {"a": "${unset:=d}"}})];
        let mut objects = object();
        substitute_objects(&mut objects, &BTreeMap::new(), &PostBuild::default(), true).unwrap();
        assert_eq!(objects[0]["data"]["a"], "${unset:=d}");
        let always = PostBuild {
            substitute_strategy: Some("Always".into()),
            ..PostBuild::default()
        };
        substitute_objects(&mut objects, &BTreeMap::new(), &always, true).unwrap();
        assert_eq!(objects[0]["data"]["a"], "d");
    }

    /// The gate decides whether an unset variable fails the build; the result is read back as
    /// Flux reads it (YAML 1.1: a substituted `yes` is a boolean, `0755` octal).
    #[test]
    fn objects_follow_the_strict_gate_and_are_read_back_as_flux_does() {
        let object = || {
            vec![serde_json::json!({"metadata": {"name": "x"},
            "spec": {"enabled": "${flag}", "mode": "${mode}", "unset": "a${missing}b"}})]
        };
        let vars = BTreeMap::from([("flag".into(), "yes".into()), ("mode".into(), "0755".into())]);
        let post_build = PostBuild::default();
        let err = substitute_objects(&mut object(), &vars, &post_build, true).unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
        let mut objects = object();
        substitute_objects(&mut objects, &vars, &post_build, false).unwrap();
        assert_eq!(
            objects[0]["spec"],
            serde_json::json!({"enabled": true, "mode": 493, "unset": "ab"})
        );
    }

    #[test]
    fn strict_mode_names_the_missing_variable() {
        let err = substitute("${missing}", &vars(), true).unwrap_err();
        assert!(err.contains("missing"), "{err}");
        assert_eq!(substitute("${missing}", &vars(), false).unwrap(), "");
    }
}
