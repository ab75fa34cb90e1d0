//! The load test: 100 concurrent clients against `dit serve` (the binary,
//! so its peak memory is its own), over loopback only, each sending one
//! request; bounded in count and time. Run with
//! `cargo test --test serve -- --ignored load --nocapture`.

use crate::serve::server_support::*;
use dit::model::DitConfig;
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

const CLIENTS: usize = 100;
const STEPS: usize = 20;

/// 16×16 RGB, 64 tokens, 2 blocks of width 64: a step of one guided image
/// is mostly fixed per-step cost, what batching shares.
fn load_config() -> DitConfig {
    DitConfig {
        input_size: 16,
        hidden_size: 64,
        depth: 2,
        ..tiny_config()
    }
}

struct Outcome {
    status: u16,
    seconds: f64,
    images: usize,
    /// Images in the forward batch it ran in.
    batch_images: u64,
}

struct Stats {
    ok: usize,
    refused: usize,
    other: usize,
    p50: f64,
    p99: f64,
    images_per_second: f64,
    wall: f64,
    peak_rss_mib: f64,
    /// Server CPU seconds per served image: the work, whatever else runs.
    cpu_per_image: f64,
    /// Mean images per forward batch, over the served requests.
    mean_batch: f64,
}

fn spawn_server(run: &std::path::Path, extra: &[&str]) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dit"))
        .args([
            "serve",
            "--ckpt",
            run.to_str().unwrap(),
            "--addr",
            "127.0.0.1:0",
        ])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://") && !w.ends_with(')'))
        .unwrap_or_else(|| panic!("no address in '{line}'"))
        .to_string();
    (child, url)
}

/// Peak resident memory of a process (VmHWM), MiB.
fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/<pid>/status");
    kib / 1024.0
}

/// CPU seconds a process has used, all threads, user and system
/// (/proc/<pid>/stat; Linux reports them in USER_HZ = 100 ticks per second).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name, which ends with the last ')'.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn run_load(run: &std::path::Path, extra: &[&str]) -> Stats {
    let (mut child, url) = spawn_server(run, extra);
    let barrier = Arc::new(Barrier::new(CLIENTS + 1));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|k| {
            let barrier = barrier.clone();
            let url = url.clone();
            std::thread::spawn(move || {
                let n = 1 + k % 2;
                let body = json!({"prompt": k % 5, "n": n, "seed": k, "steps": STEPS,
                                  "sampler": "dpm++", "guidance_scale": 3});
                let agent = agent(Duration::from_secs(600));
                barrier.wait();
                let start = Instant::now();
                let answer = try_send(
                    &agent,
                    "POST",
                    &format!("{url}/v1/images/generations"),
                    Some(body.to_string().as_bytes()),
                    None,
                );
                let seconds = start.elapsed().as_secs_f64();
                match answer {
                    Ok(a) => {
                        let (images, batch_images) = if a.status == 200 {
                            let body = a.json();
                            let data = body["data"].as_array().unwrap();
                            for item in data {
                                decode_png(&b64(&item["b64_json"]));
                            }
                            (data.len(), body["timing"]["batch_images"].as_u64().unwrap())
                        } else {
                            (0, 0)
                        };
                        Outcome {
                            status: a.status,
                            seconds,
                            images,
                            batch_images,
                        }
                    }
                    Err(e) => panic!("client {k}: no answer: {e}"),
                }
            })
        })
        .collect();
    let cpu_before = cpu_seconds(child.id());
    barrier.wait();
    let start = Instant::now();
    let outcomes: Vec<Outcome> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    let wall = start.elapsed().as_secs_f64();
    let health = get(&format!("{url}/health")).json();
    let peak = peak_rss_mib(child.id());
    let cpu = cpu_seconds(child.id()) - cpu_before;
    child.kill().unwrap();
    child.wait().unwrap();

    let mut latencies: Vec<f64> = outcomes
        .iter()
        .filter(|o| o.status == 200)
        .map(|o| o.seconds)
        .collect();
    latencies.sort_by(|a, b| a.total_cmp(b));
    let images: usize = outcomes.iter().map(|o| o.images).sum();
    let ok = outcomes.iter().filter(|o| o.status == 200).count();
    let refused = outcomes.iter().filter(|o| o.status == 429).count();
    assert_eq!(health["jobs"]["succeeded"], ok as u64, "{health}");
    assert_eq!(health["jobs"]["rejected"], refused as u64, "{health}");
    Stats {
        ok,
        refused,
        other: CLIENTS - ok - refused,
        p50: percentile(&latencies, 50.0),
        p99: percentile(&latencies, 99.0),
        images_per_second: images as f64 / wall,
        wall,
        peak_rss_mib: peak,
        cpu_per_image: cpu / images.max(1) as f64,
        mean_batch: outcomes.iter().map(|o| o.batch_images as f64).sum::<f64>() / ok.max(1) as f64,
    }
}

#[test]
#[ignore = "load test: about a minute; run with --ignored load --nocapture"]
fn load_100_concurrent_clients() {
    let model = test_model(load_config());
    let scenarios: [(&str, &[&str]); 3] = [
        ("batching, queue 32 (default)", &[]),
        ("batching, queue 100", &["--queue", "100"]),
        (
            "no batching, queue 100",
            &["--queue", "100", "--no-batching"],
        ),
    ];
    println!(
        "{CLIENTS} clients, one request each (n = 1 or 2, {STEPS} DPM-Solver++ steps, guidance 3), \
         model {}",
        load_config().describe()
    );
    println!("| scenario | 200 | 429 | other | p50 s | p99 s | images/s | wall s | mean batch | server CPU ms/image | peak RSS MiB |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let mut cpu_per_image = Vec::new();
    for (name, args) in scenarios {
        let s = run_load(&model.run, args);
        println!(
            "| {name} | {} | {} | {} | {:.2} | {:.2} | {:.1} | {:.1} | {:.1} | {:.1} | {:.0} |",
            s.ok,
            s.refused,
            s.other,
            s.p50,
            s.p99,
            s.images_per_second,
            s.wall,
            s.mean_batch,
            1000.0 * s.cpu_per_image,
            s.peak_rss_mib
        );
        assert_eq!(s.other, 0, "{name}: answers other than 200 and 429");
        assert_eq!(s.ok + s.refused, CLIENTS, "{name}: requests lost");
        assert!(s.ok > 0, "{name}: nothing served");
        cpu_per_image.push(s.cpu_per_image);
    }
    // Wall-clock throughput moves with whatever else the machine runs; the
    // server's CPU time per image is the work batching saves.
    assert!(
        cpu_per_image[1] < cpu_per_image[2],
        "batching should take less CPU per image: {:.1} vs {:.1} ms",
        1000.0 * cpu_per_image[1],
        1000.0 * cpu_per_image[2]
    );
}
