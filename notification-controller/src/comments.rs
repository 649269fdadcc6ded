//! The change-request comment providers (`githubpullrequestcomment`, `giteapullrequestcomment`,
//! `gitlabmergerequestcomment`): one comment per object and Provider on the pull or merge
//! request the event names (`change_request` metadata), found again by a hidden marker and
//! edited in place, as Flux's notifiers keep it. Unlike the other types, each send is a short
//! conversation: who the token is, the request's first page of comments, then an edit or a
//! new comment.

use serde_json::{Value, json};
use std::time::Duration;

use crate::event::Event;
use crate::providers::Target;
use crate::services::{git_address, github_api, markdown_post};

/// The provider types served here.
pub const TYPES: [&str; 3] = [
    "githubpullrequestcomment",
    "giteapullrequestcomment",
    "gitlabmergerequestcomment",
];

/// The REST shape of one forge: where its calls go and how they authenticate.
struct Forge {
    headers: Vec<(&'static str, String)>,
    /// `GET`: the token's user.
    user: String,
    /// The JSON field of the user's name in `user`'s answer and in a comment's author.
    login: &'static str,
    /// The JSON field of a comment's author.
    author: &'static str,
    /// `GET`: the first page of comments; `POST`: a new one.
    comments: String,
    list_query: &'static str,
    /// The URL editing comment `id`, and the method.
    edit: Box<dyn Fn(u64) -> String + Send>,
    edit_method: reqwest::Method,
    marker_prefix: &'static str,
}

fn forge(target: &Target, number: u64) -> Result<Forge, String> {
    if target.uid.is_empty() {
        return Err("provider UID cannot be empty".into());
    }
    let token = if target.token.is_empty() {
        target.password.clone()
    } else {
        target.token.clone()
    };
    let (host, id) =
        git_address(&target.address).map_err(|e| format!("failed parsing URL {:?}: {e}", target.address))?;
    let two_parts = |id: &str| id.split('/').count() == 2;
    match target.provider_type.as_str() {
        "githubpullrequestcomment" => {
            if token.is_empty() {
                return Err("github token or github app details must be specified".into());
            }
            if !two_parts(&id) {
                return Err(format!("invalid repository id: '{id}'"));
            }
            let api = github_api(&host);
            let repo = format!("{api}repos/{id}");
            Ok(Forge {
                headers: vec![
                    ("Authorization", format!("Bearer {token}")),
                    ("Accept", "application/vnd.github.v3+json".into()),
                    ("X-GitHub-Api-Version", "2022-11-28".into()),
                ],
                user: format!("{api}user"),
                login: "login",
                author: "user",
                comments: format!("{repo}/issues/{number}/comments"),
                list_query: "direction=asc&per_page=100&sort=created",
                edit: Box::new(move |comment| format!("{repo}/issues/comments/{comment}")),
                edit_method: reqwest::Method::PATCH,
                marker_prefix: "flux-pr-comment-key",
            })
        }
        "giteapullrequestcomment" => {
            if token.is_empty() {
                return Err("gitea token cannot be empty".into());
            }
            if !two_parts(&id) {
                return Err(format!("invalid repository id {id:?}"));
            }
            let repo = format!("{host}/api/v1/repos/{id}");
            Ok(Forge {
                headers: vec![("Authorization", format!("token {token}"))],
                user: format!("{host}/api/v1/user"),
                login: "login",
                author: "user",
                comments: format!("{repo}/issues/{number}/comments"),
                list_query: "limit=100&page=1",
                edit: Box::new(move |comment| format!("{repo}/issues/comments/{comment}")),
                edit_method: reqwest::Method::PATCH,
                marker_prefix: "flux-pr-comment-key",
            })
        }
        "gitlabmergerequestcomment" => {
            if token.is_empty() {
                return Err("gitlab token cannot be empty".into());
            }
            let project = id.replace('/', "%2F").replace('.', "%2E");
            let notes = format!("{host}/api/v4/projects/{project}/merge_requests/{number}/notes");
            let edit_base = notes.clone();
            Ok(Forge {
                headers: vec![("PRIVATE-TOKEN", token), ("Accept", "application/json".into())],
                user: format!("{host}/api/v4/user"),
                login: "username",
                author: "author",
                comments: notes,
                list_query: "order_by=created_at&per_page=100&sort=asc",
                edit: Box::new(move |note| format!("{edit_base}/{note}")),
                edit_method: reqwest::Method::PUT,
                marker_prefix: "flux-mr-comment-key",
            })
        }
        other => Err(format!(
            "provider type '{other}' is not a change-request comment type"
        )),
    }
}

/// The comment Flux writes: its marker (Provider UID and object), then the markdown post.
pub fn comment(target: &Target, event: &Event, marker_prefix: &str) -> (String, String) {
    let object = &event.involved_object;
    let key = format!(
        "{}/{}/{}/{}",
        target.uid,
        object.kind.as_deref().unwrap_or_default(),
        object.namespace.as_deref().unwrap_or_default(),
        object.name.as_deref().unwrap_or_default()
    );
    let marker = format!("<!-- {marker_prefix}:{key} -->");
    let body = format!("{marker}\n\n{}", markdown_post(event));
    (marker, body)
}

/// Why a send failed, and whether trying again may help (the network, a 5xx, a 429).
#[derive(Debug)]
pub struct SendError {
    pub retry: bool,
    pub message: String,
}

impl SendError {
    fn fatal(message: String) -> Self {
        Self {
            retry: false,
            message,
        }
    }

