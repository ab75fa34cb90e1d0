//! Bad requests, a full queue, keys and addresses: each refused with a 4xx
//! that says why, and the server keeps serving.

use crate::support::*;
use dit::serve::{ServeConfig, ServedModel, Server};
use serde_json::json;

const KEY: &str = "test-key-1234";

#[test]
fn bad_requests_get_4xx_with_their_reason_and_the_server_still_serves() {
    let model = test_model(tiny_config());
    let server = start(
        &model,
        ServeConfig {
            api_key: Some(KEY.into()),
            ..loopback_config()
        },
    );
    let base = server.url();
    let generations = format!("{base}/v1/images/generations");
    let huge = format!("{{\"prompt\": \"{}\"}}", "x".repeat(100_000));
    // (what, method, url, body, key, status, param, fragment of the message)
    let table: Vec<(
        &str,
        &str,
        String,
        Option<String>,
        Option<&str>,
        u16,
        Option<&str>,
        &str,
    )> = vec![
        (
            "unknown class",
            "POST",
            generations.clone(),
            Some(r#"{"prompt": "dres"}"#.into()),
            Some(KEY),
            400,
            Some("prompt"),
            "unknown class 'dres'; closest: 3 (dress)",
        ),
        (
            "class id out of range",
            "POST",
            generations.clone(),
            Some(r#"{"prompt": "17"}"#.into()),
            Some(KEY),
            400,
            Some("prompt"),
            "class 17 out of range",
        ),
        (
            "missing prompt",
            "POST",
            generations.clone(),
            Some(r#"{"n": 1}"#.into()),
            Some(KEY),
            400,
            Some("prompt"),
            "missing",
        ),
        (
            "n = 0",
            "POST",
            generations.clone(),
            Some(r#"{"prompt": "dress", "n": 0}"#.into()),
            Some(KEY),
            400,
            Some("n"),
            "0 is out of range: allowed 1..=8",
        ),
        (
            "n too large",
            "POST",
            generations.clone(),
            Some(r#"{"prompt": "dress", "n": 9}"#.into()),
            Some(KEY),
            400,
            Some("n"),
            "9 is out of range: allowed 1..=8",
        ),
        (
            "n not an integer",
            "POST",
            generations.clone(),
            Some(r#"{"prompt": "dress", "n": 1.5}"#.into()),
            Some(KEY),
            400,
            Some("n"),
            "expected an integer",
        ),
        (
            "steps = 0",
            "POST",
            generations.clone(),
            Some(r#"{"prompt": "dress", "steps": 0}"#.into()),
            Some(KEY),
            400,
            Some("steps"),
            "0 is out of range: allowed 2..=1000",
        ),
        (
            "steps beyond the limit",
            "POST",
            generations.clone(),
            Some(r#"{"prompt": "dress", "steps": 5000}"#.into()),
            Some(KEY),
            400,
            Some("steps"),
            "5000 is out of range",
        ),
        (
            "guidance NaN",
            "POST",
            generations.clone(),
            Some(r#"{"prompt": "dress", "guidance_scale": NaN}"#.into()),
            Some(KEY),
            400,
            None,
            "not valid JSON",
        ),
        (
            "guidance \"NaN\"",
            "POST",
            generations.clone(),
            Some(r#"{"prompt": "dress", "guidance_scale": "NaN"}"#.into()),
            Some(KEY),
            400,
            Some("guidance_scale"),
            "expected a finite number",
        ),
        (
            "guidance too large",
            "POST",
            generations.clone(),
            Some(r#"{"prompt": "dress", "guidance_scale": 1e6}"#.into()),
            Some(KEY),
            400,
            Some("guidance_scale"),
            "beyond the limit",
        ),
        (
            "unknown sampler",
            "POST",
            generations.clone(),
            Some(r#"{"prompt": "dress", "sampler": "euler"}"#.into()),
            Some(KEY),
            400,
            Some("sampler"),
            "expected \"ddpm\", \"ddim\" or \"dpm++\"",
        ),
        (
            "unknown response format",
            "POST",
            generations.clone(),
            Some(r#"{"prompt": "dress", "response_format": "png"}"#.into()),
            Some(KEY),
            400,
            Some("response_format"),
            "expected \"b64_json\" or \"url\"",
        ),
        (
            "wrong size",
            "POST",
            generations.clone(),
            Some(r#"{"prompt": "dress", "size": "256x256"}"#.into()),
            Some(KEY),
            400,
            Some("size"),
            "makes 8x8 images only",
        ),
        (
            "negative seed",
            "POST",
            generations.clone(),
            Some(r#"{"prompt": "dress", "seed": -1}"#.into()),
            Some(KEY),
            400,
            Some("seed"),
            "expected an integer",
        ),
        (
            "unknown field",
            "POST",
            generations.clone(),
            Some(r#"{"prompt": "dress", "guidance": 2}"#.into()),
            Some(KEY),
            400,
            Some("guidance"),
            "unknown field",
        ),
        (
            "malformed JSON",
            "POST",
            generations.clone(),
            Some(r#"{"prompt": "dress""#.into()),
            Some(KEY),
            400,
            None,
            "not valid JSON",
        ),
        (
            "not an object",
            "POST",
            generations.clone(),
            Some("[1, 2]".into()),
            Some(KEY),
            400,
            None,
            "must be a JSON object",
        ),
        (
            "huge body",
            "POST",
            generations.clone(),
            Some(huge),
            Some(KEY),
            413,
            None,
            "larger than the limit of 16384 bytes",
        ),
        (
            "wrong key",
            "POST",
            generations.clone(),
            Some(r#"{"prompt": "dress"}"#.into()),
            Some("nope"),
            401,
            None,
            "wrong API key",
        ),
        (
            "no key",
            "GET",
            format!("{base}/v1/models"),
            None,
            None,
            401,
            None,
            "needs an API key",
        ),
        (
            "unknown job",
            "GET",
            format!("{base}/v1/jobs/0123"),
            None,
            Some(KEY),
            404,
            None,
            "no job '0123'",
        ),
        (
            "path in a job id",
            "GET",
            format!("{base}/v1/jobs/..%2F..%2Fetc%2Fpasswd/images/0.png"),
            None,
            Some(KEY),
            404,
            None,
            "no job '../../etc/passwd'",
        ),
        (
            "cancel an unknown job",
            "DELETE",
            format!("{base}/v1/jobs/42"),
            None,
            Some(KEY),
            404,
            None,
            "no job '42'",
        ),
        (
            "unknown endpoint",
            "GET",
            format!("{base}/v1/engines"),
            None,
            Some(KEY),
            404,
            None,
            "no such endpoint: GET /v1/engines",
        ),
    ];
    for (what, method, url, body, key, status, param, fragment) in &table {
        let answer = send(method, url, body.as_ref().map(|b| b.as_bytes()), *key);
        assert_eq!(
            answer.status,
            *status,
            "{what}: {}",
            String::from_utf8_lossy(&answer.body)
        );
        let message = answer.error_message();
        assert!(
            message.contains(fragment),
            "{what}: '{message}' lacks '{fragment}'"
        );
        assert_eq!(answer.json()["error"]["param"].as_str(), *param, "{what}");
        println!("{what}: {status} {message}");
    }
    assert_eq!(
        get(&format!("{base}/health")).json()["jobs"]["succeeded"],
        0
    );
    let ok = send(
        "POST",
        &generations,
        Some(br#"{"prompt": "dress", "steps": 4}"#),
        Some(KEY),
    );
    assert_eq!(ok.status, 200, "{}", String::from_utf8_lossy(&ok.body));
    assert_eq!(ok.json()["data"][0]["class_name"], "dress");
    // The page and the health check need no key.
    assert_eq!(get(&format!("{base}/health")).json()["auth_required"], true);
    assert_eq!(get(&format!("{base}/")).status, 200);
}

#[test]
fn a_full_queue_answers_429_with_retry_after() {
    let model = test_model(slow_config());
    let server = start(
        &model,
        ServeConfig {
            queue_capacity: 1,
            ..loopback_config()
        },
    );
    let base = server.url();
    let long = json!({"prompt": "coat", "n": 8, "steps": 1000, "sampler": "ddim"});
    let running = submit(&base, &long);
    wait_running(&base, &running);
    let waiting = submit(&base, &long);
    let refused = post_json(&format!("{base}/v1/jobs"), &long);
    assert_eq!(refused.status, 429);
    let retry: u64 = refused
        .retry_after
        .as_deref()
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!(retry >= 1, "Retry-After {retry}");
    assert_eq!(refused.json()["error"]["type"], "rate_limit_error");
    assert!(refused
        .error_message()
        .contains("the queue is full (1 jobs waiting)"));
    let health = get(&format!("{base}/health")).json();
    assert_eq!(health["jobs"]["rejected"], 1);
    assert_eq!(health["queue"]["waiting"], 1);
    for id in [&waiting, &running] {
        assert_eq!(
            send("DELETE", &format!("{base}/v1/jobs/{id}"), None, None).status,
            200
        );
    }
    let ok = post_json(
        &format!("{base}/v1/images/generations"),
        &json!({"prompt": "dress", "steps": 3}),
    );
    assert_eq!(ok.status, 200, "{}", String::from_utf8_lossy(&ok.body));
}

#[test]
fn only_loopback_is_served_without_a_key() {
    let model = test_model(tiny_config());
    let served =
        || ServedModel::load(&model.run, None, &Default::default(), &Default::default()).unwrap();
    for addr in ["0.0.0.0:0", "[::]:0", "192.0.2.1:0"] {
        let err = Server::start(
            served(),
            ServeConfig {
                addr: addr.parse().unwrap(),
                ..ServeConfig::default()
            },
        )
        .err()
        .unwrap_or_else(|| panic!("{addr} served without a key"))
        .to_string();
        assert!(err.contains("needs --api-key"), "{addr}: {err}");
    }
    let err = Server::start(
        served(),
        ServeConfig {
            api_key: Some("  ".into()),
            ..loopback_config()
        },
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("the key is empty"), "{err}");
}
