//! What a run shows and leaves behind as it goes: a progress bar, a JSON-lines
//! metrics file, and a loss-curve PNG redrawn at every checkpoint.

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use plotters::prelude::*;
use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Serialize)]
struct MetricsLine {
    step: u64,
    epoch: u64,
    loss: f64,
    mse: f64,
    vb: f64,
    lr: f64,
    grad_norm: f64,
    steps_per_sec: f64,
}

pub struct Records {
    bar: ProgressBar,
    metrics: File,
    out_dir: PathBuf,
    log_every: u64,
    window: Vec<(f64, f64, f64, f64)>,
    window_start: Instant,
    /// (step, mean loss of the logging window) for the plot.
    curve: Vec<(u64, f64)>,
}

impl Records {
    pub fn open(out_dir: &Path, start_step: u64, total_steps: u64, visible: bool) -> Result<Self> {
        let path = out_dir.join("metrics.jsonl");
        let metrics = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        let bar = if visible {
            ProgressBar::new(total_steps)
        } else {
            ProgressBar::hidden()
        };
        bar.set_style(
            ProgressStyle::with_template(
                "{bar:30} step {pos}/{len} | {msg} | {elapsed_precise} < {eta_precise}",
            )
            .expect("valid template"),
        );
        bar.set_position(start_step);
        let curve = read_curve(&path);
        let log_every = 10.max(total_steps / 2000).min(100);
        Ok(Self {
            bar,
            metrics,
            out_dir: out_dir.to_path_buf(),
            log_every,
            window: Vec::new(),
            window_start: Instant::now(),
            curve,
        })
    }

    #[allow(clippy::too_many_arguments)]
    pub fn step(
        &mut self,
        step: u64,
        loss: f64,
        mse: f64,
        vb: f64,
        lr: f64,
        grad_norm: f64,
        epoch: u64,
    ) -> Result<()> {
        self.bar.set_position(step);
        self.window.push((loss, mse, vb, grad_norm));
        if !step.is_multiple_of(self.log_every) {
            return Ok(());
        }
        let n = self.window.len() as f64;
        let mean = |f: fn(&(f64, f64, f64, f64)) -> f64| self.window.iter().map(f).sum::<f64>() / n;
        let steps_per_sec = n / self.window_start.elapsed().as_secs_f64();
        let line = MetricsLine {
            step,
            epoch,
            loss: mean(|w| w.0),
            mse: mean(|w| w.1),
            vb: mean(|w| w.2),
            lr,
            grad_norm: mean(|w| w.3),
            steps_per_sec,
        };
        self.bar.set_message(format!(
            "loss {:.4} | {:.2} steps/s",
            line.loss, steps_per_sec
        ));
        writeln!(self.metrics, "{}", serde_json::to_string(&line)?)
            .context("writing metrics.jsonl")?;
        self.curve.push((step, line.loss));
        self.window.clear();
        self.window_start = Instant::now();
        Ok(())
    }

    /// After a checkpoint: flush the metrics and redraw the loss curve.
    pub fn checkpoint(&mut self, step: u64) -> Result<()> {
        self.metrics.flush()?;
        self.metrics.sync_data().ok();
        if self.curve.len() >= 2 {
            plot_loss(&self.curve, &self.out_dir.join("loss.png"))?;
        }
        self.note(&format!("checkpoint at step {step}"));
        Ok(())
    }

    pub fn note(&self, message: &str) {
        self.bar.println(message);
    }

    pub fn finish(&self) {
        self.bar.finish();
    }
}

/// Earlier points of a resumed run.
fn read_curve(path: &Path) -> Vec<(u64, f64)> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| Some((v["step"].as_u64()?, v["loss"].as_f64()?)))
        .collect()
}

const FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSansMono.ttf");

fn plot_loss(curve: &[(u64, f64)], path: &Path) -> Result<()> {
    let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    let tmp = path.with_extension("tmp.png");
    {
        let root = BitMapBackend::new(&tmp, (800, 480)).into_drawing_area();
        root.fill(&WHITE)?;
        let max_step = curve.last().map_or(1, |c| c.0).max(1);
        let (lo, hi) = curve.iter().fold((f64::MAX, f64::MIN), |(lo, hi), c| {
            (lo.min(c.1), hi.max(c.1))
        });
        let pad = ((hi - lo) * 0.05).max(1e-6);
        let mut chart = ChartBuilder::on(&root)
            .caption("training loss (mse + vb)", ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(64)
            .build_cartesian_2d(0u64..max_step, (lo - pad)..(hi + pad))?;
        chart
            .configure_mesh()
            .x_desc("step")
            .y_desc("loss")
            .label_style(("sans-serif", 14))
            .draw()?;
        chart.draw_series(LineSeries::new(curve.iter().copied(), &BLUE))?;
        root.present()?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}
