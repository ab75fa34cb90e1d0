//! What the `dit serve` tests share: tiny random-weight models written as
//! `dit train` runs, a server on a free loopback port, a blocking HTTP
//! client, an event-stream reader and `dit sample` runs to compare against.
#![allow(dead_code)]

use base64::Engine;
use candle_core::{Device, Tensor};
use dit::data::LoaderState;
use dit::model::params::param_specs;
use dit::model::DitConfig;
use dit::serve::{ServeConfig, ServedModel, Server};
use dit::train::{DataSpec, TrainCheckpoint, TrainConfig, TrainState};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const CLASSES: [&str; 5] = ["t-shirt", "trouser", "pullover", "dress", "coat"];

/// 8×8 RGB, one block: a few hundred microseconds per step.
pub fn tiny_config() -> DitConfig {
    DitConfig {
        input_size: 8,
        patch_size: 2,
        in_channels: 3,
        hidden_size: 32,
        depth: 1,
        num_heads: 2,
        mlp_ratio: 4.0,
        class_dropout_prob: 0.1,
        num_classes: CLASSES.len(),
        learn_sigma: true,
    }
}

/// 32×32 RGB, 256 tokens, 4 blocks of width 128: about a tenth of a second
/// per step for 8 guided images on 2 cores, so a 1000-step job runs for
/// minutes unless cancelled.
pub fn slow_config() -> DitConfig {
    DitConfig {
        input_size: 32,
        hidden_size: 128,
        depth: 4,
        num_heads: 4,
        ..tiny_config()
    }
}

/// Seeded random weights, uniform with a fan-in scale, so every layer
/// (adaLN-Zero's included) does something and images differ by class and seed.
pub fn random_weights(config: &DitConfig, seed: u64) -> HashMap<String, Tensor> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    param_specs(config)
        .into_iter()
        .filter(|s| s.name != "pos_embed")
        .map(|s| {
            let scale = if s.name.ends_with("embedding_table.weight") {
                0.5
            } else if s.name.ends_with(".weight") {
                1.0 / (s.shape[1..].iter().product::<usize>() as f32).sqrt()
            } else {
                0.1
            };
            let values: Vec<f32> = (0..s.numel())
                .map(|_| rng.gen_range(-1.0f32..1.0) * scale)
                .collect();
            let t = Tensor::from_vec(values, s.shape.as_slice(), &Device::Cpu).unwrap();
            (s.name, t)
        })
        .collect()
}

/// Writes `runs_dir/<name>/checkpoints/step-0000001.safetensors` as `dit
/// train` would (class names and diffusion in the metadata; EMA weights).
pub fn write_run(runs_dir: &Path, name: &str, config: &DitConfig, classes: &[&str]) -> PathBuf {
    write_run_with(runs_dir, name, config, classes, Default::default())
}

/// [`write_run`] of a model trained with `objective`.
pub fn write_run_with(
    runs_dir: &Path,
    name: &str,
    config: &DitConfig,
    classes: &[&str],
    objective: dit::transport::ObjectiveConfig,
) -> PathBuf {
    let run = runs_dir.join(name);
    let path = dit::train::checkpoint::checkpoint_path(&run, 1);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let weights = random_weights(config, 1);
    let checkpoint = TrainCheckpoint {
        model_config: config.clone(),
        objective,
        state: TrainState {
            step: 1,
            loader: LoaderState {
                epoch: 0,
                position: 0,
            },
            data: DataSpec {
                source: "serve tests".into(),
                sample_shape: (config.in_channels, config.input_size, config.input_size),
                class_names: classes.iter().map(|c| c.to_string()).collect(),
            },
            train: TrainConfig::default(),
        },
        params: weights.clone(),
        ema: weights,
        optimizer: HashMap::new(),
    };
    checkpoint.save(&path).unwrap();
    run
}

/// A temporary folder holding a run of `config` with [`CLASSES`].
pub struct TestModel {
    pub dir: tempfile::TempDir,
    pub run: PathBuf,
}

pub fn test_model(config: DitConfig) -> TestModel {
    let dir = tempfile::tempdir().unwrap();
    let run = write_run(&dir.path().join("runs"), "test", &config, &CLASSES);
    TestModel { dir, run }
}

pub fn loopback_config() -> ServeConfig {
    ServeConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        ..ServeConfig::default()
    }
}

pub fn start(model: &TestModel, config: ServeConfig) -> Server {
    let served = ServedModel::load(
        &model.run,
        None,
        &Default::default(),
        &Default::default(),
        None,
    )
    .unwrap();
    Server::start(served, config).unwrap()
}

/// A response: status, a header or two, the body.
pub struct Answer {
    pub status: u16,
    pub retry_after: Option<String>,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {}: not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The API error's message (panics if the body is not an API error).
    pub fn error_message(&self) -> String {
        self.json()["error"]["message"]
            .as_str()
            .unwrap_or_else(|| panic!("no error message in {}", self.json()))
            .to_string()
    }
}

