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
/// describes commit statuses and PagerDuty incidents: acronyms and digit runs stay whole
/// (`HTTPError` → `http error`, `Retry3Times` → `retry 3 times`), as Flux's `splitCamelcase`.
pub fn reason_words(reason: &str) -> String {
    let chars: Vec<char> = reason.chars().collect();
    let mut words = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if i > 0 {
            let prev = chars[i - 1];
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
            let boundary = (c.is_uppercase() && (prev.is_lowercase() || prev.is_ascii_digit()))
                || (c.is_uppercase() && prev.is_uppercase() && next_lower)
                || (c.is_ascii_digit() != prev.is_ascii_digit());
            if boundary {
                words.push(' ');
            }
        }
        words.extend(c.to_lowercase());
    }
    words
}

/// Flux's `formatNameAndDescription`: `kind/name` and the reason as words, both lower case.
fn name_and_description(event: &Event) -> (String, String) {
    (
        format!("{}/{}", kind(event), name(event)).to_lowercase(),
        reason_words(&event.reason),
    )
}

/// Lower-case hex SHA-1 of a commit status id: Bitbucket's keys are limited to 40 characters.
fn sha1_hex(text: &str) -> String {
    hex::encode(sha1::Sha1::digest(text.as_bytes()))
}

/// `Authorization: Basic base64(user:password)`.
fn basic(user: &str, password: &str) -> (String, String) {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    ("Authorization".into(), format!("Basic {encoded}"))
}

/// The commit status states Flux's Bitbucket notifiers send.
fn bitbucket_state(event: &Event) -> Result<&'static str, String> {
    match event.severity.as_str() {
        "info" => Ok("SUCCESSFUL"),
        "error" => Ok("FAILED"),
        _ => Err("can't convert to bitbucket state".into()),
    }
}

