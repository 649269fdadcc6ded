//! What each Provider type sends for an event: the HTTP request, built without I/O so that
//! every payload is checked by unit tests, and the outcome read from the response.
//!
//! Each type sends what Flux's notifier for it sends (`docs/notification-controller.md` lists
//! them): the generic event JSON (signed with `generic-hmac`), chat messages (slack, discord,
//! rocket, msteams, googlechat, webex, telegram, matrix), alerting APIs (opsgenie,
//! alertmanager, grafana, pagerduty, datadog), and GitHub, GitLab and Gitea (commit statuses,
//! repository dispatch). Other types are refused with a message naming them (never silently
//! dropped).

use std::collections::BTreeMap;

use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};

use crate::event::Event;

/// Where Slack's bot API posts messages.
pub const SLACK_POST_MESSAGE: &str = "https://slack.com/api/chat.postMessage";
/// Flux's avatar, which Slack messages carry.
const FLUX_ICON: &str = "https://avatars3.githubusercontent.com/u/52158677?s=200&v=4";

/// A Provider with its Secret resolved.
#[derive(Clone, Debug, Default)]
pub struct Target {
    pub provider_type: String,
    pub address: String,
    pub channel: String,
    pub username: String,
    pub password: String,
    pub token: String,
    pub headers: BTreeMap<String, String>,
    /// The Provider's UID (commit status keys, Opsgenie aliases).
    pub uid: String,
    /// The commit status id `spec.commitStatusExpr` gave for the event being sent, if set.
    pub commit_status: Option<String>,
    /// The login whose change-request comments are this Provider's, when known without asking
    /// (a GitHub App's `<slug>[bot]`).
    pub login: Option<String>,
    /// The Alert the event goes out for: `namespace`, `name`, `uid` (otel spans).
    pub alert: (String, String, String),
    /// A NATS credentials file (`creds`) and nkey seed (`nkey`) of the Secret.
    pub nats_creds: String,
    pub nats_nkey: String,
    /// The API base of services whose address is not a URL (Pub/Sub's).
    pub api_endpoint: String,
    /// GitHub App credentials of the Secret, minted into `token` before sending.
    pub github_app: Option<driftless_runtime::github_app::AppCredentials>,
}

/// The commit status id of `event` through `target`: its `commitStatusExpr`'s, else Flux's
/// default `kind/name/<first part of the Provider UID>`.
pub fn commit_status_id(target: &Target, event: &Event) -> String {
    target
        .commit_status
        .clone()
        .unwrap_or_else(|| crate::services::commit_status_key(event, &target.uid))
}

/// Flux's `spec.commitStatusExpr`: CEL over `event`, `alert` and `provider` (as JSON objects)
/// that must give a string.
pub fn evaluate_commit_status(
    expression: &str,
    event: &Event,
    alert: &serde_json::Value,
    provider: &serde_json::Value,
) -> Result<String, String> {
    let failed = |why: String| {
        format!("failed to evaluate the spec.commitStatusExpr CEL expression for the event: {why}")
    };
    let program = cel::Program::compile(expression)
        .map_err(|e| failed(format!("failed to compile expression: {e}")))?;
    let mut context = cel::Context::default();
    let event = serde_json::to_value(event).map_err(|e| failed(e.to_string()))?;
    for (name, value) in [("event", &event), ("alert", alert), ("provider", provider)] {
        let value = cel::to_value(value).map_err(|e| failed(e.to_string()))?;
        context.add_variable_from_value(name, value);
    }
    match program.execute(&context) {
        Ok(cel::Value::String(id)) => Ok(id.to_string()),
        Ok(other) => Err(failed(format!("the result is not a string: {other:?}"))),
        Err(e) => Err(failed(e.to_string())),
    }
}

/// One HTTP request.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    pub method: &'static str,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub(crate) fn post(
        url: impl Into<String>,
        headers: Vec<(String, String)>,
        body: &Value,
    ) -> Result<Self, String> {
        Ok(Self {
            method: "POST",
            url: url.into(),
            headers,
            body: serde_json::to_vec(body).map_err(|e| e.to_string())?,
        })
    }
}

/// The provider types that set commit statuses: they see only events meant for them.
pub const COMMIT_STATUS_TYPES: [&str; 6] = [
    "github",
    "gitlab",
    "gitea",
    "bitbucket",
    "bitbucketserver",
    "azuredevops",
];

