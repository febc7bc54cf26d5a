use super::*;
use axum::body::Body;
use axum::http::{header, Method};
use std::sync::Mutex;

/// A node that refuses without an `authorization` header, refuses the command nonce `used`, and records what it
/// was asked to do.
#[derive(Default)]
struct Fake {
    acted: Mutex<Vec<(Action, String)>>,
    pushed: Mutex<Vec<String>>,
}

impl NodeApi for Fake {
    type Conn = ();

    async fn authorize(&self, _conn: Option<()>, req: Request, next: Next) -> Response {
        if req.uri().path() != "/healthz" && !req.headers().contains_key(header::AUTHORIZATION) {
            return reply::error(StatusCode::UNAUTHORIZED, "unauthenticated", "no credential");
        }
        next.run(req).await
    }
    fn status(&self) -> Response {
        Json(keel_config::status::NodeStatus::default()).into_response()
    }
    fn running_config(&self) -> RunningConfig {
        RunningConfig::default()
    }
    async fn push_config(&self, push: Push) -> Result<ConfigAccepted, Failure> {
        self.pushed.lock().unwrap().push(push.config);
        match push.signature.is_empty() {
            true => Err(Failure::Refused(Refusal::new("unsigned", "no signature"))),
            false => Ok(ConfigAccepted { accepted: true, converged: true, generation: 7, waiting_rollout: None }),
        }
    }
    async fn check_command(&self, cmd: SignedCommand, _action: Action) -> Result<String, Failure> {
        match cmd.command.as_str() {
            "used" => Err(Failure::Refused(Refusal::new("replayed", "nonce used was used already"))),
            "stuck" => Err(Failure::Unavailable("the command could not be checked")),
            _ => Ok("ops".into()),
        }
    }
    fn act(&self, action: Action, signer: &str) {
        self.acted.lock().unwrap().push((action, signer.into()));
    }
    fn logs(&self, follow: bool, _conn: Option<()>) -> Response {
        format!("follow={follow}\n").into_response()
    }
    fn metrics(&self) -> Response {
        "keel_uptime_seconds 1\n".into_response()
    }
    async fn upgrade(&self, q: UpgradeQuery, _body: Body) -> Response {
        format!("sha256={:?}\n", q.sha256).into_response()
    }
}

async fn call(node: &Arc<Fake>, method: Method, uri: &str, body: &str) -> (u16, String) {
    let mut router = router(node.clone());
    let req = axum::http::Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, "Keel-SSHSIG x")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let r = tower_service::Service::call(&mut router, req).await.unwrap();
    let status = r.status().as_u16();
    let bytes = axum::body::to_bytes(r.into_body(), usize::MAX).await.unwrap();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[tokio::test]
async fn every_endpoint_reaches_the_node_and_unknown_paths_are_404_with_a_reason() {
    let node = Arc::new(Fake::default());
    assert_eq!(call(&node, Method::GET, "/healthz", "").await, (200, "ok\n".into()));
    assert_eq!(call(&node, Method::GET, "/v1/logs?follow=1", "").await, (200, "follow=true\n".into()));
    assert_eq!(call(&node, Method::GET, "/v1/logs", "").await, (200, "follow=false\n".into()));
    assert_eq!(call(&node, Method::GET, "/metrics", "").await.1, "keel_uptime_seconds 1\n");
    assert_eq!(call(&node, Method::PUT, "/v1/upgrade?sha256=ab", "").await.1, "sha256=Some(\"ab\")\n");
    let (status, running) = call(&node, Method::GET, "/v1/config", "").await;
    assert_eq!((status, json(&running)), (200, serde_json::json!({"generation": null, "config": null})));
    assert_eq!(json(&call(&node, Method::GET, "/v1/status", "").await.1)["machine_id"], "");
    let (status, body) = call(&node, Method::GET, "/v1/nothing", "").await;
    assert_eq!((status, json(&body)["error"].as_str()), (404, Some("not-found")));
    assert_eq!(call(&node, Method::DELETE, "/v1/config", "").await.0, 405);
}

#[tokio::test]
async fn config_pushes_decode_or_get_a_4xx_with_the_reason_and_refusals_take_the_table_status() {
    let node = Arc::new(Fake::default());
    let (status, body) = call(&node, Method::PUT, "/v1/config", r#"{"config": "a", "signature": "s"}"#).await;
    assert_eq!((status, json(&body)), (200, serde_json::json!({"accepted": true, "generation": 7, "converged": true})));
    let (status, body) = call(&node, Method::PUT, "/v1/config", r#"{"config": "b"}"#).await;
    let want = serde_json::json!({"accepted": false, "reason": "unsigned", "detail": "no signature"});
    assert_eq!((status, json(&body)), (403, want));
    let (status, body) = call(&node, Method::PUT, "/v1/config", "{not json").await;
    assert_eq!((status, json(&body)["error"].as_str()), (400, Some("bad-request")));
    assert!(json(&body)["detail"].as_str().unwrap().contains("JSON"), "{body}");
    assert_eq!(call(&node, Method::PUT, "/v1/config", r#"{"signature": "s"}"#).await.0, 422);
    let big = format!(r#"{{"config": "{}"}}"#, "x".repeat(MAX_BODY));
    let (status, body) = call(&node, Method::PUT, "/v1/config", &big).await;
    assert_eq!((status, json(&body)["error"].as_str()), (413, Some("bad-request")));
    assert_eq!(*node.pushed.lock().unwrap(), ["a", "b"], "only decoded pushes reach the node");
}

#[tokio::test]
async fn a_checked_command_is_accepted_then_carried_out_and_a_refused_one_never_is() {
    let node = Arc::new(Fake::default());
    let (status, body) = call(&node, Method::POST, "/v1/poweroff", r#"{"command": "ok", "signature": "s"}"#).await;
    assert_eq!((status, json(&body)), (202, serde_json::json!({"accepted": true, "action": "poweroff"})));
    let (status, body) = call(&node, Method::POST, "/v1/reboot", r#"{"command": "used", "signature": "s"}"#).await;
    assert_eq!((status, json(&body)["reason"].as_str()), (409, Some("replayed")));
    let (status, body) = call(&node, Method::POST, "/v1/reboot", r#"{"command": "stuck"}"#).await;
    assert_eq!((status, json(&body)["error"].as_str()), (503, Some("unavailable")));
    assert_eq!(call(&node, Method::POST, "/v1/reboot", r#"{"command": 1}"#).await.0, 422);
    assert_eq!(*node.acted.lock().unwrap(), [(Action::Poweroff, "ops".to_string())]);
}

#[tokio::test]
async fn the_credential_check_runs_before_any_handler() {
    let node = Arc::new(Fake::default());
    let mut router = router(node.clone());
    let req = axum::http::Request::builder()
        .method(Method::POST)
        .uri("/v1/reboot")
        .body(Body::from(r#"{"command": "ok", "signature": "s"}"#))
        .unwrap();
    let r = tower_service::Service::call(&mut router, req).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(node.acted.lock().unwrap().is_empty());
}