/// Random lower-case hex of `bytes` bytes (Sentry event, trace and span ids).
fn random_hex(bytes: usize) -> String {
    hex::encode((0..bytes).map(|_| rand::random::<u8>()).collect::<Vec<u8>>())
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
                    "context": crate::providers::commit_status_id(target, event)}),
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
                    "name": crate::providers::commit_status_id(target, event), "description": reason_words(&event.reason)}),
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
                    "context": crate::providers::commit_status_id(target, event)}),
            )
        }
        "lark" => {
            let address = required(&target.address, "address")?;
            // The URL is the credential: never repeated in an error.
            url::Url::parse(address).map_err(|_| "invalid Slack hook URL".to_string())?;
            let (emoji, color) = if is_error(event) {
                ("🚨", "red")
            } else {
                ("💫", "turquoise")
            };
            let mut message = format!("**{}**\n\n", event.message);
            for (k, v) in metadata {
                message.push_str(&format!("{k}: {v}\n"));
            }
            post(
                address.to_string(),
                json_headers(),
                json!({"msg_type": "interactive", "card": {"config": {"wide_screen_mode": true},
                    "header": {"title": {"tag": "plain_text", "content": format!("{emoji} {}", object_name(event))},
                        "template": color},
                    "elements": [{"tag": "div", "text": {"tag": "lark_md", "content": message}}]}}),
            )
        }
        "zulip" => {
            let mut url = url::Url::parse(required(&target.address, "address")?)
                .map_err(|e| format!("invalid Zulip endpoint URL: {e}"))?;
            url.set_path("/api/v1/messages");
            let (stream, topic) = target
                .channel
                .split_once('/')
                .filter(|(s, t)| !s.is_empty() && !t.is_empty())
                .ok_or_else(|| {
                    format!(
                        "invalid Zulip channel format, expected <channel>/<topic>, got '{}'",
                        target.channel
                    )
                })?;
            let body = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("content", &markdown_post(event))
                .append_pair("to", stream)
                .append_pair("topic", topic)
                .append_pair("type", "stream")
                .finish();
            let mut headers = vec![(
                "Content-Type".to_string(),
                "application/x-www-form-urlencoded".to_string(),
            )];
            if !target.username.is_empty() || !target.password.is_empty() {
                headers.push(basic(&target.username, &target.password));
            }
            Ok(vec![Request {
                method: "POST",
                url: url.to_string(),
                headers,
                body: body.into_bytes(),
            }])
        }
        "zoom" => {
            let address = required(&target.address, "address")?;
            let mut url =
                url::Url::parse(address).map_err(|e| format!("invalid Zoom incoming webhook URL: '{e}'"))?;
            if target.token.is_empty() {
                return Err("empty Zoom verification token".into());
            }
            if !url.query_pairs().any(|(k, v)| k == "format" && !v.is_empty()) {
                let mut pairs: Vec<(String, String)> = url
                    .query_pairs()
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect();
                pairs.push(("format".into(), "full".into()));
                pairs.sort();
                url.query_pairs_mut().clear().extend_pairs(pairs);
            }
            let mut body = vec![json!({"type": "message", "text": event.message})];
            if !metadata.is_empty() {
                let items: Vec<Value> = metadata
                    .iter()
                    .map(|(k, v)| json!({"key": k, "value": v}))
                    .collect();
                body.push(json!({"type": "fields", "items": items}));
            }
            let mut headers = json_headers();
            headers.push(("Authorization".into(), target.token.clone()));
            post(
                url.to_string(),
                headers,
                json!({"content": {"head": {"text": object_name(event), "sub_head": {"text": event.severity}},
                    "body": body}}),
            )
        }
        "incident.io" => {
            let address = required(&target.address, "address")?;
            url::Url::parse(address).map_err(|e| format!("invalid incident.io alert source URL: '{e}'"))?;
            if target.token.is_empty() {
                return Err("empty incident.io API token".into());
            }
            if event.reason == "Progressing" {
                return Ok(Vec::new());
            }
            let mut fields = metadata.clone();
            fields.insert("severity".into(), event.severity.clone());
            fields.insert("reason".into(), event.reason.clone());
            if !event.reporting_controller.is_empty() {
                fields.insert("reportingController".into(), event.reporting_controller.clone());
            }
            let mut body = Map::new();
            body.insert(
                "title".into(),
                json!(format!("{}: {}", object_name(event), event.reason)),
            );
            body.insert(
                "status".into(),
                json!(if is_error(event) { "firing" } else { "resolved" }),
            );
            body.insert(
                "deduplication_key".into(),
                json!(event.involved_object.uid.clone().unwrap_or_default()),
            );
            if !event.message.is_empty() {
                body.insert("description".into(), json!(event.message));
            }
            body.insert("metadata".into(), json!(fields));
            let mut headers = json_headers();
            headers.push(bearer(&target.token));
            post(address.to_string(), headers, Value::Object(body))
        }
        // Flux reads the current status first and writes only a change; a status is replaced
        // by its key, so one POST leaves what users see the same.
        "bitbucket" => {
            if target.token.is_empty() {
                return Err("bitbucket token cannot be empty".into());
            }
            let (_, id) = git_address(required(&target.address, "address")?)
                .map_err(|e| format!("failed parsing URL {:?}: {e}", target.address))?;
            let (user, password) = match target.token.split(':').collect::<Vec<_>>()[..] {
                [user, password] => (user, password),
                _ => return Err("invalid token format, expected to be <user>:<password>".into()),
            };
            let repo = owner_repo(&id).map_err(|_| format!("invalid repository id {id:?}"))?;
            if event.reason == "Progressing" {
                return Ok(Vec::new());
            }
            let state = bitbucket_state(event)?;
            let sha = commit_of(event)?;
            let (name, description) = name_and_description(event);
            let mut headers = json_headers();
            headers.push(basic(user, password));
            post(
                format!("https://api.bitbucket.org/2.0/repositories/{repo}/commit/{sha}/statuses/build"),
                headers,
                json!({"key": sha1_hex(&crate::providers::commit_status_id(target, event)), "url": "https://bitbucket.org",
                    "state": state, "name": name, "description": description}),
            )
        }
        "bitbucketserver" => {
            let address = required(&target.address, "address")?;
            let url = url::Url::parse(address).map_err(|e| format!("could not parse git address: {e}"))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(format!(
                    "could not parse git address: unsupported scheme type in address: {}. Must be http or https",
                    url.scheme()
                ));
            }
            let path = url.path().trim_end_matches(".git");
            let (context, id) = path.rsplit_once("/scm/").ok_or(
                "could not parse git address: supplied provider address is not http(s) git clone url",
            )?;
            let (project, repo) = id
                .split_once('/')
                .filter(|(p, r)| !p.is_empty() && !r.is_empty() && !r.contains('/'))
                .ok_or_else(|| format!("could not parse git address: invalid repository id {id:?}"))?;
            let auth = if !target.token.is_empty() {
                bearer(&target.token)
            } else if !target.username.is_empty() && !target.password.is_empty() {
                basic(&target.username, &target.password)
            } else {
                return Err(
                    "invalid credentials, expected to be one of username/password or API Token".into(),
                );
            };
            if event.reason == "Progressing" {
                return Ok(Vec::new());
            }
            let sha = commit_of(event).map_err(|e| format!("could not parse revision: {e}"))?;
            let state = bitbucket_state(event).map_err(|_| {
                "couldn't convert to bitbucket server state: bitbucket server state generated on info or error events only"
                    .to_string()
            })?;
            let (name, description) = name_and_description(event);
            let mut builds = url.clone();
            builds.set_query(None);
            builds.set_path(&format!(
                "{context}/rest/api/latest/projects/{project}/repos/{repo}/commits/{sha}/builds"
            ));
            let mut headers = json_headers();
            headers.push(auth);
            headers.push(("x-atlassian-token".into(), "no-check".into()));
            headers.push(("x-requested-with".into(), "XMLHttpRequest".into()));
            post(
                builds.to_string(),
                headers,
                json!({"description": description, "key": sha1_hex(&crate::providers::commit_status_id(target, event)),
                    "name": format!("{name} [{description}]"), "state": state, "url": address}),
            )
        }
        // Flux lists the statuses first and adds one only when it changed; Azure keeps every
        // status and shows the latest per context, so users see the same.
        "azuredevops" => {
            if target.token.is_empty() {
                return Err(
                    "azuredevops needs a token (a personal access token): Azure workload identity is not available"
                        .into(),
                );
            }
            let (host, id) = git_address(required(&target.address, "address")?)
                .map_err(|e| format!("failed parsing URL {:?}: {e}", target.address))?;
            let (org, project, repo) = match id.split('/').collect::<Vec<_>>()[..] {
                [org, project, _, repo] => (org, project, repo),
                _ => return Err(format!("invalid repository id {id:?}")),
            };
            if event.reason == "Progressing" {
                return Ok(Vec::new());
            }
            let state = match event.severity.as_str() {
                "info" => "succeeded",
                "error" => "error",
                _ => return Err("can't convert to azure devops state".into()),
            };
            let sha = commit_of(event)?;
            let genre = match metadata.get("summary") {
                Some(summary) => format!("fluxcd:{summary}"),
                None => "fluxcd".into(),
            };
            let (_, description) = name_and_description(event);
            let org_url = format!("{host}/{org}").to_lowercase();
            let escape = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let headers = vec![
                (
                    "Content-Type".to_string(),
                    "application/json;charset=utf-8".to_string(),
                ),
                ("Accept".into(), "application/json;api-version=6.0".into()),
                basic("", &target.token),
                ("X-TFS-FedAuthRedirect".into(), "Suppress".into()),
            ];
            post(
                format!(
                    "{org_url}/{}/_apis/git/repositories/{}/commits/{sha}/statuses",
                    escape(project),
                    escape(repo)
                ),
                headers,
                json!({"context": {"genre": genre, "name": crate::providers::commit_status_id(target, event)},
                    "description": description, "state": state}),
            )
        }
        "sentry" => {
            let dsn = required(&target.address, "address").map_err(|_| "DSN cannot be empty".to_string())?;
            sentry_envelope(dsn, &target.channel, event).map(|r| vec![r])
        }
        "googlepubsub" => {
            let project = required(&target.address, "address")
                .map_err(|_| "GCP project ID cannot be empty".to_string())?;
            let topic = required(&target.channel, "channel")
                .map_err(|_| "GCP Pub/Sub topic ID cannot be empty".to_string())?;
            // A full `projects/P/topics/T` name is taken as it is (as Pub/Sub's client does).
            let name = if topic.split('/').count() == 4 {
                topic.to_string()
            } else {
                format!("projects/{project}/topics/{topic}")
            };
            let mut headers = json_headers();
            if !target.token.is_empty() {
                headers.push(bearer(&target.token));
            }
            let data = serde_json::to_vec(event).map_err(|e| format!("error json-marshaling event: {e}"))?;
            let mut message = json!({"data": base64::engine::general_purpose::STANDARD.encode(data)});
            if !target.headers.is_empty() {
                message["attributes"] = json!(target.headers);
            }
            post(
                format!("{}/v1/{name}:publish", target.api_endpoint.trim_end_matches('/')),
                headers,
                json!({"messages": [message]}),
            )
        }
        "azureeventhub" => event_hub(target, event).map(|r| vec![r]),
        "otel" => {
            if kind(event) == "HelmRepository" {
                return Ok(Vec::new());
            }
            otel_span(target, event).map(|r| vec![r])
        }
        other => Err(format!("provider type '{other}' is not supported yet")),
    }
}

