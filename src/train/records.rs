//! What a run leaves behind as it goes: a JSON-lines metrics file and a
//! loss-curve PNG redrawn at every checkpoint; and what it reports to a
//! [`TrainObserver`] (the `dit` binary draws its progress bar from that).

use crate::{Context, Result};
use plotters::prelude::*;
use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What a training run reports as it goes. Every method has a do-nothing
/// default, so an observer implements what it shows.
pub trait TrainObserver {
    /// Before the first step of this invocation.
    fn start(&mut self, _first_step: u64, _total_steps: u64) {}
    /// After every step; `logged` on the steps whose window was written to
    /// `metrics.jsonl`.
    fn step(&mut self, _step: u64, _logged: Option<&LoggedWindow>) {}
    /// A line worth showing: a checkpoint, a preview grid, a warning.
    fn note(&mut self, _message: &str) {}
    /// After the last step.
    fn finish(&mut self) {}
}

/// An observer that shows nothing (tests, library callers).
pub struct Quiet;

impl TrainObserver for Quiet {}

/// The means of one logging window, as written to `metrics.jsonl`.
#[derive(Clone, Debug, Serialize)]
pub struct LoggedWindow {
    pub step: u64,
    pub epoch: u64,
    pub loss: f64,
    pub mse: f64,
    pub vb: f64,
    pub lr: f64,
    pub grad_norm: f64,
    pub steps_per_sec: f64,
}

/// One step's figures, as the trainer hands them to [`Records::step`].
#[derive(Clone, Copy, Debug)]
pub struct StepFigures {
    pub loss: f64,
    pub mse: f64,
    pub vb: f64,
    pub lr: f64,
    pub grad_norm: f64,
    pub epoch: u64,
}

pub struct Records {
    metrics: File,
    out_dir: PathBuf,
    log_every: u64,
    window: Vec<StepFigures>,
    window_start: Instant,
    /// (step, mean loss of the logging window) for the plot.
    curve: Vec<(u64, f64)>,
}

impl Records {
    pub fn open(out_dir: &Path, total_steps: u64) -> Result<Self> {
        let path = out_dir.join("metrics.jsonl");
        let metrics = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        let curve = read_curve(&path);
        let log_every = 10.max(total_steps / 2000).min(100);
        Ok(Self {
            metrics,
            out_dir: out_dir.to_path_buf(),
            log_every,
            window: Vec::new(),
            window_start: Instant::now(),
            curve,
        })
    }

    /// Records step `step`'s figures; every `log_every` steps writes the
    /// window's means to `metrics.jsonl` and returns them.
    pub fn step(&mut self, step: u64, figures: StepFigures) -> Result<Option<LoggedWindow>> {
        self.window.push(figures);
        if !step.is_multiple_of(self.log_every) {
            return Ok(None);
        }
        let n = self.window.len() as f64;
        let mean = |f: fn(&StepFigures) -> f64| self.window.iter().map(f).sum::<f64>() / n;
        let line = LoggedWindow {
            step,
            epoch: figures.epoch,
            loss: mean(|w| w.loss),
            mse: mean(|w| w.mse),
            vb: mean(|w| w.vb),
            lr: figures.lr,
            grad_norm: mean(|w| w.grad_norm),
            steps_per_sec: n / self.window_start.elapsed().as_secs_f64(),
        };
        writeln!(self.metrics, "{}", serde_json::to_string(&line)?)
            .context("writing metrics.jsonl")?;
        self.curve.push((step, line.loss));
        self.window.clear();
        self.window_start = Instant::now();
        Ok(Some(line))
    }

    /// After a checkpoint: flush the metrics and redraw the loss curve.
    pub fn checkpoint(&mut self) -> Result<()> {
        self.metrics.flush()?;
        self.metrics.sync_data().ok();
        if self.curve.len() >= 2 {
            plot_loss(&self.curve, &self.out_dir.join("loss.png"))?;
        }
        Ok(())
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

use crate::sample::sheet::FONT;

fn plot_loss(curve: &[(u64, f64)], path: &Path) -> Result<()> {
    let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    let tmp = path.with_extension("tmp.png");
    draw_loss(curve, &tmp).map_err(|e| crate::err!("drawing {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

type DrawResult = std::result::Result<(), Box<dyn std::error::Error>>;

/// Points of the smoothed curve: the geometric mean of the logged windows
/// within a twentieth of the run centred on each point (fewer at the ends).
/// Centred, so it does not lag behind the steep early fall as a trailing
/// average would; geometric, as the axis is logarithmic.
fn smoothed(curve: &[(u64, f64)]) -> Vec<(u64, f64)> {
    let half = curve.len() / 40;
    (0..curve.len())
        .map(|i| {
            let window = &curve[i.saturating_sub(half)..(i + half + 1).min(curve.len())];
            let mean_log = window.iter().map(|&(_, l)| l.ln()).sum::<f64>() / window.len() as f64;
            (curve[i].0, mean_log.exp())
        })
        .collect()
}

/// The loss on a log-scale axis (it falls over orders of magnitude early and
/// by percents late): the logged window means in a light line, their
/// smoothed curve over them.
fn draw_loss(curve: &[(u64, f64)], tmp: &Path) -> DrawResult {
    // Log scale: only positive, finite losses can be drawn.
    let points: Vec<(u64, f64)> = curve
        .iter()
        .copied()
        .filter(|(_, l)| l.is_finite() && *l > 0.0)
        .collect();
    if points.len() < 2 {
        return Ok(());
    }
    let root = BitMapBackend::new(&tmp, (800, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let max_step = points.last().map_or(1, |c| c.0).max(1);
    let (lo, hi) = points.iter().fold((f64::MAX, f64::MIN), |(lo, hi), c| {
        (lo.min(c.1), hi.max(c.1))
    });
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "training loss (means of the logged windows), log scale",
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(72)
        .build_cartesian_2d(0u64..max_step, ((lo * 0.9)..(hi * 1.1)).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("step")
        .y_desc("loss")
        .y_label_formatter(&|v| format!("{v:.3}"))
        .label_style(("sans-serif", 14))
        .draw()?;
    let raw = RGBColor(160, 190, 230);
    chart
        .draw_series(LineSeries::new(points.iter().copied(), &raw))?
        .label("window mean")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], raw));
    chart
        .draw_series(LineSeries::new(smoothed(&points), BLUE.stroke_width(2)))?
        .label("smoothed")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLUE.stroke_width(2)));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_smoothed_curve_follows_a_constant_and_a_step_without_lag() {
        let flat: Vec<(u64, f64)> = (0..50).map(|i| (i * 10, 0.25)).collect();
        assert!(smoothed(&flat)
            .iter()
            .all(|&(_, v)| (v - 0.25).abs() < 1e-12));
        let step: Vec<(u64, f64)> = (0..400)
            .map(|i| (i, if i < 200 { 1.0 } else { 0.1 }))
            .collect();
        let s = smoothed(&step);
        // Ten points either side: exact away from the step, between at it.
        assert!((s[189].1 - 1.0).abs() < 1e-12 && (s[210].1 - 0.1).abs() < 1e-12);
        assert!((s[399].1 - 0.1).abs() < 1e-12 && (s[0].1 - 1.0).abs() < 1e-12);
        assert!(s[200].1 > 0.1 && s[200].1 < 1.0);
        assert_eq!(
            s.iter().map(|p| p.0).collect::<Vec<_>>(),
            (0..400).collect::<Vec<_>>()
        );
    }
}
