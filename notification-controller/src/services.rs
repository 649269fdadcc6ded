//! The provider types beyond generic and Slack, each sending what Flux's notifier for it sends
//! (field names, colours, titles, keys), so that a dashboard or a channel fed by Flux looks
//! the same fed by Driftless. Metadata is listed in key order.

use base64::Engine;
use serde_json::{Map, Value, json};
use sha2::Digest;

use crate::event::Event;
use crate::providers::{Request, Target, object_name, required};

fn json_headers() -> Vec<(String, String)> {
    vec![("Content-Type".to_string(), "application/json".to_string())]
}

fn bearer(token: &str) -> (String, String) {
    ("Authorization".into(), format!("Bearer {token}"))
}

fn is_error(event: &Event) -> bool {
    event.severity == "error"
}

fn kind(event: &Event) -> &str {
    event.involved_object.kind.as_deref().unwrap_or_default()
}

fn name(event: &Event) -> &str {
    event.involved_object.name.as_deref().unwrap_or_default()
}

fn namespace(event: &Event) -> &str {
    event.involved_object.namespace.as_deref().unwrap_or_default()
}

/// A reason as words (`ReconciliationSucceeded` → `reconciliation succeeded`), as Flux
/// describes commit statuses and PagerDuty incidents.
pub fn reason_words(reason: &str) -> String {
    let mut words = String::new();
    for (i, c) in reason.char_indices() {
        if c.is_uppercase() && i > 0 {
            words.push(' ');
        }
        words.extend(c.to_lowercase());
    }
    words
}

/// The commit of an event: the `commit`, `originRevision` or `revision` metadata, after its
/// last `:` (`main@sha1:<sha>`) or `/`; a 40-character SHA-1.
pub fn commit_of(event: &Event) -> Result<String, String> {
    let revision = ["commit", "originRevision", "revision"]
        .iter()
        .find_map(|k| event.metadata.get(*k).filter(|v| !v.is_empty()))
        .ok_or("missing revision metadata")?;
    let sha = revision
        .rsplit_once(':')
        .map(|(_, s)| s)
        .or_else(|| revision.rsplit_once('/').map(|(_, s)| s))
        .unwrap_or(revision);
    if sha.len() != 40 {
        return Err(format!("invalid commit SHA '{sha}' in revision '{revision}'"));
    }
    Ok(sha.to_string())
}

/// `scheme://host[:port]` and the repository path (`owner/repo`, `.git` dropped) of a Git
/// address; `ssh://` and `git@host:path` are read as HTTPS.
pub fn git_address(address: &str) -> Result<(String, String), String> {
    let normalized = if let Some(rest) = address.strip_prefix("git@") {
        format!("https://{}", rest.replacen(':', "/", 1))
    } else if let Some(rest) = address.strip_prefix("ssh://") {
        format!("https://{}", rest.split_once('@').map_or(rest, |(_, r)| r))
    } else {
        address.to_string()
    };
    let url =
        url::Url::parse(&normalized).map_err(|e| format!("invalid repository address '{address}': {e}"))?;
    let host = match url.port() {
        Some(port) => format!("{}://{}:{port}", url.scheme(), url.host_str().unwrap_or_default()),
        None => format!("{}://{}", url.scheme(), url.host_str().unwrap_or_default()),
    };
    let id = url
        .path()
        .trim_start_matches('/')
        .trim_end_matches('/')
        .trim_end_matches(".git")
        .to_string();
    if id.is_empty() {
        return Err(format!(
            "invalid repository address '{address}': no repository path"
        ));
    }
    Ok((host, id))
}

/// `owner/repo`, as GitHub and Gitea name a repository.
fn owner_repo(id: &str) -> Result<&str, String> {
    if id.split('/').count() == 2 {
        Ok(id)
    } else {
        Err(format!("invalid repository id '{id}'"))
    }
}

/// The GitHub API base for a repository host (GitHub Enterprise serves it under `/api/v3/`).
pub fn github_api(host: &str) -> String {
    let bare = host.split_once("://").map_or(host, |(_, h)| h);
    if bare == "github.com" {
        "https://api.github.com/".into()
    } else if bare.starts_with("api.") || bare.contains(".api.") {
        format!("{host}/")
    } else {
        format!("{host}/api/v3/")
    }
}