/// An Event Hubs message over the REST API: `address` is a connection string with a shared
/// access key (`Endpoint=sb://<namespace>/;SharedAccessKeyName=…;SharedAccessKey=…;EntityPath=<hub>`,
/// signed here), or the hub's name with `channel` its namespace and `token` an Azure AD token.
/// The body is the event JSON, as Flux sends it over AMQP.
fn event_hub(target: &Target, event: &Event) -> Result<Request, String> {
    let address = required(&target.address, "address")
        .map_err(|_| "invalid authentication options: endpoint URL cannot be empty".to_string())?;
    let (url, authorization) = if address.contains("SharedAccessKey") {
        let mut fields = std::collections::BTreeMap::new();
        for part in address.split(';').filter(|p| !p.trim().is_empty()) {
            let (key, value) = part.split_once('=').ok_or(
                "failed to create a eventhub using SAS: failed parsing connection string due to unmatched key value separated by '='",
            )?;
            fields.insert(key.trim().to_ascii_lowercase(), value.trim().to_string());
        }
        let field = |key: &str| fields.get(key).filter(|v| !v.is_empty()).cloned();
        let sas = |why: &str| format!("failed to create a eventhub using SAS: {why}");
        let endpoint = field("endpoint").ok_or_else(|| sas("key \"Endpoint\" must not be empty"))?;
        let host = endpoint
            .strip_prefix("sb://")
            .map(|h| h.trim_end_matches('/').to_string())
            .filter(|h| !h.is_empty() && !h.contains('/'))
            .ok_or_else(|| {
                sas("failed parsing connection string due to an incorrectly formatted Endpoint value")
            })?;
        let hub = field("entitypath").ok_or_else(|| {
            sas("connection string does not contain an EntityPath. eventHub cannot be an empty string")
        })?;
        if !target.token.is_empty() {
            return Err("invalid authentication options: jwt token and SAS authentication cannot be set at the same time".into());
        }
        // The development emulator speaks AMQP only; events go over Event Hubs' REST API.
        if field("usedevelopmentemulator").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return Err(sas(
                "UseDevelopmentEmulator=true is not supported: the emulator has no REST API, which this controller sends events through",
            ));
        }
        let resource = format!("https://{host}/{hub}");
        let authorization = match field("sharedaccesssignature") {
            Some(signature) => signature,
            None => {
                let name = field("sharedaccesskeyname")
                    .ok_or_else(|| sas("key \"SharedAccessKeyName\" must not be empty"))?;
                let key = field("sharedaccesskey").ok_or_else(|| {
                    sas("key \"SharedAccessKey\" or \"SharedAccessSignature\" cannot both be empty")
                })?;
                let expiry = driftless_runtime::google::now() + 2 * 3600;
                driftless_runtime::azure::service_bus_sas(&resource, &name, &key, expiry)
            }
        };
        (
            format!("{resource}/messages?timeout=60&api-version=2014-01"),
            authorization,
        )
    } else {
        if target.token.is_empty() {
            return Err("failed to create a eventhub using managed identity: workload identity is not supported; give a SAS connection string as address, or a token".into());
        }
        let namespace = if target.channel.contains(".servicebus.") {
            target.channel.clone()
        } else {
            format!("{}.servicebus.windows.net", target.channel)
        };
        (
            format!("https://{namespace}/{address}/messages?timeout=60&api-version=2014-01"),
            format!("Bearer {}", target.token),
        )
    };
    Ok(Request {
        method: "POST",
        url,
        headers: vec![
            ("Authorization".into(), authorization),
            (
                "Content-Type".into(),
                "application/atom+xml;type=entry;charset=utf-8".into(),
            ),
        ],
        body: serde_json::to_vec(event).map_err(|e| format!("unable to marshall event: {e}"))?,
    })
}