/// Whether `target` sends anything for `event` (its metadata cleaned, `commit_status` and
/// `commit` included), as Flux decides: commit-status events (`commit_status: update`) go only
/// to the git and generic types, and the git types see only those, errors, and events naming
/// a commit.
pub fn wants(target: &Target, event: &Event) -> bool {
    let commit_status = event.metadata.get("commit_status").is_some_and(|v| v == "update");
    let kind = target.provider_type.as_str();
    // Change-request comments: only events naming the pull or merge request.
    if crate::comments::TYPES.contains(&kind) {
        return !commit_status
            && event
                .metadata
                .get("change_request")
                .is_some_and(|c| !c.is_empty());
    }
    if COMMIT_STATUS_TYPES.contains(&kind) {
        return commit_status
            || event.severity == "error"
            || event.metadata.get("commit").is_some_and(|c| !c.is_empty());
    }
    !commit_status || matches!(kind, "generic" | "generic-hmac")
}

/// The requests `target` sends for `event` (its metadata cleaned already), in order.
pub fn requests(target: &Target, event: &Event) -> Result<Vec<Request>, String> {
    match target.provider_type.as_str() {
        "generic" | "generic-hmac" | "slack" => request(target, event).map(|r| vec![r]),
        _ => crate::services::requests(target, event),
    }
}

/// The request of the generic and Slack types.
fn request(target: &Target, event: &Event) -> Result<Request, String> {
    let mut headers = vec![("Content-Type".to_string(), "application/json".to_string())];
    match target.provider_type.as_str() {
        "generic" | "generic-hmac" => {
            let url = required(&target.address, "address")?;
            let body = serde_json::to_vec(event).map_err(|e| e.to_string())?;
            headers.push(("Gotk-Component".into(), event.reporting_controller.clone()));
            if target.provider_type == "generic-hmac" {
                let token = required(&target.token, "token")?;
                headers.push(("X-Signature".into(), format!("sha256={}", sign(token, &body))));
            }
            headers.extend(target.headers.iter().map(|(k, v)| (k.clone(), v.clone())));
            Ok(Request {
                method: "POST",
                url: url.to_string(),
                headers,
                body,
            })
        }
        "slack" => {
            let mut payload = slack_payload(target, event);
            let url = if target.token.is_empty() {
                required(&target.address, "address")?.to_string()
            } else {
                // The bot API: a token, and the channel it posts to.
                required(&target.channel, "channel")?;
                headers.push(("Authorization".into(), format!("Bearer {}", target.token)));
                payload["channel"] = json!(target.channel);
                if target.address.is_empty() {
                    SLACK_POST_MESSAGE.to_string()
                } else {
                    target.address.clone()
                }
            };
            Request::post(url, headers, &payload)
        }
        other => Err(format!("provider type '{other}' is not supported yet")),
    }
}

pub(crate) fn required<'a>(value: &'a str, what: &str) -> Result<&'a str, String> {
    if value.is_empty() {
        Err(format!("the provider has no {what}"))
    } else {
        Ok(value)
    }
}