pub fn agent(timeout: Duration) -> ureq::Agent {
    ureq::AgentBuilder::new().timeout(timeout).build()
}

/// Sends a request; any status is an answer, only transport errors panic.
pub fn send(method: &str, url: &str, body: Option<&[u8]>, key: Option<&str>) -> Answer {
    try_send(&agent(Duration::from_secs(300)), method, url, body, key).unwrap()
}

pub fn try_send(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    body: Option<&[u8]>,
    key: Option<&str>,
) -> Result<Answer, String> {
    let mut request = agent.request(method, url);
    if let Some(key) = key {
        request = request.set("Authorization", &format!("Bearer {key}"));
    }
    let result = match body {
        Some(body) => request
            .set("Content-Type", "application/json")
            .send_bytes(body),
        None => request.call(),
    };
    let response = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(ureq::Error::Transport(t)) => return Err(t.to_string()),
    };
    let status = response.status();
    let retry_after = response.header("Retry-After").map(str::to_string);
    let content_type = response.header("Content-Type").map(str::to_string);
    let mut body = Vec::new();
    response
        .into_reader()
        .take(64 << 20)
        .read_to_end(&mut body)
        .unwrap();
    Ok(Answer {
        status,
        retry_after,
        content_type,
        body,
    })
}

pub fn post_json(url: &str, body: &Value) -> Answer {
    send("POST", url, Some(body.to_string().as_bytes()), None)
}

pub fn get(url: &str) -> Answer {
    send("GET", url, None, None)
}

pub fn b64(text: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(text.as_str().expect("a base64 string"))
        .unwrap()
}

/// One event of a `text/event-stream`.
#[derive(Debug)]
pub struct SseEvent {
    pub name: String,
    pub data: Value,
}

/// Reads events from an open event stream (comments and keep-alives skipped).
pub struct EventReader {
    lines: BufReader<Box<dyn Read + Send + Sync + 'static>>,
}

impl EventReader {
    pub fn open(base: &str, id: &str) -> EventReader {
        let response = agent(Duration::from_secs(300))
            .get(&format!("{base}/v1/jobs/{id}/events"))
            .call()
            .unwrap();
        assert_eq!(
            response.header("Content-Type"),
            Some("text/event-stream"),
            "events content type"
        );
        EventReader {
            lines: BufReader::new(response.into_reader()),
        }
    }

    /// The next event, `None` when the stream ends.
    pub fn next_event(&mut self) -> Option<SseEvent> {
        let (mut name, mut data) = (String::new(), String::new());
        loop {
            let mut line = String::new();
            if self.lines.read_line(&mut line).unwrap() == 0 {
                return None;
            }
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                if !data.is_empty() {
                    let data = serde_json::from_str(&data).unwrap();
                    return Some(SseEvent { name, data });
                }
                continue;
            }
            if let Some(v) = line.strip_prefix("event:") {
                name = v.trim().to_string();
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push_str(v.trim());
            }
        }
    }

    /// Events until the stream ends.
    pub fn rest(&mut self) -> Vec<SseEvent> {
        std::iter::from_fn(|| self.next_event()).collect()
    }
}

/// Queues a job with `POST /v1/jobs`; returns its id.
pub fn submit(base: &str, body: &Value) -> String {
    let answer = post_json(&format!("{base}/v1/jobs"), body);
    assert_eq!(
        answer.status,
        202,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    answer.json()["id"].as_str().unwrap().to_string()
}

pub fn job_status(base: &str, id: &str) -> Value {
    let answer = get(&format!("{base}/v1/jobs/{id}"));
    assert_eq!(answer.status, 200);
    answer.json()
}

/// Polls until `done` holds, at most `seconds`; false on time-out.
pub fn eventually(seconds: u64, mut done: impl FnMut() -> bool) -> bool {
    let until = std::time::Instant::now() + Duration::from_secs(seconds);
    while std::time::Instant::now() < until {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    done()
}

/// Waits until job `id` reports a step, i.e. it is running.
pub fn wait_running(base: &str, id: &str) {
    assert!(
        eventually(120, || job_status(base, id)["status"] == "running"),
        "job {id} never started: {}",
        job_status(base, id)
    );
}

/// `dit sample ... --out-dir` for the settings of a request; the PNG files'
/// bytes in index order.
pub fn dit_sample_pngs(run: &Path, args: &[&str], n: usize) -> Vec<Vec<u8>> {
    let out = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_dit"))
        .arg("sample")
        .arg("--ckpt")
        .arg(run)
        .args(args)
        .arg("--out-dir")
        .arg(out.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "dit sample {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    (0..n)
        .map(|k| std::fs::read(out.path().join(format!("{k:06}.png"))).unwrap())
        .collect()
}

/// Decodes a PNG: (width, height, RGB bytes).
pub fn decode_png(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
    let image = image::load_from_memory_with_format(bytes, image::ImageFormat::Png)
        .expect("a valid PNG")
        .to_rgb8();
    (image.width(), image.height(), image.into_raw())
}
