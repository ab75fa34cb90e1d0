//! The generation API gives `dit sample`'s bytes; models, health, page.

use crate::serve::server_support::*;
use serde_json::json;

#[test]
fn generations_equal_dit_sample_for_every_sampler() {
    let model = test_model(tiny_config());
    let server = start(&model, loopback_config());
    let base = server.url();
    for sampler in ["ddpm", "ddim", "dpm++"] {
        let answer = post_json(
            &format!("{base}/v1/images/generations"),
            &json!({"prompt": "dress", "n": 3, "seed": 11, "steps": 12,
                    "guidance_scale": 3.0, "sampler": sampler}),
        );
        assert_eq!(
            answer.status,
            200,
            "{}",
            String::from_utf8_lossy(&answer.body)
        );
        let body = answer.json();
        assert!(body["created"].as_u64().unwrap() > 1_600_000_000);
        let data = body["data"].as_array().unwrap();
        assert_eq!(data.len(), 3);
        let expected = dit_sample_pngs(
            &model.run,
            &[
                "--class",
                "dress",
                "-n",
                "3",
                "--seed",
                "11",
                "--steps",
                "12",
                "--cfg-scale",
                "3",
                "--sampler",
                sampler,
            ],
            3,
        );
        for (k, (item, expected)) in data.iter().zip(&expected).enumerate() {
            assert_eq!(item["index"], k);
            assert_eq!(item["seed"], 11);
            assert_eq!(item["class"], 3);
            assert_eq!(item["class_name"], "dress");
            let png = b64(&item["b64_json"]);
            let (w, h, _) = decode_png(&png);
            assert_eq!((w, h), (8, 8));
            assert!(
                png == *expected,
                "{sampler}: image {k} differs from dit sample's"
            );
        }
        assert_ne!(
            decode_png(&b64(&data[0]["b64_json"])).2,
            decode_png(&b64(&data[1]["b64_json"])).2
        );
    }
}

#[test]
fn url_format_serves_the_same_bytes_by_job_id() {
    let model = test_model(tiny_config());
    let server = start(&model, loopback_config());
    let base = server.url();
    // Class by id, unguided.
    let answer = post_json(
        &format!("{base}/v1/images/generations"),
        &json!({"prompt": 1, "n": 2, "seed": 5, "steps": 8, "guidance_scale": 1,
                "sampler": "ddpm", "response_format": "url"}),
    );
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    let body = answer.json();
    let expected = dit_sample_pngs(
        &model.run,
        &[
            "--class",
            "1",
            "-n",
            "2",
            "--seed",
            "5",
            "--steps",
            "8",
            "--cfg-scale",
            "1",
            "--sampler",
            "ddpm",
        ],
        2,
    );
    for (item, expected) in body["data"].as_array().unwrap().iter().zip(&expected) {
        assert!(item.get("b64_json").is_none());
        let url = item["url"].as_str().unwrap();
        assert!(
            url.starts_with(&format!(
                "{base}/v1/jobs/{}/images/",
                body["id"].as_str().unwrap()
            )),
            "{url}"
        );
        let image = get(url);
        assert_eq!(image.status, 200);
        assert_eq!(image.content_type.as_deref(), Some("image/png"));
        assert!(
            image.body == *expected,
            "{url} differs from dit sample's image"
        );
    }
}

