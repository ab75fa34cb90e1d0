//! Helpers of the transport tests: error measures, the Gaussian oracle and
//! its exact moments, written from the formulas (not from `dit::transport`).

use candle_core::{DType, Device, Tensor};
use std::f64::consts::{FRAC_PI_2, PI};

use dit::transport::{DiffusionForm, Interpolant, Prediction};

/// max |got − want| (NaN if any value is NaN) and ‖got − want‖₂/‖want‖₂.
pub struct Discrepancy {
    pub max_abs: f64,
    pub max_scaled: f64,
    pub rel_l2: f64,
}

pub use crate::support::compare::{max_nan as nan_max, values};

/// Compares element by element; `max_scaled` is |Δ|/max(1, |want|).
pub fn discrepancy(got: &[f64], want: &[f64]) -> Discrepancy {
    assert_eq!(got.len(), want.len(), "lengths differ");
    let (mut max_abs, mut max_scaled, mut diff2, mut norm2) = (0.0, 0.0, 0.0, 0.0);
    for (g, w) in got.iter().zip(want) {
        let d = (g - w).abs();
        max_abs = nan_max(max_abs, d);
        max_scaled = nan_max(max_scaled, d / w.abs().max(1.0));
        diff2 += d * d;
        norm2 += w * w;
    }
    let rel_l2 = if norm2 > 0.0 {
        (diff2 / norm2).sqrt()
    } else {
        diff2.sqrt()
    };
    Discrepancy {
        max_abs,
        max_scaled,
        rel_l2,
    }
}

/// The worst discrepancies seen by a test, for its report.
#[derive(Default)]
pub struct Worst {
    max_scaled: f64,
    rel_l2: f64,
    count: usize,
}

impl Worst {
    pub fn add(&mut self, d: Discrepancy) {
        self.max_scaled = nan_max(self.max_scaled, d.max_scaled);
        self.rel_l2 = nan_max(self.rel_l2, d.rel_l2);
        self.count += 1;
    }

    pub fn report(&self, what: &str) {
        println!(
            "{what}: {} comparisons, worst max |Δ|/max(1,|ref|) {:.1e}, worst rel-L2 {:.1e}",
            self.count, self.max_scaled, self.rel_l2
        );
    }
}

/// Asserts `max_scaled ≤ scaled_tol` and `rel_l2 ≤ rel_l2_tol` (both fail on NaN).
pub fn assert_close(
    what: &str,
    got: &[f64],
    want: &[f64],
    scaled_tol: f64,
    rel_l2_tol: f64,
) -> Discrepancy {
    let d = discrepancy(got, want);
    assert!(
        d.max_scaled.is_finite() && d.max_scaled <= scaled_tol,
        "{what}: max |Δ|/max(1,|ref|) = {:e} > {scaled_tol:e} (max |Δ| = {:e})",
        d.max_scaled,
        d.max_abs
    );
    assert!(
        d.rel_l2.is_finite() && d.rel_l2 <= rel_l2_tol,
        "{what}: rel-L2 = {:e} > {rel_l2_tol:e}",
        d.rel_l2
    );
    d
}

/// α, σ, dα/dt, dσ/dt of a path, from its definition.
pub fn path_at(path: Interpolant, t: f64) -> (f64, f64, f64, f64) {
    match path {
        Interpolant::Linear => (t, 1.0 - t, 1.0, -1.0),
        Interpolant::Gvp => {
            let (s, c) = (FRAC_PI_2 * t).sin_cos();
            (s, c, FRAC_PI_2 * c, -FRAC_PI_2 * s)
        }
        Interpolant::Vp => {
            let u = 1.0 - t;
            let log_a = -0.25 * u * u * 19.9 - 0.05 * u;
            let beta_half = 0.5 * (0.1 + u * 19.9);
            let a = log_a.exp();
            let s = (1.0 - a * a).sqrt();
            (a, s, a * beta_half, -a * a * beta_half / s)
        }
    }
}

/// w(t) of a diffusion form, from the paper's table (SBDM written as
/// σ²·d/dt log(α/σ)).
pub fn diffusion_at(form: DiffusionForm, path: Interpolant, t: f64, norm: f64) -> f64 {
    let (a, s, da, ds) = path_at(path, t);
    match form {
        DiffusionForm::Constant => norm,
        DiffusionForm::Sbdm => norm * s * s * (da / a - ds / s),
        DiffusionForm::Sigma => norm * s,
        DiffusionForm::Linear => norm * (1.0 - t),
        DiffusionForm::Decreasing => 0.25 * (norm * (PI * t).cos() + 1.0).powi(2),
        DiffusionForm::IncreasingDecreasing => norm * (PI * t).sin().powi(2),
    }
}