/// One span per event in OTLP/JSON (`POST <address>`, `/v1/traces` when it has no path), as
/// Flux's otel notifier builds it: the trace id from the Alert and the revision, so that every
/// event of one revision through one Alert is one trace; `<Kind>: <namespace>/<name>`; the
/// object and the metadata as attributes; an error's message as the status.
fn otel_span(target: &Target, event: &Event) -> Result<Request, String> {
    let address = required(&target.address, "address")?;
    let after_scheme = address.split_once("://").map(|(_, rest)| rest).unwrap_or(address);
    let url = if after_scheme.contains('/') {
        address.to_string()
    } else {
        format!("{address}/v1/traces")
    };
    let metadata = &event.metadata;
    let revision = match (metadata.get("app-version"), metadata.get("oci-digest")) {
        (Some(app), Some(digest)) => format!("{app}@{digest}"),
        _ => metadata
            .get("revision")
            .cloned()
            .unwrap_or_else(|| "unknown".into()),
    };
    let (alert_namespace, alert_name, alert_uid) = &target.alert;
    let trace = sha2::Sha256::digest(format!("{alert_uid}:{revision}").as_bytes());
    let mut span_id = [0u8; 8];
    rand::fill(&mut span_id);
    let text = |key: &str, value: &str| json!({"key": key, "value": {"stringValue": value}});
    let object = &event.involved_object;
    let mut attributes = vec![
        text("object.uid", object.uid.as_deref().unwrap_or_default()),
        text("object.kind", kind(event)),
        text("object.name", name(event)),
        text("object.namespace", namespace(event)),
    ];
    attributes.extend(metadata.iter().map(|(k, v)| text(k, v)));
    let nanos = |seconds: i64| (i128::from(seconds) * 1_000_000_000).to_string();
    let start = event
        .timestamp
        .parse::<k8s_openapi::jiff::Timestamp>()
        .map(|t| t.as_nanosecond().to_string())
        .unwrap_or_else(|_| nanos(unix_seconds(&event.timestamp)));
    let end = k8s_openapi::jiff::Timestamp::now().as_nanosecond().to_string();
    let status = if is_error(event) {
        json!({"code": 2, "message": event.message})
    } else {
        json!({"code": 1})
    };
    let body = json!({"resourceSpans": [{
        "resource": {"attributes": [
            text("service.name", &format!("{alert_namespace}/{alert_name}")),
            text("service.namespace", alert_namespace),
            text("service.instance.id", alert_uid),
        ]},
        "schemaUrl": "https://opentelemetry.io/schemas/1.34.0",
        "scopeSpans": [{
            "scope": {"name": "flux:notification-controller"},
            "spans": [{
                "traceId": hex::encode(&trace[..16]),
                "spanId": hex::encode(span_id),
                "name": format!("{}: {}/{}", kind(event), namespace(event), name(event)),
                "kind": 1,
                "startTimeUnixNano": start,
                "endTimeUnixNano": end,
                "attributes": attributes,
                "status": status,
            }],
        }],
    }]});
    let mut headers = json_headers();
    let has_authorization = target
        .headers
        .keys()
        .any(|k| k.eq_ignore_ascii_case("authorization"));
    if !has_authorization {
        if !target.username.is_empty() && !target.password.is_empty() {
            headers.push(basic(&target.username, &target.password));
        } else if !target.token.is_empty() || !target.password.is_empty() {
            // Flux's otel notifier: the token, else the password, as a bearer token.
            let token = if target.token.is_empty() {
                &target.password
            } else {
                &target.token
            };
            headers.push(bearer(token));
        }
    }
    headers.extend(target.headers.iter().map(|(k, v)| (k.clone(), v.clone())));
    Request::post(url, headers, &body)
}