    fn context(self, what: String) -> Self {
        Self {
            retry: self.retry,
            message: format!("{what}: {}", self.message),
        }
    }
}

/// Sends `event` as a comment on its change request: the comment of this Provider and object
/// is edited if the token's user wrote one on the first page, else a new one is made.
pub async fn send(
    http: &reqwest::Client,
    target: &Target,
    event: &Event,
    timeout: Duration,
) -> Result<(), SendError> {
    let number = event
        .metadata
        .get("change_request")
        .filter(|n| !n.is_empty())
        .ok_or_else(|| SendError::fatal(format!("missing {:?} metadata key", "change_request")))?;
    let number: u64 = number.parse().map_err(|e| {
        SendError::fatal(format!(
            "invalid {:?} metadata value {number:?}: {e}",
            "change_request"
        ))
    })?;
    let forge = forge(target, number).map_err(SendError::fatal)?;
    let call = |method: reqwest::Method, url: &str, body: Option<&Value>| {
        let mut request = http.request(method, url).timeout(timeout);
        for (k, v) in &forge.headers {
            request = request.header(*k, v);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        async move {
            let response = request.send().await.map_err(|e| SendError {
                retry: true,
                message: e.without_url().to_string(),
            })?;
            let status = response.status();
            let text = response.text().await.unwrap_or_default();
            // 202 is a failure too, as go-github has it (`AcceptedError`): the write is not
            // done yet, and Flux's notifier reports it.
            if !status.is_success() || status == reqwest::StatusCode::ACCEPTED {
                return Err(SendError {
                    retry: status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS,
                    message: format!("{status}: {}", text.chars().take(200).collect::<String>()),
                });
            }
            Ok::<Value, SendError>(serde_json::from_str(&text).unwrap_or(Value::Null))
        }
    };
    let login = match &target.login {
        Some(login) => login.clone(),
        None => {
            let user = call(reqwest::Method::GET, &forge.user, None)
                .await
                .map_err(|e| e.context("failed to get authenticated user info".into()))?;
            user[forge.login].as_str().unwrap_or_default().to_string()
        }
    };
    let (marker, body) = comment(target, event, forge.marker_prefix);
    let (noun, what) = if forge.marker_prefix == "flux-mr-comment-key" {
        ("merge request", "note")
    } else {
        ("pull request", "comment")
    };
    let listed = call(
        reqwest::Method::GET,
        &format!("{}?{}", forge.comments, forge.list_query),
        None,
    )
    .await
    .map_err(|e| e.context(format!("failed to list {noun} {what}s")))?;
    let existing = listed.as_array().into_iter().flatten().find(|c| {
        c[forge.author][forge.login].as_str() == Some(login.as_str())
            && c["body"].as_str().is_some_and(|b| b.contains(&marker))
    });
    let payload = json!({"body": body});
    match existing.and_then(|c| c["id"].as_u64()) {
        Some(id) => call(forge.edit_method.clone(), &(forge.edit)(id), Some(&payload))
            .await
            .map_err(|e| e.context(format!("failed to update {noun} {what}")))?,
        None => call(reqwest::Method::POST, &forge.comments, Some(&payload))
            .await
            .map_err(|e| e.context(format!("failed to create {noun} {what}")))?,
    };
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use axum::{
        Router,
        extract::{Path, State},
        http::Uri,
        routing::get,
    };
    use std::sync::{Arc, Mutex};

    /// A forge's comments in memory, behind the routes the three types call.
    #[derive(Clone, Default)]
    struct Comments(Arc<Mutex<Vec<Value>>>);

    async fn serve(author: &'static str, login: &'static str) -> (String, Comments) {
        let comments = Comments::default();
        let other = json!({"id": 1, "body": "<!-- flux-pr-comment-key:uid-1/Kustomization/apps/web -->", author: {login: "someone-else"}});
        comments.0.lock().unwrap().push(other);
        let list =
            |State(c): State<Comments>| async move { Value::Array(c.0.lock().unwrap().clone()).to_string() };
        let create = move |State(c): State<Comments>, body: axum::body::Bytes| async move {
            let body: Value = serde_json::from_slice(&body).unwrap();
            let mut all = c.0.lock().unwrap();
            let id = all.len() as u64 + 1;
            all.push(json!({"id": id, "body": body["body"], author: {login: "flux-bot"}}));
            json!({"id": id}).to_string()
        };
        let edit = |State(c): State<Comments>, Path(params): Path<Vec<String>>, body: axum::body::Bytes| async move {
            let body: Value = serde_json::from_slice(&body).unwrap();
            let id: u64 = params.last().unwrap().parse().unwrap();
            let mut all = c.0.lock().unwrap();
            let comment = all.iter_mut().find(|c| c["id"] == id).unwrap();
            comment["body"] = body["body"].clone();
            comment["edited"] = json!(true);
            comment.to_string()
        };
        let user = move |_: Uri| async move { json!({login: "flux-bot"}).to_string() };
        let app = Router::new()
            .route("/api/v3/user", get(user))
            .route("/api/v1/user", get(user))
            .route("/api/v4/user", get(user))
            .route(
                "/api/v3/repos/{o}/{r}/issues/{n}/comments",
                get(list).post(create),
            )
            .route(
                "/api/v3/repos/{o}/{r}/issues/comments/{id}",
                axum::routing::patch(edit),
            )
            .route(
                "/api/v1/repos/{o}/{r}/issues/{n}/comments",
                get(list).post(create),
            )
            .route(
                "/api/v1/repos/{o}/{r}/issues/comments/{id}",
                axum::routing::patch(edit),
            )
            .route(
                "/api/v4/projects/{p}/merge_requests/{n}/notes",
                get(list).post(create),
            )
            .route(
                "/api/v4/projects/{p}/merge_requests/{n}/notes/{id}",
                axum::routing::put(edit),
            )
            .with_state(comments.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, comments)
    }

    fn event(message: &str) -> Event {
        serde_json::from_value(json!({
            "involvedObject": {"kind": "Kustomization", "name": "web", "namespace": "apps"},
            "severity": "error", "message": message, "reason": "HealthCheckFailed",
            "metadata": {"change_request": "7", "revision": "main@sha1:abc"},
            "reportingController": "kustomize-controller"}))
        .unwrap()
    }

    /// The first event makes the comment, the next edits it; a comment by someone else with
    /// the same marker is left alone.
    #[tokio::test]
    async fn one_comment_per_object_is_kept_up_to_date() {
        driftless_artifact::install_crypto_provider();
        for (provider_type, author, login) in [
            ("githubpullrequestcomment", "user", "login"),
            ("giteapullrequestcomment", "user", "login"),
            ("gitlabmergerequestcomment", "author", "username"),
        ] {
            let (url, comments) = serve(author, login).await;
            let target = Target {
                provider_type: provider_type.into(),
                address: format!("{url}/acme/web"),
                token: "t".into(),
                uid: "uid-1".into(),
                ..Target::default()
            };
            let http = reqwest::Client::new();
            send(&http, &target, &event("first"), Duration::from_secs(5))
                .await
                .unwrap();
            send(&http, &target, &event("second"), Duration::from_secs(5))
                .await
                .unwrap();
            let all = comments.0.lock().unwrap().clone();
            assert_eq!(all.len(), 2, "{provider_type}: {all:?}");
            let ours = &all[1];
            assert_eq!(ours["edited"], true, "{provider_type}");
            let body = ours["body"].as_str().unwrap();
            let prefix = if provider_type.starts_with("gitlab") {
                "flux-mr-comment-key"
            } else {
                "flux-pr-comment-key"
            };
            assert!(
                body.starts_with(&format!("<!-- {prefix}:uid-1/Kustomization/apps/web -->\n\n## Flux Status\n\n⚠️ Kustomization/apps/web\n\nsecond\n")),
                "{provider_type}: {body}"
            );
            assert!(!all[0]["body"].as_str().unwrap().contains("second"));
        }
        let no_request = Target {
            provider_type: "giteapullrequestcomment".into(),
            address: "http://127.0.0.1:1/acme/web".into(),
            token: "t".into(),
            uid: "u".into(),
            ..Target::default()
        };
        let mut plain = event("x");
        plain.metadata.remove("change_request");
        let refused = send(
            &reqwest::Client::new(),
            &no_request,
            &plain,
            Duration::from_secs(1),
        )
        .await;
        let refused = refused.unwrap_err();
        assert_eq!(refused.message, "missing \"change_request\" metadata key");
        assert!(!refused.retry);
    }
}
