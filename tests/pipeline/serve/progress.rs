//! Progress events, cancelling, and clients that go away.

use crate::serve::server_support::*;
use serde_json::json;
use std::time::Duration;

#[test]
fn events_report_monotone_progress_and_end_with_the_result() {
    let model = test_model(slow_config());
    let server = start(
        &model,
        dit::serve::ServeConfig {
            preview_every: 3,
            ..loopback_config()
        },
    );
    let base = server.url();
    // A blocker makes the watched job wait, so its stream starts at "queued".
    let blocker = submit(
        &base,
        &json!({"prompt": "coat", "n": 8, "steps": 1000, "sampler": "ddim"}),
    );
    wait_running(&base, &blocker);
    let id = submit(
        &base,
        &json!({"prompt": "dress", "n": 2, "seed": 9, "steps": 20, "sampler": "ddpm"}),
    );
    let mut events = EventReader::open(&base, &id);
    let first = events.next_event().unwrap();
    assert_eq!(first.name, "queued", "{first:?}");
    assert_eq!(first.data["position"], 0);
    assert_eq!(
        send("DELETE", &format!("{base}/v1/jobs/{blocker}"), None, None).status,
        200
    );

    let rest = events.rest();
    let (last, before) = rest.split_last().expect("events after queued");
    assert_eq!(
        last.name, "done",
        "the stream ends with the result: {last:?}"
    );
    let steps: Vec<u64> = before
        .iter()
        .filter(|e| e.name == "progress")
        .map(|e| {
            assert_eq!(e.data["total"], 20);
            e.data["step"].as_u64().unwrap()
        })
        .collect();
    assert!(steps.len() >= 2, "progress events: {steps:?}");
    assert!(
        steps.windows(2).all(|w| w[0] < w[1]),
        "not monotone: {steps:?}"
    );
    assert!(*steps.last().unwrap() <= 20);
    for e in before
        .iter()
        .filter(|e| e.name == "progress" && e.data["step"] != 0)
    {
        let eta = e.data["eta_seconds"].as_f64().unwrap();
        assert!(eta.is_finite() && eta >= 0.0, "{e:?}");
    }
    let previews: Vec<_> = before.iter().filter(|e| e.name == "preview").collect();
    assert!(!previews.is_empty(), "no preview in {before:?}");
    for p in &previews {
        assert_eq!(p.data["step"].as_u64().unwrap() % 3, 0);
        // Two 32×32 images side by side with a 2-pixel border.
        assert_eq!(decode_png(&b64(&p.data["png"])).0, 2 * 34 + 2);
    }
    assert!(before
        .iter()
        .all(|e| ["queued", "progress", "preview"].contains(&e.name.as_str())));

    let status = job_status(&base, &id);
    assert_eq!(status["status"], "succeeded");
    assert_eq!(
        last.data["data"], status["result"]["data"],
        "the stream's result is the job's"
    );
    assert_eq!(last.data["data"].as_array().unwrap().len(), 2);
}

#[test]
fn cancelling_stops_the_job_and_frees_the_worker() {
    let model = test_model(slow_config());
    let server = start(&model, loopback_config());
    let base = server.url();
    let id = submit(
        &base,
        &json!({"prompt": "coat", "n": 8, "steps": 1000, "sampler": "ddim"}),
    );
    let mut events = EventReader::open(&base, &id);
    while let Some(e) = events.next_event() {
        if e.name == "progress" && e.data["step"].as_u64().unwrap() >= 1 {
            break;
        }
    }
    let cancel = send("DELETE", &format!("{base}/v1/jobs/{id}"), None, None);
    assert_eq!(cancel.status, 200);
    assert_eq!(cancel.json()["status"], "cancelled");
    let last = events.rest().pop().expect("a final event");
    assert_eq!(last.name, "cancelled");
    let status = job_status(&base, &id);
    assert_eq!(status["status"], "cancelled");
    assert!(status["step"].as_u64().unwrap() < 1000, "{status}");
    // Alone, the job would run for minutes: the worker must drop it.
    assert!(
        eventually(60, || get(&format!("{base}/health")).json()["running"] == 0),
        "the worker still runs the cancelled job"
    );
    let again = send("DELETE", &format!("{base}/v1/jobs/{id}"), None, None);
    assert_eq!(again.status, 409);
    assert!(again.error_message().contains("already ended (cancelled)"));
    let next = post_json(
        &format!("{base}/v1/images/generations"),
        &json!({"prompt": "dress", "steps": 4}),
    );
    assert_eq!(next.status, 200, "{}", String::from_utf8_lossy(&next.body));
}

#[test]
fn a_client_that_disconnects_cancels_its_job() {
    let model = test_model(slow_config());
    let server = start(&model, loopback_config());
    let base = server.url();
    let health = || get(&format!("{base}/health")).json();

    // A waiting request whose client gives up.
    let impatient = agent(Duration::from_millis(1500));
    let body = json!({"prompt": "coat", "n": 8, "steps": 1000, "sampler": "ddim"}).to_string();
    let result = try_send(
        &impatient,
        "POST",
        &format!("{base}/v1/images/generations"),
        Some(body.as_bytes()),
        None,
    );
    assert!(result.is_err(), "the request should have timed out");
    drop(impatient);
    assert!(
        eventually(60, || health()["jobs"]["cancelled"] == 1
            && health()["running"] == 0),
        "the abandoned request's job still runs: {}",
        health()
    );

    // An event stream whose client closes it.
    let id = submit(
        &base,
        &json!({"prompt": "coat", "n": 8, "steps": 1000, "sampler": "ddim"}),
    );
    let mut events = EventReader::open(&base, &id);
    while let Some(e) = events.next_event() {
        if e.name == "progress" && e.data["step"].as_u64().unwrap() >= 1 {
            break;
        }
    }
    drop(events);
    assert!(
        eventually(60, || job_status(&base, &id)["status"] == "cancelled"),
        "closing the stream did not cancel: {}",
        job_status(&base, &id)
    );
    assert!(eventually(60, || health()["running"] == 0));
    assert_eq!(health()["jobs"]["cancelled"], 2);
    assert_eq!(health()["jobs"]["succeeded"], 0);
}