/// Flux's markdown post (Zulip, PR comments): severity emoji, `Kind/namespace/name`, the
/// message and the metadata in key order (without `change_request`).
pub(crate) fn markdown_post(event: &Event) -> String {
    let emoji = if is_error(event) { "⚠️" } else { "ℹ️" };
    let mut lines = String::new();
    for (k, v) in event.metadata.iter().filter(|(k, _)| *k != "change_request") {
        lines.push_str(&format!("* `{k}`: {v}\n"));
    }
    format!(
        "## Flux Status\n\n{emoji} {}/{}/{}\n\n{}\n\nMetadata:\n{lines}",
        kind(event),
        namespace(event),
        name(event),
        event.message
    )
}

/// Sentry's SDK identifies itself so in Flux's requests.
const SENTRY_CLIENT: &str = "sentry.go/0.46.2";

/// What Flux's Sentry client sends for an event: an envelope to the DSN's project, an error
/// event for `error`, a transaction (one span) otherwise.
fn sentry_envelope(dsn: &str, environment: &str, event: &Event) -> Result<Request, String> {
    let url = url::Url::parse(dsn).map_err(|e| format!("[Sentry] DsnParseError: invalid url: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("[Sentry] DsnParseError: invalid scheme".into());
    }
    let key = url.username();
    if key.is_empty() {
        return Err("[Sentry] DsnParseError: empty username".into());
    }
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or("[Sentry] DsnParseError: empty host")?;
    let path = url.path().trim_end_matches('/');
    let (prefix, project) = path.rsplit_once('/').unwrap_or(("", path));
    if project.is_empty() {
        return Err("[Sentry] DsnParseError: empty project id".into());
    }
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    let endpoint = format!("{}://{host}{port}{prefix}/api/{project}/envelope/", url.scheme());
    let mut auth = format!("Sentry sentry_version=7, sentry_client={SENTRY_CLIENT}, sentry_key={key}");
    if let Some(secret) = url.password() {
        auth.push_str(&format!(", sentry_secret={secret}"));
    }
    let summary = format!("{}: {}/{}", kind(event), namespace(event), name(event));
    let event_id = random_hex(16);
    let mut payload = json!({"event_id": event_id, "timestamp": event.timestamp, "platform": "go",
        "message": event.message, "transaction": summary, "server_name": event.reporting_controller,
        "sdk": {"name": "sentry.go", "version": "0.46.2"}});
    if !environment.is_empty() {
        payload["environment"] = json!(environment);
    }
    let item_type = if is_error(event) {
        payload["level"] = json!("error");
        payload["contexts"] = json!({"metadata": event.metadata});
        "event"
    } else {
        let (trace_id, span_id) = (random_hex(16), random_hex(8));
        let object = &event.involved_object;
        let mut tags = json!({
            "flux_involved_object_kind": object.kind, "flux_involved_object_namespace": object.namespace,
            "flux_involved_object_name": object.name, "flux_reporting_controller": event.reporting_controller,
            "flux_reporting_instance": event.reporting_instance, "flux_reason": event.reason});
        for (k, v) in &event.metadata {
            tags[k] = json!(v);
        }
        let trace = json!({"trace_id": trace_id, "span_id": span_id, "op": "event", "description": ""});
        payload["type"] = json!("transaction");
        payload["start_timestamp"] = json!(event.timestamp);
        payload["contexts"] = json!({"trace": trace});
        payload["tags"] = tags.clone();
        payload["spans"] = json!([{"trace_id": trace_id, "span_id": span_id, "op": "event", "tags": tags,
            "start_timestamp": event.timestamp, "timestamp": event.timestamp}]);
        "transaction"
    };
    let item = serde_json::to_string(&payload).map_err(|e| e.to_string())?;
    let header = json!({"event_id": event_id, "sent_at": event.timestamp, "dsn": dsn,
        "sdk": {"name": "sentry.go", "version": "0.46.2"}});
    let body = format!(
        "{header}\n{}\n{item}",
        json!({"type": item_type, "length": item.len()})
    );
    Ok(Request {
        method: "POST",
        url: endpoint,
        headers: vec![
            (
                "Content-Type".to_string(),
                "application/x-sentry-envelope".to_string(),
            ),
            ("User-Agent".into(), SENTRY_CLIENT.into()),
            ("X-Sentry-Auth".into(), auth),
        ],
        body: body.into_bytes(),
    })
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

    /// Pub/Sub's publish call, an Event Hubs message signed from a connection string, and an
    /// OTLP span whose trace id is the Alert's and the revision's.
    #[test]
    fn cloud_and_tracing_services_get_their_shapes() {
        let mut pubsub = target("googlepubsub");
        pubsub.address = "proj".into();
        pubsub.channel = "flux".into();
        pubsub.api_endpoint = "https://pubsub.googleapis.com".into();
        pubsub.headers = [("team".to_string(), "web".to_string())].into();
        let r = &requests(&pubsub, &event("info", "ReconciliationSucceeded")).unwrap()[0];
        assert_eq!(
            r.url,
            "https://pubsub.googleapis.com/v1/projects/proj/topics/flux:publish"
        );
        assert!(r.headers.contains(&("Authorization".into(), "Bearer tok".into())));
        let message = &body(r)["messages"][0];
        assert_eq!(message["attributes"]["team"], "web");
        let data = base64::engine::general_purpose::STANDARD
            .decode(message["data"].as_str().unwrap())
            .unwrap();
        assert_eq!(
            serde_json::from_slice::<Value>(&data).unwrap()["reason"],
            "ReconciliationSucceeded"
        );
        pubsub.channel = String::new();
        assert_eq!(
            requests(&pubsub, &event("info", "R")).unwrap_err(),
            "GCP Pub/Sub topic ID cannot be empty"
        );

        let mut hub = target("azureeventhub");
        hub.address = "Endpoint=sb://flux.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey=c2VjcmV0;EntityPath=events".into();
        assert!(
            requests(&hub, &event("info", "R"))
                .unwrap_err()
                .contains("jwt token and SAS authentication cannot be set at the same time")
        );
        hub.token.clear();
        let r = &requests(&hub, &event("error", "HealthCheckFailed")).unwrap()[0];
        assert_eq!(
            r.url,
            "https://flux.servicebus.windows.net/events/messages?timeout=60&api-version=2014-01"
        );
        let authorization = &r.headers[0].1;
        assert!(
            authorization.starts_with(
                "SharedAccessSignature sr=https%3a%2f%2fflux.servicebus.windows.net%2fevents&sig="
            ) && authorization.ends_with("&skn=send"),
            "{authorization}"
        );
        assert_eq!(body(r)["reason"], "HealthCheckFailed");
        hub.address =
            "Endpoint=sb://flux.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey=k".into();
        assert!(
            requests(&hub, &event("info", "R"))
                .unwrap_err()
                .contains("does not contain an EntityPath")
        );

        let mut otel = target("otel");
        otel.address = "http://collector:4318".into();
        otel.alert = ("apps".into(), "on-call".into(), "alert-uid".into());
        let r = &requests(&otel, &event("error", "HealthCheckFailed")).unwrap()[0];
        assert_eq!(r.url, "http://collector:4318/v1/traces");
        let span = &body(r)["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
        let revision = format!("main@sha1:{}", "a".repeat(40));
        let trace = sha2::Sha256::digest(format!("alert-uid:{revision}").as_bytes());
        assert_eq!(span["traceId"], hex::encode(&trace[..16]));
        assert_eq!(span["name"], "Kustomization: apps/web");
        assert_eq!(
            span["status"],
            json!({"code": 2, "message": "Health check failed"})
        );
        assert_eq!(span["startTimeUnixNano"], "1796205600000000000");
        assert_eq!(
            body(r)["resourceSpans"][0]["resource"]["attributes"][0]["value"]["stringValue"],
            "apps/on-call"
        );
    }

    /// Lark, Zulip, Zoom and incident.io as Flux's notifiers send them.
    #[test]
    fn more_chat_and_incident_services_get_their_shapes() {
        let r = &requests(&target("lark"), &event("error", "HealthCheckFailed")).unwrap()[0];
        let card = &body(r)["card"];
        assert_eq!(card["header"]["title"]["content"], "🚨 kustomization/web.apps");
        assert_eq!(card["header"]["template"], "red");
        assert_eq!(
            card["elements"][0]["text"]["content"],
            format!(
                "**Health check failed**\n\nrevision: main@sha1:{}\nsummary: prod\n",
                "a".repeat(40)
            )
        );

        let mut zulip = target("zulip");
        zulip.address = "https://org.zulipchat.com/ignored".into();
        zulip.channel = "deploys/apps/web".into();
        zulip.username = "bot@org".into();
        zulip.password = "key".into();
        let r = &requests(&zulip, &event("info", "ReconciliationSucceeded")).unwrap()[0];
        assert_eq!(r.url, "https://org.zulipchat.com/api/v1/messages");
        assert!(
            r.headers
                .contains(&("Authorization".into(), "Basic Ym90QG9yZzprZXk=".into()))
        );
        let form: Vec<(String, String)> = url::form_urlencoded::parse(&r.body).into_owned().collect();
        assert_eq!(form[1], ("to".into(), "deploys".into()));
        assert_eq!(form[2], ("topic".into(), "apps/web".into()));
        assert_eq!(
            form[0].1,
            format!(
                "## Flux Status\n\nℹ️ Kustomization/apps/web\n\nHealth check failed\n\nMetadata:\n* `revision`: main@sha1:{}\n* `summary`: prod\n",
                "a".repeat(40)
            )
        );
        zulip.channel = "deploys".into();
        assert!(
            requests(&zulip, &event("info", "R"))
                .unwrap_err()
                .contains("<channel>/<topic>")
        );

        let r = &requests(&target("zoom"), &event("error", "R")).unwrap()[0];
        assert_eq!(r.url, "https://hooks.example/path?format=full&x=1");
        assert!(r.headers.contains(&("Authorization".into(), "tok".into())));
        assert_eq!(body(r)["content"]["head"]["sub_head"]["text"], "error");
        assert_eq!(body(r)["content"]["body"][1]["items"][1]["key"], "summary");

        let r = &requests(&target("incident.io"), &event("error", "HealthCheckFailed")).unwrap()[0];
        assert_eq!(
            body(r),
            json!({"title": "kustomization/web.apps: HealthCheckFailed", "status": "firing",
                "deduplication_key": "u-1", "description": "Health check failed",
                "metadata": {"reason": "HealthCheckFailed", "reportingController": "kustomize-controller",
                    "revision": format!("main@sha1:{}", "a".repeat(40)), "severity": "error", "summary": "prod"}})
        );
        assert!(
            requests(&target("incident.io"), &event("info", "Progressing"))
                .unwrap()
                .is_empty()
        );
    }

    /// Bitbucket Cloud, Bitbucket Server and Azure DevOps commit statuses.
    #[test]
    fn bitbucket_and_azure_devops_commit_statuses() {
        let sha = "a".repeat(40);
        let mut cloud = target("bitbucket");
        cloud.address = "https://bitbucket.org/acme/web.git".into();
        cloud.token = "user:app-password".into();
        let r = &requests(&cloud, &event("error", "HealthCheckFailed")).unwrap()[0];
        assert_eq!(
            r.url,
            format!("https://api.bitbucket.org/2.0/repositories/acme/web/commit/{sha}/statuses/build")
        );
        assert_eq!(
            body(r),
            json!({"key": sha1_hex("kustomization/web/0c9c2e41"), "url": "https://bitbucket.org",
                "state": "FAILED", "name": "kustomization/web", "description": "health check failed"})
        );
        cloud.token = "no-colon".into();
        assert!(
            requests(&cloud, &event("error", "R"))
                .unwrap_err()
                .contains("<user>:<password>")
        );

        let mut server = target("bitbucketserver");
        server.address = "https://git.example:7990/context/scm/PROJ/web.git".into();
        let r = &requests(&server, &event("info", "ReconciliationSucceeded")).unwrap()[0];
        assert_eq!(
            r.url,
            format!(
                "https://git.example:7990/context/rest/api/latest/projects/PROJ/repos/web/commits/{sha}/builds"
            )
        );
        assert_eq!(body(r)["name"], "kustomization/web [reconciliation succeeded]");
        assert_eq!(body(r)["state"], "SUCCESSFUL");
        assert!(r.headers.contains(&("Authorization".into(), "Bearer tok".into())));
        server.address = "https://git.example/PROJ/web.git".into();
        assert!(
            requests(&server, &event("info", "R"))
                .unwrap_err()
                .contains("not http(s) git clone url")
        );

        let mut azure = target("azuredevops");
        azure.address = "https://dev.azure.com/Acme/Shop/_git/web".into();
        let r = &requests(&azure, &event("error", "HealthCheckFailed")).unwrap()[0];
        assert_eq!(
            r.url,
            format!("https://dev.azure.com/acme/Shop/_apis/git/repositories/web/commits/{sha}/statuses")
        );
        assert_eq!(
            body(r),
            json!({"context": {"genre": "fluxcd:prod", "name": "kustomization/web/0c9c2e41"},
                "description": "health check failed", "state": "error"})
        );
        assert!(
            r.headers
                .contains(&("Authorization".into(), "Basic OnRvaw==".into()))
        );
        for kind in ["bitbucket", "bitbucketserver", "azuredevops"] {
            assert!(crate::providers::COMMIT_STATUS_TYPES.contains(&kind));
        }
    }

    /// Sentry: an envelope to the DSN's project; an error event for errors, a transaction
    /// otherwise.
    #[test]
    fn sentry_gets_an_envelope() {
        let mut sentry = target("sentry");
        sentry.address = "https://public@o1.ingest.example:8443/prefix/42".into();
        sentry.channel = "prod".into();
        let r = &requests(&sentry, &event("error", "HealthCheckFailed")).unwrap()[0];
        assert_eq!(r.url, "https://o1.ingest.example:8443/prefix/api/42/envelope/");
        assert!(
            r.headers
                .iter()
                .any(|(k, v)| k == "X-Sentry-Auth" && v.ends_with("sentry_key=public"))
        );
        let text = String::from_utf8(r.body.clone()).unwrap();
        let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines[1]["type"], "event");
        assert_eq!(lines[1]["length"], text.lines().nth(2).unwrap().len());
        assert_eq!(lines[2]["level"], "error");
        assert_eq!(lines[2]["environment"], "prod");
        assert_eq!(lines[2]["transaction"], "Kustomization: apps/web");
        assert_eq!(lines[2]["contexts"]["metadata"]["summary"], "prod");
        let r = &requests(&sentry, &event("info", "ReconciliationSucceeded")).unwrap()[0];
        let text = String::from_utf8(r.body.clone()).unwrap();
        let item: Value = serde_json::from_str(text.lines().nth(2).unwrap()).unwrap();
        assert_eq!(item["type"], "transaction");
        assert_eq!(item["tags"]["flux_reason"], "ReconciliationSucceeded");
        sentry.address = "https://o1.ingest.example/42".into();
        assert!(
            requests(&sentry, &event("info", "R"))
                .unwrap_err()
                .contains("empty username")
        );
    }

    #[test]
    fn reasons_are_split_into_words_as_flux_splits_them() {
        assert_eq!(
            reason_words("ReconciliationSucceeded"),
            "reconciliation succeeded"
        );
        assert_eq!(reason_words("HTTPError"), "http error");
        assert_eq!(reason_words("Retry3Times"), "retry 3 times");
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
