//! Vectorised exp and the loops built on it (softmax rows, GELU).
//!
//! The bodies are plain loops without branches, compiled three times (AVX-512,
//! AVX2+FMA, baseline) and picked at run time, so that the compiler
//! vectorises them for the CPU at hand without a global `target-cpu`.

const LOG2E: f32 = std::f32::consts::LOG2_E;
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// 1.5·2²³: adding it rounds to an integer held in the low mantissa bits.
const ROUND_MAGIC: f32 = 12_582_912.0;

/// e^x for f32, relative error ≈ 2e-7; saturates outside [−87.3, 88.7].
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.3, 88.7);
    let t = x * LOG2E + ROUND_MAGIC;
    let n = t - ROUND_MAGIC;
    let r = x - n * LN2_HI - n * LN2_LO;
    // Taylor to degree 6 on |r| ≤ ln2/2.
    let p = 1.0 / 720.0;
    let p = p * r + 1.0 / 120.0;
    let p = p * r + 1.0 / 24.0;
    let p = p * r + 1.0 / 6.0;
    let p = p * r + 0.5;
    let p = p * r + 1.0;
    let p = p * r + 1.0;
    let k = (t.to_bits() as i32) - (ROUND_MAGIC.to_bits() as i32);
    p * f32::from_bits(((k + 127) << 23) as u32)
}

const GELU_C: f32 = 0.797_884_6; // √(2/π)
const GELU_A: f32 = 0.044_715;

/// GELU-tanh as x·σ(2u), u = √(2/π)(x + 0.044715x³); returns σ(2u).
#[inline(always)]
fn gelu_sigmoid(x: f32) -> f32 {
    let u = GELU_C * (x + GELU_A * x * x * x);
    1.0 / (1.0 + exp(-2.0 * u))
}

macro_rules! dispatch {
    ($(#[$m:meta])* pub fn $name:ident($($arg:ident: $ty:ty),*) $(-> $ret:ty)? $body:block) => {
        $(#[$m])*
        pub fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn body($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
                unsafe fn v4($($arg: $ty),*) $(-> $ret)? { body($($arg),*) }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn v3($($arg: $ty),*) $(-> $ret)? { body($($arg),*) }
                if std::is_x86_feature_detected!("avx512f")
                    && std::is_x86_feature_detected!("avx512bw")
                    && std::is_x86_feature_detected!("avx512dq")
                    && std::is_x86_feature_detected!("avx512vl")
                {
                    // SAFETY: the features were just detected.
                    return unsafe { v4($($arg),*) };
                }
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    // SAFETY: the features were just detected.
                    return unsafe { v3($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}
pub(crate) use dispatch;

dispatch! {
    /// `xs[i] ← e^(xs[i] − shift)`; returns the sum of the results.
    pub fn exp_shifted_sum(xs: &mut [f32], shift: f32) -> f32 {
        // Eight partial sums: a single accumulator would serialise the adds.
        let mut acc = [0f32; 16];
        let mut chunks = xs.chunks_exact_mut(16);
        for c in &mut chunks {
            for i in 0..16 {
                let e = exp(c[i] - shift);
                c[i] = e;
                acc[i] += e;
            }
        }
        let mut total = 0.0;
        for x in chunks.into_remainder() {
            *x = exp(*x - shift);
            total += *x;
        }
        total + acc.iter().sum::<f32>()
    }
}

dispatch! {
    /// `xs[i] ← e^(xs[i]·scale − shift)` (no sum: the backward's recomputed P).
    pub fn exp_scaled_shifted(xs: &mut [f32], scale: f32, shift: f32) {
        for x in xs.iter_mut() {
            *x = exp(*x * scale - shift);
        }
    }
}

dispatch! {
    /// y = GELU-tanh(x).
    pub fn gelu_forward(x: &[f32], y: &mut [f32]) {
        for (y, &x) in y.iter_mut().zip(x) {
            *y = x * gelu_sigmoid(x);
        }
    }
}

dispatch! {
    /// dx = dy · d/dx[x·σ(2u)] = dy · (σ + x·2σ(1−σ)·u′).
    pub fn gelu_backward(x: &[f32], dy: &[f32], dx: &mut [f32]) {
        for ((dx, &x), &dy) in dx.iter_mut().zip(x).zip(dy) {
            let s = gelu_sigmoid(x);
            let du = GELU_C * (1.0 + 3.0 * GELU_A * x * x);
            *dx = dy * (s + x * 2.0 * s * (1.0 - s) * du);
        }
    }
}

/// The same in f64 (scalar; used by the f64 gradient checks).
pub fn gelu_forward_f64(x: &[f64], y: &mut [f64]) {
    for (y, &x) in y.iter_mut().zip(x) {
        let u = (2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x);
        *y = x / (1.0 + (-2.0 * u).exp());
    }
}

pub fn gelu_backward_f64(x: &[f64], dy: &[f64], dx: &mut [f64]) {
    let c = (2.0 / std::f64::consts::PI).sqrt();
    for ((dx, &x), &dy) in dx.iter_mut().zip(x).zip(dy) {
        let u = c * (x + 0.044715 * x * x * x);
        let s = 1.0 / (1.0 + (-2.0 * u).exp());
        let du = c * (1.0 + 3.0 * 0.044715 * x * x);
        *dx = dy * (s + x * 2.0 * s * (1.0 - s) * du);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn exp_is_accurate_over_the_range() {
        let mut worst = 0f64;
        for i in -8700..8800 {
            let x = i as f32 * 0.01;
            let rel = ((super::exp(x) as f64 - (x as f64).exp()) / (x as f64).exp()).abs();
            worst = worst.max(rel);
        }
        assert!(worst < 5e-7, "worst relative error {worst:e}");
    }
}