/// Two compatible requests that wait together run as one batch, and each
/// still gets exactly its solo `dit sample` images.
#[test]
fn batched_requests_each_equal_their_own_dit_sample() {
    let model = test_model(slow_config());
    let server = start(&model, loopback_config());
    let base = server.url();
    // Keep the worker busy so the next two queue up together.
    let blocker = submit(
        &base,
        &json!({"prompt": "coat", "n": 8, "steps": 1000, "sampler": "ddim"}),
    );
    wait_running(&base, &blocker);
    let a = submit(
        &base,
        &json!({"prompt": "trouser", "n": 2, "seed": 3, "steps": 6, "sampler": "dpm++", "guidance_scale": 2}),
    );
    let b = submit(
        &base,
        &json!({"prompt": "pullover", "n": 1, "seed": 4, "steps": 6, "sampler": "dpm++", "guidance_scale": 2}),
    );
    // Not compatible (other steps): must run in a batch of its own.
    let c = submit(
        &base,
        &json!({"prompt": "coat", "n": 1, "seed": 4, "steps": 5, "sampler": "dpm++", "guidance_scale": 2}),
    );
    assert_eq!(
        send("DELETE", &format!("{base}/v1/jobs/{blocker}"), None, None).status,
        200
    );
    let result = |id: &str| {
        assert!(
            eventually(120, || job_status(&base, id)["status"] == "succeeded"),
            "{}",
            job_status(&base, id)
        );
        job_status(&base, id)["result"].clone()
    };
    let (ra, rb, rc) = (result(&a), result(&b), result(&c));
    assert_eq!(ra["timing"]["batch_images"], 3, "{ra}");
    assert_eq!(rb["timing"]["batch_images"], 3);
    assert_eq!(rc["timing"]["batch_images"], 1);
    for (result, class, seed, n) in [(&ra, "trouser", "3", 2), (&rb, "pullover", "4", 1)] {
        let expected = dit_sample_pngs(
            &model.run,
            &[
                "--class",
                class,
                "-n",
                &n.to_string(),
                "--seed",
                seed,
                "--steps",
                "6",
                "--sampler",
                "dpm++",
                "--cfg-scale",
                "2",
            ],
            n,
        );
        for (item, expected) in result["data"].as_array().unwrap().iter().zip(&expected) {
            assert!(
                b64(&item["b64_json"]) == *expected,
                "{class}: batched image differs from dit sample's"
            );
        }
    }
}

#[test]
fn models_health_and_page_describe_the_server() {
    let model = test_model(tiny_config());
    let server = start(&model, loopback_config());
    let base = server.url();
    let models = get(&format!("{base}/v1/models")).json();
    let m = &models["data"][0];
    assert_eq!(m["id"], "step-0000001.safetensors");
    assert_eq!(m["image_size"], 8);
    assert_eq!(m["config"]["hidden_size"], 32);
    assert_eq!(m["classes"].as_array().unwrap().len(), 5);
    assert_eq!(m["classes"][3]["name"], "dress");
    assert_eq!(m["guidance"], true);
    assert_eq!(m["limits"]["max_n"], 8);
    let health = get(&format!("{base}/health")).json();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["queue"]["capacity"], 32);
    assert_eq!(health["auth_required"], false);

    let page = get(&format!("{base}/"));
    assert_eq!(page.status, 200);
    assert!(page
        .content_type
        .as_deref()
        .unwrap()
        .starts_with("text/html"));
    let html = String::from_utf8(page.body).unwrap();
    assert!(html.contains("<script src=\"page.js\">"), "{html}");
    let script = get(&format!("{base}/page.js"));
    assert!(script
        .content_type
        .as_deref()
        .unwrap()
        .starts_with("text/javascript"));
    assert!(String::from_utf8(script.body).unwrap().contains("v1/jobs"));
}

#[test]
fn a_sit_model_is_served_with_its_own_samplers_and_dit_samples_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let objective =
        dit::transport::ObjectiveConfig::Sit(dit::transport::TransportConfig::default());
    let run = write_run_with(
        &dir.path().join("runs"),
        "sit",
        &tiny_config(),
        &CLASSES,
        objective,
    );
    let model = TestModel { dir, run };
    let server = start(&model, loopback_config());
    let base = server.url();
    let models = get(&format!("{base}/v1/models")).json();
    assert_eq!(models["data"][0]["family"], "SiT");
    assert_eq!(models["data"][0]["defaults"]["sampler"], "ode-heun");
    for sampler in ["ode-heun", "sde-euler"] {
        let answer = post_json(
            &format!("{base}/v1/images/generations"),
            &json!({"prompt": "dress", "n": 2, "seed": 5, "steps": 6,
                    "guidance_scale": 2.0, "sampler": sampler}),
        );
        assert_eq!(
            answer.status,
            200,
            "{}",
            String::from_utf8_lossy(&answer.body)
        );
        let expected = dit_sample_pngs(
            &model.run,
            &[
                "--class",
                "dress",
                "-n",
                "2",
                "--seed",
                "5",
                "--steps",
                "6",
                "--cfg-scale",
                "2",
                "--sampler",
                sampler,
            ],
            2,
        );
        for (item, expected) in answer.json()["data"]
            .as_array()
            .unwrap()
            .iter()
            .zip(&expected)
        {
            assert!(
                b64(&item["b64_json"]) == *expected,
                "{sampler}: differs from dit sample"
            );
        }
    }
    let refused = post_json(
        &format!("{base}/v1/images/generations"),
        &json!({"prompt": "dress", "sampler": "ddpm"}),
    );
    assert_eq!(refused.status, 400);
    assert!(refused.error_message().contains("a SiT model's samplers"));
}