/// Data x1 ~ N(μ, diag(s²)); x_t = α·x1 + σ·x0 is then N(α·μ, α²s² + σ²).
#[derive(Clone)]
pub struct GaussianData {
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
}

impl GaussianData {
    pub fn standard() -> Self {
        Self {
            mean: vec![1.0, -0.5, 0.25, 2.0, -1.5, 0.0, 0.75, -0.25],
            std: vec![0.5, 1.0, 0.7, 0.8, 1.5, 0.6, 1.2, 0.9],
        }
    }

    pub fn dims(&self) -> usize {
        self.mean.len()
    }

    /// Per dimension: the velocity, score and noise at x as `k·(x − m) + c`
    /// with m = α·μ the marginal mean: returns (m, V, k_v, c_v).
    fn marginal(&self, path: Interpolant, t: f64, j: usize) -> (f64, f64, f64, f64) {
        let (a, s, da, ds) = path_at(path, t);
        let (mu, sd) = (self.mean[j], self.std[j]);
        let m = a * mu;
        let v = a * a * sd * sd + s * s;
        // E[x1|x] = μ + α s²(x − m)/V, E[x0|x] = σ(x − m)/V.
        let k_v = (da * a * sd * sd + ds * s) / v;
        (m, v, k_v, da * mu)
    }

    /// The exact model output of `prediction` at (x, t) for one element.
    pub fn output(
        &self,
        path: Interpolant,
        prediction: Prediction,
        t: f64,
        j: usize,
        x: f64,
    ) -> f64 {
        let (m, v, k_v, c_v) = self.marginal(path, t, j);
        let (_, s, _, _) = path_at(path, t);
        match prediction {
            Prediction::Velocity => c_v + k_v * (x - m),
            Prediction::Score => -(x - m) / v,
            Prediction::Noise => s * (x - m) / v,
        }
    }

    /// The drift v + w·score at (·, t) as x ↦ a·x + b.
    pub fn drift(&self, path: Interpolant, t: f64, w: f64, j: usize) -> (f64, f64) {
        let (m, v, k_v, c_v) = self.marginal(path, t, j);
        let k = k_v - w / v;
        (k, c_v - k * m)
    }

    /// The time-t1 point of the exact flow through x0 = z at t0.
    pub fn exact_flow(&self, path: Interpolant, t0: f64, t1: f64, j: usize, z: f64) -> f64 {
        let (m0, v0, _, _) = self.marginal(path, t0, j);
        let (m1, v1, _, _) = self.marginal(path, t1, j);
        m1 + (v1 / v0).sqrt() * (z - m0)
    }

    /// Tweedie's E[x1 | x] at t as x ↦ a·x + b.
    pub fn tweedie(&self, path: Interpolant, t: f64, j: usize) -> (f64, f64) {
        let (m, v, _, _) = self.marginal(path, t, j);
        let (a, s, _, _) = path_at(path, t);
        // (x + σ²·score)/α with score = −(x − m)/V.
        let slope = (1.0 - s * s / v) / a;
        (slope, s * s * m / (v * a))
    }
}

/// The oracle as a sampler's model closure for `(N, D)` samples.
pub fn oracle<'a>(
    data: &'a GaussianData,
    path: Interpolant,
    prediction: Prediction,
    calls: &'a mut usize,
) -> impl FnMut(&Tensor, &Tensor) -> dit::Result<Tensor> + 'a {
    move |x: &Tensor, t: &Tensor| {
        *calls += 1;
        let ts = t.to_dtype(DType::F64)?.to_vec1::<f64>()?;
        let rows = x.to_dtype(DType::F64)?.to_vec2::<f64>()?;
        let d = data.dims();
        let mut out = Vec::with_capacity(rows.len() * d);
        for (row, &t) in rows.iter().zip(&ts) {
            for (j, &xj) in row.iter().enumerate() {
                out.push(data.output(path, prediction, t, j, xj));
            }
        }
        Ok(Tensor::from_vec(out, (rows.len(), d), &Device::Cpu)?.to_dtype(x.dtype())?)
    }
}

/// Per-dimension sample mean and (n − 1) variance of `(N, D)` rows.
pub fn moments(x: &Tensor) -> (Vec<f64>, Vec<f64>) {
    let rows = x.to_dtype(DType::F64).unwrap().to_vec2::<f64>().unwrap();
    let n = rows.len() as f64;
    let d = rows[0].len();
    let mean: Vec<f64> = (0..d)
        .map(|j| rows.iter().map(|r| r[j]).sum::<f64>() / n)
        .collect();
    let var = (0..d)
        .map(|j| rows.iter().map(|r| (r[j] - mean[j]).powi(2)).sum::<f64>() / (n - 1.0))
        .collect();
    (mean, var)
}