/// Flux's default commit status key: `kind/name/<first 8 hex of the provider UID>`.
pub fn commit_status_key(event: &Event, uid: &str) -> String {
    let short = uid.split('-').next().unwrap_or_default();
    format!("{}/{}/{short}", kind(event), name(event)).to_lowercase()
}

/// The requests of every type but generic and Slack.
pub fn requests(target: &Target, event: &Event) -> Result<Vec<Request>, String> {
    let post = |url: String, headers, body: Value| Request::post(url, headers, &body).map(|r| vec![r]);
    let metadata = &event.metadata;
    match target.provider_type.as_str() {
        "discord" | "rocket" => {
            let discord = target.provider_type == "discord";
            let address = required(&target.address, "address")?;
            let url = if discord && !address.trim_end_matches('/').ends_with("/slack") {
                let mut url = url::Url::parse(address).map_err(|e| format!("invalid address: {e}"))?;
                let path = format!("{}/slack", url.path().trim_end_matches('/'));
                url.set_path(&path);
                url.to_string()
            } else {
                address.to_string()
            };
            let color = match (discord, is_error(event)) {
                (true, true) => "danger",
                (true, false) => "good",
                (false, true) => "#FF0000",
                (false, false) => "#0076D7",
            };
            let username = if discord && target.username.is_empty() {
                event.reporting_controller.clone()
            } else {
                target.username.clone()
            };
            let fields: Vec<Value> = metadata
                .iter()
                .map(|(k, v)| json!({"title": k, "value": v, "short": false}))
                .collect();
            post(
                url,
                json_headers(),
                json!({
                    "channel": if discord { "" } else { target.channel.as_str() },
                    "username": username, "icon_url": "", "icon_emoji": "",
                    "attachments": [{"fallback": "", "color": color, "author_name": object_name(event),
                        "text": event.message, "mrkdwn_in": ["text"], "fields": fields}],
                }),
            )
        }
        "msteams" => {
            let address = required(&target.address, "address")?;
            let host = url::Url::parse(address)
                .ok()
                .and_then(|u| u.host_str().map(str::to_string))
                .unwrap_or_default();
            let body = if host.ends_with(".webhook.office.com") {
                let facts: Vec<Value> = metadata
                    .iter()
                    .map(|(k, v)| json!({"name": k, "value": v}))
                    .collect();
                json!({
                    "@type": "MessageCard", "@context": "http://schema.org/extensions",
                    "themeColor": if is_error(event) { "FF0000" } else { "0076D7" },
                    "summary": object_name(event),
                    "sections": [{"activityTitle": event.message, "activitySubtitle": object_name(event), "facts": facts}],
                })
            } else {
                let mut facts: Vec<Value> = Vec::new();
                if let Some(summary) = metadata.get("summary") {
                    facts.push(json!({"title": "summary", "value": summary}));
                }
                facts.extend(
                    metadata
                        .iter()
                        .filter(|(k, _)| k.as_str() != "summary")
                        .map(|(k, v)| json!({"title": k, "value": v})),
                );
                let mut message = json!({"type": "TextBlock", "text": event.message, "wrap": true});
                if is_error(event) {
                    message["color"] = json!("attention");
                }
                let mut fact_set = json!({"type": "FactSet"});
                if !facts.is_empty() {
                    fact_set["facts"] = Value::Array(facts);
                }
                json!({"type": "message", "attachments": [{
                "contentType": "application/vnd.microsoft.card.adaptive",
                "content": {
                    "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                    "type": "AdaptiveCard", "version": "1.4",
                    "body": [{"type": "Container", "items": [
                        {"type": "TextBlock", "text": object_name(event), "size": "large", "weight": "bolder", "wrap": true},
                        message,
                        fact_set,
                    ]}],
                    "msteams": {"width": "Full"},
                }}]})
            };
            post(address.to_string(), json_headers(), body)
        }
        "googlechat" => {
            let address = required(&target.address, "address")?;
            let text = if is_error(event) {
                format!("<font color=\"#ff0000\">{}</font>", event.message)
            } else {
                event.message.clone()
            };
            let mut sections =
                vec![json!({"header": "", "widgets": [{"textParagraph": {"text": text}, "keyValue": null}]})];
            if !metadata.is_empty() {
                let widgets: Vec<Value> = metadata
                    .iter()
                    .map(|(k, v)| {
                        json!({"textParagraph": null, "keyValue": {"topLabel": k, "content": v,
                        "contentMultiline": false, "bottomLabel": null, "icon": null}})
                    })
                    .collect();
                sections.push(json!({"header": "", "widgets": widgets}));
            }
            post(
                address.to_string(),
                json_headers(),
                json!({"cards": [{"header": {"title": object_name(event), "subtitle": event.reporting_controller,
                    "imageUrl": null, "imageStyle": null}, "sections": sections}]}),
            )
        }
        "webex" => {
            let address = required(&target.address, "address")?;
            let mut markdown = format!(
                "{} **{}**\n{}\n",
                if is_error(event) { "💣" } else { "✅" },
                object_name(event),
                event.message
            );
            for (k, v) in metadata {
                markdown.push_str(&format!(">**{k}**: {v}\n"));
            }
            let mut body = Map::new();
            if !target.channel.is_empty() {
                body.insert("roomId".into(), json!(target.channel));
            }
            body.insert("markdown".into(), json!(markdown));
            let mut headers = json_headers();
            headers.push(bearer(&target.token));
            post(address.to_string(), headers, Value::Object(body))
        }
        "telegram" => {
            if target.channel.is_empty() {
                return Err("empty Telegram channel".into());
            }
            if target.token.is_empty() {
                return Err("empty Telegram token".into());
            }
            let escape = |s: &str| {
                let mut out = String::new();
                for c in s.chars() {
                    if "\\.-_[]()~>`#+=|{}!*".contains(c) {
                        out.push('\\');
                    }
                    out.push(c);
                }
                out
            };
            let emoji = if is_error(event) { "🚨" } else { "💫" };
            let title = format!(
                "{emoji} {}/{}/{}",
                kind(event).to_lowercase(),
                name(event),
                namespace(event)
            );
            let mut text = format!("*{}*\n{}\n", escape(&title), escape(&event.message));
            for (k, v) in metadata {
                text.push_str(&format!("\\- *{}*: {}\n", escape(k), escape(v)));
            }
            let (chat, thread) = match target.channel.split_once(':') {
                Some((chat, thread)) => (chat, Some(thread)),
                None => (target.channel.as_str(), None),
            };
            let mut body = json!({"chat_id": chat, "text": text, "parse_mode": "MarkdownV2"});
            if let Some(thread) = thread {
                body["message_thread_id"] = json!(thread);
            }
            post(
                format!("https://api.telegram.org/bot{}/sendMessage", target.token),
                json_headers(),
                body,
            )
        }
        "matrix" => {
            let address = required(&target.address, "address")?;
            let event_json = serde_json::to_vec(event).map_err(|e| e.to_string())?;
            let txn = hex::encode(sha1::Sha1::digest(&event_json));
            let mut body = format!(
                "{} {}\n{}\n",
                if is_error(event) { "🚨" } else { "💫" },
                object_name(event),
                event.message
            );
            for (k, v) in metadata {
                body.push_str(&format!("- {k}: {v}\n"));
            }
            let mut headers = json_headers();
            headers.push(bearer(&target.token));
            Ok(vec![Request {
                method: "PUT",
                url: format!(
                    "{address}/_matrix/client/r0/rooms/{}/send/m.room.message/{txn}",
                    target.channel
                ),
                headers,
                body: serde_json::to_vec(&json!({"body": body, "msgtype": "m.text"}))
                    .map_err(|e| e.to_string())?,
            }])
        }
        "opsgenie" => {
            let address = required(&target.address, "address")?;
            if target.token.is_empty() {
                return Err("empty Opsgenie apikey/token".into());
            }
            let alias = hex::encode(sha2::Sha256::digest(
                format!(
                    "{}/{}/{}/{}/{}",
                    target.uid,
                    kind(event),
                    namespace(event),
                    name(event),
                    event.reason
                )
                .as_bytes(),
            ));
            let mut details: Map<String, Value> =
                metadata.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
            details.insert("severity".into(), json!(event.severity));
            let mut headers = json_headers();
            headers.push(("Authorization".into(), format!("GenieKey {}", target.token)));
            post(
                address.to_string(),
                headers,
                json!({"message": format!("{}/{}", kind(event), name(event)), "alias": alias,
                    "description": event.message, "details": details}),
            )
        }
        "alertmanager" => {
            let address = required(&target.address, "address")?;
            let mut labels: Map<String, Value> = metadata
                .iter()
                .filter(|(k, _)| k.as_str() != "summary")
                .map(|(k, v)| (k.clone(), json!(v)))
                .collect();
            let mut title_reason: String = event.reason.to_lowercase();
            if let Some(first) = title_reason.get(..1).map(str::to_uppercase) {
                title_reason.replace_range(..1, &first);
            }
            labels.insert(
                "alertname".into(),
                json!(format!("Flux{}{title_reason}", kind(event))),
            );
            labels.insert("severity".into(), json!(event.severity));
            labels.insert("reason".into(), json!(event.reason));
            labels.insert("kind".into(), json!(kind(event)));
            labels.insert("name".into(), json!(name(event)));
            labels.insert("namespace".into(), json!(namespace(event)));
            labels.insert("reportingcontroller".into(), json!(event.reporting_controller));
            let mut annotations = json!({"message": event.message});
            if let Some(summary) = metadata.get("summary") {
                annotations["summary"] = json!(summary);
            }
            let mut headers = json_headers();
            if !target.username.is_empty() && !target.password.is_empty() {
                let basic = base64::engine::general_purpose::STANDARD
                    .encode(format!("{}:{}", target.username, target.password));
                headers.push(("Authorization".into(), format!("Basic {basic}")));
            } else if !target.token.is_empty() {
                headers.push(bearer(&target.token));
            }
            post(
                address.to_string(),
                headers,
                json!([{"status": "firing", "labels": labels, "annotations": annotations,
                    "startsAt": event.timestamp, "endsAt": "0001-01-01T00:00:00Z"}]),
            )
        }
        "grafana" => {
            let address = required(&target.address, "address")?;
            let clean = |s: &str| s.replace(':', "|");
            let mut tags = vec![json!("flux"), json!(event.reporting_controller)];
            tags.extend(
                metadata
                    .iter()
                    .map(|(k, v)| json!(format!("{}: {}", clean(k), clean(v)))),
            );
            tags.push(json!(format!("kind: {}", kind(event))));
            tags.push(json!(format!("name: {}", name(event))));
            tags.push(json!(format!("namespace: {}", namespace(event))));
            let mut headers = json_headers();
            if !target.token.is_empty() {
                headers.push(bearer(&target.token));
            } else if !target.username.is_empty() && !target.password.is_empty() {
                let basic = base64::engine::general_purpose::STANDARD
                    .encode(format!("{}:{}", target.username, target.password));
                headers.push(("Authorization".into(), format!("Basic {basic}")));
            }
            post(
                address.to_string(),
                headers,
                json!({"when": unix_seconds(&event.timestamp), "text": object_name(event), "tags": tags}),
            )
        }
        "pagerduty" => {
            if event.reason == "Progressing" {
                return Ok(Vec::new());
            }
            let address = required(&target.address, "address")?;
            let base = url::Url::parse(address)
                .map(|u| u.origin().ascii_serialization())
                .map_err(|e| format!("invalid address: {e}"))?;
            let key = target.channel.as_str();
            let uid = event.involved_object.uid.clone().unwrap_or_default();
            let summary = format!(
                "{}: {}",
                reason_words(&event.reason),
                format!("{}/{}", kind(event), name(event)).to_lowercase()
            );
            let details = json!({"message": event.message, "metadata": metadata});
            let source = format!("Flux {}", event.reporting_controller);
            let mut out = Vec::new();
            let enqueue = if is_error(event) {
                json!({"routing_key": key, "event_action": "trigger", "dedup_key": uid,
                    "payload": {"summary": summary, "source": source, "severity": "error", "timestamp": event.timestamp,
                        "component": name(event), "group": kind(event), "custom_details": details}})
            } else {
                json!({"routing_key": key, "event_action": "resolve", "dedup_key": uid})
            };
            out.push(Request::post(
                format!("{base}/v2/enqueue"),
                json_headers(),
                &enqueue,
            )?);
            if event.severity == "info" {
                let change = json!({"routing_key": key, "payload": {"summary": summary, "source": source,
                    "timestamp": event.timestamp, "custom_details": details}});
                out.push(Request::post(
                    format!("{base}/v2/change/enqueue"),
                    json_headers(),
                    &change,
                )?);
            }
            Ok(out)
        }
        "datadog" => {
            if target.token.is_empty() {
                return Err("token cannot be empty".into());
            }
            let address = required(&target.address, "address")?;
            let base = url::Url::parse(address)
                .map(|u| u.origin().ascii_serialization())
                .map_err(|e| format!("invalid address: {e}"))?;
            let mut tags = vec![
                format!("flux_reporting_controller:{}", event.reporting_controller),
                format!("flux_reason:{}", event.reason),
                format!("kube_kind:{}", kind(event)),
                format!("kube_name:{}", name(event)),
                format!("kube_namespace:{}", namespace(event)),
            ];
            tags.extend(metadata.iter().map(|(k, v)| format!("{k}:{v}")));
            let tags: Vec<String> = tags.into_iter().map(|t| t.to_lowercase()).collect();
            let mut headers = json_headers();
            headers.push(("DD-API-KEY".into(), target.token.clone()));
            headers.push(("Accept".into(), "application/json".into()));
            post(
                format!("{base}/api/v1/events"),
                headers,
                json!({"alert_type": if is_error(event) { "error" } else { "info" },
                    "date_happened": unix_seconds(&event.timestamp), "source_type_name": "fluxcd",
                    "tags": tags, "text": event.message,
                    "title": format!("Events from the {} {}/{}", kind(event), name(event), namespace(event))}),
            )
        }
        "githubdispatch" | "github" => {
            let token = if target.token.is_empty() {
                &target.password
            } else {
                &target.token
            };
            if token.is_empty() {
                return Err("github token or github app details must be specified".into());
            }
            let (host, id) = git_address(required(&target.address, "address")?)?;
            let repo = owner_repo(&id)?;
            let api = github_api(&host);
            let mut headers = json_headers();
            headers.push(bearer(token));
            headers.push(("Accept".into(), "application/vnd.github.v3+json".into()));
            headers.push(("X-GitHub-Api-Version".into(), "2022-11-28".into()));
            if target.provider_type == "githubdispatch" {
                let event_type = format!("{}/{}.{}", kind(event), name(event), namespace(event));
                return post(
                    format!("{api}repos/{repo}/dispatches"),
                    headers,
                    json!({"event_type": event_type, "client_payload": event}),
                );
            }
            if event.reason == "Progressing" {
                return Ok(Vec::new());
            }
            let sha = commit_of(event)?;
            let state = if is_error(event) { "failure" } else { "success" };
            post(
                format!("{api}repos/{repo}/statuses/{sha}"),
                headers,
                json!({"state": state, "description": reason_words(&event.reason),
                    "context": commit_status_key(event, &target.uid)}),
            )
        }
        "gitlab" => {
            let token = if target.token.is_empty() {
                &target.password
            } else {
                &target.token
            };
            if token.is_empty() {
                return Err("gitlab token cannot be empty".into());
            }
            if event.reason == "Progressing" {
                return Ok(Vec::new());
            }
            let (host, id) = git_address(required(&target.address, "address")?)?;
            let project = id.replace('/', "%2F").replace('.', "%2E");
            let sha = commit_of(event)?;
            let mut headers = json_headers();
            headers.push(("PRIVATE-TOKEN".into(), token.clone()));
            headers.push(("Accept".into(), "application/json".into()));
            post(
                format!("{host}/api/v4/projects/{project}/statuses/{sha}"),
                headers,
                json!({"state": if is_error(event) { "failed" } else { "success" },
                    "name": commit_status_key(event, &target.uid), "description": reason_words(&event.reason)}),
            )
        }
        "gitea" => {
            let token = if target.token.is_empty() {
                &target.password
            } else {
                &target.token
            };
            if token.is_empty() {
                return Err("gitea token cannot be empty".into());
            }
            let (host, id) = git_address(required(&target.address, "address")?)?;
            let repo = owner_repo(&id)?;
            let sha = commit_of(event)?;
            let state = match (event.reason.as_str(), is_error(event)) {
                ("Progressing", _) => "pending",
                (_, true) => "failure",
                (_, false) => "success",
            };
            let mut headers = json_headers();
            headers.push(("Authorization".into(), format!("token {token}")));
            post(
                format!("{host}/api/v1/repos/{repo}/statuses/{sha}"),
                headers,
                json!({"state": state, "target_url": "", "description": reason_words(&event.reason),
                    "context": commit_status_key(event, &target.uid)}),
            )
        }
        other => Err(format!("provider type '{other}' is not supported yet")),
    }
}