/// `hex(HMAC-SHA256(token, body))`.
pub fn sign(token: &str, body: &[u8]) -> String {
    let mut mac =
        <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(token.as_bytes()).expect("HMAC takes any key length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// `kind/name.namespace`, the kind lower-cased, as Flux's messages name the object.
pub(crate) fn object_name(event: &Event) -> String {
    let object = &event.involved_object;
    format!(
        "{}/{}.{}",
        object.kind.as_deref().unwrap_or_default().to_lowercase(),
        object.name.as_deref().unwrap_or_default(),
        object.namespace.as_deref().unwrap_or_default()
    )
}

/// Flux's Slack message: one attachment, green for info and red for errors, the object as
/// `kind/name.namespace`, the metadata as fields.
fn slack_payload(target: &Target, event: &Event) -> Value {
    let author = object_name(event);
    let color = if event.severity == "error" {
        "danger"
    } else {
        "good"
    };
    let fields: Vec<Value> = event
        .metadata
        .iter()
        .map(|(k, v)| json!({"title": k, "value": v, "short": false}))
        .collect();
    let mut payload = json!({
        "attachments": [{
            "color": color,
            "author_name": author,
            "text": event.message,
            "mrkdwn_in": ["text"],
            "fields": fields,
        }],
        "icon_url": FLUX_ICON,
    });
    if !target.channel.is_empty() {
        payload["channel"] = json!(target.channel);
    }
    if !target.username.is_empty() {
        payload["username"] = json!(target.username);
    }
    payload
}

/// Whether a response is a delivery: 2xx (and, for Slack's bot API, `"ok": true`).
pub fn accepted(target: &Target, status: u16, body: &[u8]) -> Result<(), String> {
    if !(200..300).contains(&status) {
        let text: String = String::from_utf8_lossy(body).chars().take(200).collect();
        return Err(format!("POST failed with status {status}: {text}"));
    }
    if target.provider_type == "slack" && !target.token.is_empty() {
        let reply: Value = serde_json::from_slice(body).unwrap_or_default();
        if reply.get("ok") != Some(&Value::Bool(true)) {
            let error = reply
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("unknown error");
            return Err(format!("Slack refused the message: {error}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn event(severity: &str) -> Event {
        serde_json::from_value(json!({
            "involvedObject": {"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization", "name": "web", "namespace": "apps"},
            "severity": severity, "timestamp": "2026-12-02T10:00:00Z", "message": "Health check failed",
            "reason": "HealthCheckFailed", "metadata": {"revision": "main@sha1:abc"},
            "reportingController": "kustomize-controller"
        }))
        .unwrap()
    }

    fn target(kind: &str) -> Target {
        Target {
            provider_type: kind.into(),
            address: "https://sink.example/hook".into(),
            ..Target::default()
        }
    }

    #[test]
    fn generic_and_hmac_send_the_event_json() {
        let mut t = target("generic-hmac");
        assert!(request(&t, &event("info")).is_err_and(|e| e.contains("no token")));
        t.token = "s3cret".into();
        t.headers.insert("X-Team".into(), "web".into());
        let r = request(&t, &event("info")).unwrap();
        let body: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["involvedObject"]["name"], "web");
        let header = |name: &str| r.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        assert_eq!(header("Gotk-Component").unwrap(), "kustomize-controller");
        assert_eq!(
            header("X-Signature").unwrap(),
            format!("sha256={}", sign("s3cret", &r.body))
        );
        assert_eq!(header("X-Team").unwrap(), "web");
    }

    #[test]
    fn slack_by_webhook_and_by_bot_token() {
        let mut t = target("slack");
        t.username = "flux".into();
        let r = request(&t, &event("error")).unwrap();
        assert_eq!(r.url, "https://sink.example/hook");
        let body: Value = serde_json::from_slice(&r.body).unwrap();
        let attachment = &body["attachments"][0];
        assert_eq!(attachment["color"], "danger");
        assert_eq!(attachment["author_name"], "kustomization/web.apps");
        assert_eq!(attachment["fields"][0]["title"], "revision");
        assert_eq!(body["username"], "flux");

        t.token = "xoxb-1".into();
        assert!(request(&t, &event("info")).is_err_and(|e| e.contains("no channel")));
        t.channel = "#ops".into();
        t.address.clear();
        let r = request(&t, &event("info")).unwrap();
        assert_eq!(r.url, SLACK_POST_MESSAGE);
        assert!(
            r.headers
                .contains(&("Authorization".into(), "Bearer xoxb-1".into()))
        );
        assert!(accepted(&t, 200, br#"{"ok": false, "error": "channel_not_found"}"#).is_err());
        assert!(accepted(&t, 200, br#"{"ok": true}"#).is_ok());
        assert!(requests(&target("pigeon"), &event("info")).is_err_and(|e| e.contains("not supported yet")));
    }

    /// `spec.commitStatusExpr`: CEL over the event, the Alert and the Provider names the
    /// commit status; an expression that does not give a string fails the delivery.
    #[test]
    fn commit_status_expressions_name_the_status() {
        let event: Event = serde_json::from_value(serde_json::json!({
            "involvedObject": {"kind": "Kustomization", "name": "web", "namespace": "apps"},
            "severity": "info", "message": "m", "reason": "ReconciliationSucceeded",
            "metadata": {"revision": format!("main@sha1:{}", "a".repeat(40))},
            "reportingController": "kustomize-controller"}))
        .unwrap();
        let alert = serde_json::json!({"metadata": {"name": "prod-alert"}});
        let provider = serde_json::json!({"metadata": {"name": "github", "uid": "0c9c2e41-x"}});
        let id = evaluate_commit_status(
            "event.involvedObject.kind + '/' + event.involvedObject.name + '/' + alert.metadata.name",
            &event,
            &alert,
            &provider,
        )
        .unwrap();
        assert_eq!(id, "Kustomization/web/prod-alert");
        assert!(
            evaluate_commit_status("1 + 1", &event, &alert, &provider)
                .is_err_and(|e| e.contains("not a string"))
        );
        assert!(
            evaluate_commit_status("event.", &event, &alert, &provider).is_err_and(|e| e.contains("compile"))
        );
        let mut gitea = Target {
            provider_type: "gitea".into(),
            address: "https://gitea.example/acme/web".into(),
            token: "t".into(),
            uid: "0c9c2e41-x".into(),
            ..Target::default()
        };
        assert_eq!(commit_status_id(&gitea, &event), "kustomization/web/0c9c2e41");
        gitea.commit_status = Some(id);
        let sent = &requests(&gitea, &event).unwrap()[0];
        let body: serde_json::Value = serde_json::from_slice(&sent.body).unwrap();
        assert_eq!(body["context"], "Kustomization/web/prod-alert");
    }
}
