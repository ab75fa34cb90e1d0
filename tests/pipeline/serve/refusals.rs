//! Bad requests, a full queue, keys and addresses: each refused with a 4xx
//! that says why, and the server keeps serving.

use crate::serve::server_support::*;
use dit::serve::{ServeConfig, ServedModel, Server};
use serde_json::json;

const KEY: &str = "test-key-1234";

/// A request the server must refuse, and how.
struct BadRequest<'a> {
    what: &'a str,
    method: &'a str,
    url: String,
    body: Option<String>,
    key: Option<&'a str>,
    status: u16,
    /// The field the error names, if any.
    param: Option<&'a str>,
    /// A fragment of the error message.
    says: &'a str,
}

#[rustfmt::skip]
#[test]
fn bad_requests_get_4xx_with_their_reason_and_the_server_still_serves() {
    let model = test_model(tiny_config());
    let server = start(&model, ServeConfig { api_key: Some(KEY.into()), ..loopback_config() });
    let base = server.url();
    let generations = format!("{base}/v1/images/generations");
    let huge = format!("{{\"prompt\": \"{}\"}}", "x".repeat(100_000));
    let post = |what, body: &str, param, says| BadRequest {
        what, method: "POST", url: generations.clone(), body: Some(body.to_string()),
        key: Some(KEY), status: 400, param, says,
    };
    let fetch = |what, url: String, status, says| BadRequest {
        what, method: "GET", url, body: None, key: Some(KEY), status, param: None, says,
    };
    let table = [
        post("unknown class", r#"{"prompt": "dres"}"#, Some("prompt"), "unknown class 'dres'; closest: 3 (dress)"),
        post("class id out of range", r#"{"prompt": "17"}"#, Some("prompt"), "class 17 out of range"),
        post("missing prompt", r#"{"n": 1}"#, Some("prompt"), "missing"),
        post("n = 0", r#"{"prompt": "dress", "n": 0}"#, Some("n"), "0 is out of range: allowed 1..=8"),
        post("n too large", r#"{"prompt": "dress", "n": 9}"#, Some("n"), "9 is out of range: allowed 1..=8"),
        post("n not an integer", r#"{"prompt": "dress", "n": 1.5}"#, Some("n"), "expected an integer"),
        post("steps = 0", r#"{"prompt": "dress", "steps": 0}"#, Some("steps"), "0 is out of range: allowed 2..=1000"),
        post("steps beyond the limit", r#"{"prompt": "dress", "steps": 5000}"#, Some("steps"), "5000 is out of range"),
        post("guidance NaN", r#"{"prompt": "dress", "guidance_scale": NaN}"#, None, "not valid JSON"),
        post("guidance \"NaN\"", r#"{"prompt": "dress", "guidance_scale": "NaN"}"#, Some("guidance_scale"), "expected a finite number"),
        post("guidance too large", r#"{"prompt": "dress", "guidance_scale": 1e6}"#, Some("guidance_scale"), "beyond the limit"),
        post("unknown sampler", r#"{"prompt": "dress", "sampler": "euler"}"#, Some("sampler"), "expected one of \"ddpm\", \"ddim\", \"dpm++\" (a DiT model's samplers)"),
        post("unknown response format", r#"{"prompt": "dress", "response_format": "png"}"#, Some("response_format"), "expected \"b64_json\" or \"url\""),
        post("wrong size", r#"{"prompt": "dress", "size": "256x256"}"#, Some("size"), "makes 8x8 images only"),
        post("negative seed", r#"{"prompt": "dress", "seed": -1}"#, Some("seed"), "expected an integer"),
        post("unknown field", r#"{"prompt": "dress", "guidance": 2}"#, Some("guidance"), "unknown field"),
        post("malformed JSON", r#"{"prompt": "dress""#, None, "not valid JSON"),
        post("not an object", "[1, 2]", None, "must be a JSON object"),
        BadRequest { status: 413, ..post("huge body", &huge, None, "larger than the limit of 16384 bytes") },
        BadRequest { key: Some("nope"), status: 401, ..post("wrong key", r#"{"prompt": "dress"}"#, None, "wrong API key") },
        BadRequest { key: None, ..fetch("no key", format!("{base}/v1/models"), 401, "needs an API key") },
        fetch("unknown job", format!("{base}/v1/jobs/0123"), 404, "no job '0123'"),
        fetch("path in a job id", format!("{base}/v1/jobs/..%2F..%2Fetc%2Fpasswd/images/0.png"), 404, "no job '../../etc/passwd'"),
        BadRequest { method: "DELETE", ..fetch("cancel an unknown job", format!("{base}/v1/jobs/42"), 404, "no job '42'") },
        fetch("unknown endpoint", format!("{base}/v1/engines"), 404, "no such endpoint: GET /v1/engines"),
    ];
    for row in &table {
        let answer = send(row.method, &row.url, row.body.as_deref().map(str::as_bytes), row.key);
        let what = row.what;
        assert_eq!(answer.status, row.status, "{what}: {}", String::from_utf8_lossy(&answer.body));
        let message = answer.error_message();
        assert!(message.contains(row.says), "{what}: '{message}' lacks '{}'", row.says);
        assert_eq!(answer.json()["error"]["param"].as_str(), row.param, "{what}");
        println!("{what}: {} {message}", row.status);
    }
    assert_eq!(get(&format!("{base}/health")).json()["jobs"]["succeeded"], 0);
    let ok = send("POST", &generations, Some(br#"{"prompt": "dress", "steps": 4}"#), Some(KEY));
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
    let served = || {
        ServedModel::load(
            &model.run,
            None,
            &Default::default(),
            &Default::default(),
            None,
        )
        .unwrap()
    };
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

/// A client that sends its headers, then (a moment later, in pieces) a body
/// the server refuses without needing it — over the limit, or without the
/// right key — must read the refusal and its reason, not a reset connection:
/// the server reads what the client sends before it answers and closes.
#[test]
fn a_refused_body_sent_late_still_gets_its_answer() {
    let model = test_model(tiny_config());
    let server = start(
        &model,
        ServeConfig {
            api_key: Some(KEY.into()),
            ..loopback_config()
        },
    );
    let huge = format!("{{\"prompt\": \"{}\"}}", "x".repeat(200_000));
    let big = format!(
        "{{\"prompt\": \"dress\", \"seed\": 1{}}}",
        " ".repeat(12_000)
    );
    let cases = [
        (
            KEY,
            huge.as_str(),
            "413",
            "larger than the limit of 16384 bytes",
        ),
        ("nope", big.as_str(), "401", "wrong API key"),
    ];
    for (key, body, status, says) in cases {
        let answer = post_slowly(&server.url(), key, body);
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}")),
            "{answer}"
        );
        assert!(answer.contains(says), "{answer}");
    }
    assert_eq!(get(&format!("{}/health", server.url())).status, 200);
}

/// Posts headers, waits until the server could have answered from them
/// alone, sends the body in 8 KiB pieces and reads the whole answer.
fn post_slowly(base: &str, key: &str, body: &str) -> String {
    use std::io::{Read, Write};
    use std::time::Duration;
    let address = base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let head = format!(
        "POST /v1/images/generations HTTP/1.1\r\nHost: {address}\r\n\
         Authorization: Bearer {key}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let sent = body.as_bytes().chunks(8192).try_for_each(|piece| {
        std::thread::sleep(Duration::from_millis(2));
        stream.write_all(piece)
    });
    let mut answer = Vec::new();
    let read = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer).into_owned();
    assert!(
        sent.is_ok() && read.is_ok(),
        "sending the body: {sent:?}; reading the answer: {read:?}; answer: {answer:?}"
    );
    answer
}