/// Seconds since the epoch of an RFC 3339 time (0 when unreadable).
fn unix_seconds(timestamp: &str) -> i64 {
    timestamp
        .parse::<k8s_openapi::jiff::Timestamp>()
        .map(|t| t.as_second())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn event(severity: &str, reason: &str) -> Event {
        serde_json::from_value(json!({
            "involvedObject": {"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
                "name": "web", "namespace": "apps", "uid": "u-1"},
            "severity": severity, "timestamp": "2026-12-02T10:00:00Z", "message": "Health check failed",
            "reason": reason, "metadata": {"revision": format!("main@sha1:{}", "a".repeat(40)), "summary": "prod"},
            "reportingController": "kustomize-controller"
        }))
        .unwrap()
    }

    fn target(kind: &str) -> Target {
        Target {
            provider_type: kind.into(),
            address: "https://hooks.example/path?x=1".into(),
            channel: "room".into(),
            token: "tok".into(),
            uid: "0c9c2e41-aaaa-bbbb".into(),
            ..Target::default()
        }
    }

    fn body(r: &Request) -> Value {
        serde_json::from_slice(&r.body).unwrap()
    }

    #[test]
    fn chat_services_get_their_shapes() {
        let r = &requests(&target("discord"), &event("error", "HealthCheckFailed")).unwrap()[0];
        assert_eq!(r.url, "https://hooks.example/path/slack?x=1");
        assert_eq!(body(r)["attachments"][0]["color"], "danger");
        assert_eq!(body(r)["username"], "kustomize-controller");
        let r = &requests(&target("rocket"), &event("info", "R")).unwrap()[0];
        assert_eq!(body(r)["attachments"][0]["color"], "#0076D7");
        assert_eq!(body(r)["channel"], "room");
        let r = &requests(&target("msteams"), &event("error", "R")).unwrap()[0];
        let card = &body(r)["attachments"][0]["content"];
        assert_eq!(card["body"][0]["items"][1]["color"], "attention");
        assert_eq!(card["body"][0]["items"][2]["facts"][0]["title"], "summary");
        let mut legacy = target("msteams");
        legacy.address = "https://acme.webhook.office.com/x".into();
        assert_eq!(
            body(&requests(&legacy, &event("info", "R")).unwrap()[0])["@type"],
            "MessageCard"
        );
        let r = &requests(&target("googlechat"), &event("error", "R")).unwrap()[0];
        assert!(
            body(r)["cards"][0]["sections"][0]["widgets"][0]["textParagraph"]["text"]
                .as_str()
                .unwrap()
                .contains("#ff0000")
        );
        let r = &requests(&target("webex"), &event("info", "R")).unwrap()[0];
        assert_eq!(body(r)["roomId"], "room");
        assert!(
            body(r)["markdown"]
                .as_str()
                .unwrap()
                .starts_with("✅ **kustomization/web.apps**")
        );
        let r = &requests(&target("telegram"), &event("info", "R")).unwrap()[0];
        assert_eq!(r.url, "https://api.telegram.org/bottok/sendMessage");
        assert!(
            body(r)["text"]
                .as_str()
                .unwrap()
                .starts_with("*💫 kustomization/web/apps*")
        );
        let r = &requests(&target("matrix"), &event("info", "R")).unwrap()[0];
        assert_eq!(r.method, "PUT");
        assert!(
            r.url
                .contains("/_matrix/client/r0/rooms/room/send/m.room.message/")
        );
    }

    #[test]
    fn alerting_services_get_their_shapes() {
        let r = &requests(&target("opsgenie"), &event("error", "R")).unwrap()[0];
        assert!(
            r.headers
                .contains(&("Authorization".into(), "GenieKey tok".into()))
        );
        assert_eq!(body(r)["message"], "Kustomization/web");
        assert_eq!(body(r)["details"]["severity"], "error");
        let r = &requests(
            &target("alertmanager"),
            &event("error", "ReconciliationSucceeded"),
        )
        .unwrap()[0];
        let alert = &body(r)[0];
        assert_eq!(
            alert["labels"]["alertname"],
            "FluxKustomizationReconciliationsucceeded"
        );
        assert_eq!(alert["annotations"]["summary"], "prod");
        assert!(alert["labels"].get("summary").is_none());
        let r = &requests(&target("grafana"), &event("info", "R")).unwrap()[0];
        assert_eq!(body(r)["when"], 1_796_205_600);
        assert!(body(r)["tags"].as_array().unwrap().contains(&json!(
            "revision: main@sha1|aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        )));
        let info = requests(&target("pagerduty"), &event("info", "ReconciliationSucceeded")).unwrap();
        assert_eq!(info.len(), 2);
        assert_eq!(info[0].url, "https://hooks.example/v2/enqueue");
        assert_eq!(body(&info[0])["event_action"], "resolve");
        assert_eq!(info[1].url, "https://hooks.example/v2/change/enqueue");
        let error = requests(&target("pagerduty"), &event("error", "HealthCheckFailed")).unwrap();
        assert_eq!(
            body(&error[0])["payload"]["summary"],
            "health check failed: kustomization/web"
        );
        assert!(
            requests(&target("pagerduty"), &event("info", "Progressing"))
                .unwrap()
                .is_empty()
        );
        let r = &requests(&target("datadog"), &event("error", "R")).unwrap()[0];
        assert_eq!(r.url, "https://hooks.example/api/v1/events");
        assert!(
            body(r)["tags"]
                .as_array()
                .unwrap()
                .contains(&json!("kube_kind:kustomization"))
        );
    }

    #[test]
    fn git_services_set_commit_statuses() {
        let mut github = target("github");
        github.address = "https://github.com/acme/web.git".into();
        let r = &requests(&github, &event("info", "ReconciliationSucceeded")).unwrap()[0];
        assert_eq!(
            r.url,
            format!(
                "https://api.github.com/repos/acme/web/statuses/{}",
                "a".repeat(40)
            )
        );
        assert_eq!(
            body(r),
            json!({"state": "success", "description": "reconciliation succeeded", "context": "kustomization/web/0c9c2e41"})
        );
        github.address = "git@ghe.example:acme/web.git".into();
        assert!(
            requests(&github, &event("error", "R")).unwrap()[0]
                .url
                .starts_with("https://ghe.example/api/v3/repos/acme/web/statuses/")
        );
        let mut gitlab = target("gitlab");
        gitlab.address = "https://gitlab.example/group/sub/web".into();
        let r = &requests(&gitlab, &event("error", "HealthCheckFailed")).unwrap()[0];
        assert!(
            r.url
                .starts_with("https://gitlab.example/api/v4/projects/group%2Fsub%2Fweb/statuses/")
        );
        assert_eq!(body(r)["state"], "failed");
        let mut gitea = target("gitea");
        gitea.address = "https://gitea.example/acme/web".into();
        assert_eq!(
            body(&requests(&gitea, &event("info", "Progressing")).unwrap()[0])["state"],
            "pending"
        );
        let mut dispatch = target("githubdispatch");
        dispatch.address = "https://github.com/acme/web".into();
        let r = &requests(&dispatch, &event("info", "R")).unwrap()[0];
        assert_eq!(body(r)["event_type"], "Kustomization/web.apps");
        assert!(
            commit_of(
                &serde_json::from_value(
                    json!({"involvedObject": {}, "severity": "info", "message": "m", "reason": "r",
            "reportingController": "c", "metadata": {"revision": "main@sha256:abc"}})
                )
                .unwrap()
            )
            .is_err()
        );
        assert_eq!(reason_words("HealthCheckFailed"), "health check failed");
    }
}
