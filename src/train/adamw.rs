//! AdamW that updates every parameter in place, in one pass over memory.
//!
//! The update is PyTorch's `torch.optim.AdamW` (decoupled weight decay,
//! bias-corrected moments, ε added after the bias-corrected square root), so
//! a run can be compared with or resumed from PyTorch numbers:
//!
//! ```text
//! p ← p·(1 − lr·wd)
//! m ← β1·m + (1 − β1)·g
//! v ← β2·v + (1 − β2)·g²
//! p ← p − lr/(1 − β1^t) · m / (√v/√(1 − β2^t) + ε)
//! ```
//!
//! Where [`route`] has a CPU kernel the moments live in plain vectors next to
//! the optimizer and the parameter buffer is rewritten through
//! `Tensor::inplace_op2`, so a step allocates nothing. Elsewhere the same
//! formula runs as tensor ops.

use crate::ops::float::{contiguous, Float};
use crate::ops::route::{route, Kernels, Route};
use crate::{bail, Context, Result};
use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, DType, Device, InplaceOp2, Layout, Tensor, Var};
use rayon::prelude::*;
use std::cell::RefCell;
use std::collections::HashMap;

/// Hyper-parameters; the defaults are PyTorch's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
        }
    }
}

enum Moments {
    F32 {
        m: Vec<f32>,
        v: Vec<f32>,
    },
    F64 {
        m: Vec<f64>,
        v: Vec<f64>,
    },
    /// Devices without an in-place kernel here.
    Tensors {
        m: Var,
        v: Var,
    },
}

struct Slot {
    name: String,
    param: Var,
    moments: Moments,
    /// Updates applied to this parameter (PyTorch counts per parameter: one
    /// that received no gradient is not stepped).
    step: u64,
}

pub struct AdamW {
    slots: Vec<Slot>,
    config: AdamWConfig,
}

fn zeros_like(param: &Var) -> Result<Moments> {
    let n = param.elem_count();
    let kernel = route(param.device(), param.dtype(), Kernels::CPU_FLOAT) == Route::CpuKernel;
    Ok(match param.dtype() {
        DType::F32 if kernel => Moments::F32 {
            m: vec![0.0; n],
            v: vec![0.0; n],
        },
        DType::F64 if kernel => Moments::F64 {
            m: vec![0.0; n],
            v: vec![0.0; n],
        },
        _ => Moments::Tensors {
            m: Var::zeros(param.shape(), param.dtype(), param.device())?,
            v: Var::zeros(param.shape(), param.dtype(), param.device())?,
        },
    })
}

impl AdamW {
    /// `params`: the trainable parameters by name (the names key the state).
    pub fn new(params: Vec<(String, Var)>, config: AdamWConfig) -> Result<Self> {
        let slots = params
            .into_iter()
            .map(|(name, param)| {
                Ok(Slot {
                    moments: zeros_like(&param)?,
                    name,
                    param,
                    step: 0,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { slots, config })
    }

    pub fn config(&self) -> &AdamWConfig {
        &self.config
    }

    /// Changes the learning rate (schedules, warm-up) from the next step on.
    pub fn set_lr(&mut self, lr: f64) {
        self.config.lr = lr;
    }

    /// The largest per-parameter step count (the number of `step` calls when
    /// every parameter receives gradients).
    pub fn step_count(&self) -> u64 {
        self.slots.iter().map(|s| s.step).max().unwrap_or(0)
    }

    /// One AdamW update of every parameter that has a gradient in `grads`.
    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        let c = self.config;
        for slot in &mut self.slots {
            let Some(grad) = grads.get(slot.param.as_tensor()) else {
                continue;
            };
            if grad.shape() != slot.param.shape() {
                bail!(
                    "AdamW: gradient of '{}' has shape {:?}, parameter {:?}",
                    slot.name,
                    grad.dims(),
                    slot.param.dims()
                );
            }
            slot.step += 1;
            let t = slot.step as i32;
            let coeffs = Coefficients {
                decay: 1.0 - c.lr * c.weight_decay,
                beta1: c.beta1,
                beta2: c.beta2,
                step_size: c.lr / (1.0 - c.beta1.powi(t)),
                bias2_sqrt: (1.0 - c.beta2.powi(t)).sqrt(),
                eps: c.eps,
            };
            let grad = grad.to_dtype(slot.param.dtype())?.contiguous()?;
            match &mut slot.moments {
                Moments::F32 { m, v } => slot.param.as_tensor().inplace_op2(
                    &grad,
                    &Kernel {
                        coeffs,
                        m: RefCell::new(m),
                        v: RefCell::new(v),
                    },
                )?,
                Moments::F64 { m, v } => slot.param.as_tensor().inplace_op2(
                    &grad,
                    &Kernel {
                        coeffs,
                        m: RefCell::new(m),
                        v: RefCell::new(v),
                    },
                )?,
                Moments::Tensors { m, v } => coeffs.apply_tensors(&slot.param, m, v, &grad)?,
            }
        }
        Ok(())
    }

    /// The optimizer state as named tensors: `{name}.exp_avg`,
    /// `{name}.exp_avg_sq` (the parameter's shape and dtype) and `{name}.step`
    /// (an f64 scalar), for every parameter.
    pub fn state(&self) -> Result<HashMap<String, Tensor>> {
        let mut out = HashMap::new();
        for slot in &self.slots {
            let (shape, dev) = (slot.param.shape(), slot.param.device());
            let (m, v) = match &slot.moments {
                Moments::F32 { m, v } => (
                    Tensor::from_slice(m, shape, dev)?,
                    Tensor::from_slice(v, shape, dev)?,
                ),
                Moments::F64 { m, v } => (
                    Tensor::from_slice(m, shape, dev)?,
                    Tensor::from_slice(v, shape, dev)?,
                ),
                Moments::Tensors { m, v } => (m.as_tensor().copy()?, v.as_tensor().copy()?),
            };
            out.insert(format!("{}.exp_avg", slot.name), m);
            out.insert(format!("{}.exp_avg_sq", slot.name), v);
            out.insert(
                format!("{}.step", slot.name),
                Tensor::new(slot.step as f64, &Device::Cpu)?,
            );
        }
        Ok(out)
    }

    /// Restores a state written by [`AdamW::state`]; every parameter's entries
    /// must be present with matching shapes. Continuing from it gives the same
    /// numbers as never having stopped.
    pub fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        let get = |key: String| {
            state
                .get(&key)
                .with_context(|| format!("AdamW state lacks '{key}'"))
        };
        // Check everything before changing anything.
        let mut loaded = Vec::with_capacity(self.slots.len());
        for slot in &self.slots {
            let m = get(format!("{}.exp_avg", slot.name))?;
            let v = get(format!("{}.exp_avg_sq", slot.name))?;
            for t in [m, v] {
                if t.shape() != slot.param.shape() {
                    bail!(
                        "AdamW state for '{}' has shape {:?}, parameter {:?}",
                        slot.name,
                        t.dims(),
                        slot.param.dims()
                    );
                }
            }
            let step = get(format!("{}.step", slot.name))?
                .to_dtype(DType::F64)?
                .to_scalar::<f64>()?;
            if step < 0.0 || step.fract() != 0.0 {
                bail!("AdamW step for '{}' is not a count: {step}", slot.name);
            }
            let dtype = slot.param.dtype();
            let m = m.to_dtype(dtype)?.flatten_all()?;
            let v = v.to_dtype(dtype)?.flatten_all()?;
            let moments = match &slot.moments {
                Moments::F32 { .. } => Moments::F32 {
                    m: m.to_vec1()?,
                    v: v.to_vec1()?,
                },
                Moments::F64 { .. } => Moments::F64 {
                    m: m.to_vec1()?,
                    v: v.to_vec1()?,
                },
                Moments::Tensors { .. } => {
                    let (shape, dev) = (slot.param.shape(), slot.param.device());
                    Moments::Tensors {
                        m: Var::from_tensor(&m.reshape(shape)?.to_device(dev)?)?,
                        v: Var::from_tensor(&v.reshape(shape)?.to_device(dev)?)?,
                    }
                }
            };
            loaded.push((moments, step as u64));
        }
        for (slot, (moments, step)) in self.slots.iter_mut().zip(loaded) {
            slot.moments = moments;
            slot.step = step;
        }
        Ok(())
    }
}

/// The per-step scalars of the update, in f64.
#[derive(Clone, Copy)]
struct Coefficients {
    decay: f64,
    beta1: f64,
    beta2: f64,
    step_size: f64,
    bias2_sqrt: f64,
    eps: f64,
}

impl Coefficients {
    fn apply_tensors(&self, p: &Var, m: &Var, v: &Var, g: &Tensor) -> Result<()> {
        let m_new = ((m.as_tensor() * self.beta1)? + (g * (1.0 - self.beta1))?)?;
        let v_new = ((v.as_tensor() * self.beta2)? + (g.sqr()? * (1.0 - self.beta2))?)?;
        let denom = ((v_new.sqrt()? / self.bias2_sqrt)? + self.eps)?;
        let p_new = ((p.as_tensor() * self.decay)? - ((&m_new / denom)? * self.step_size)?)?;
        m.set(&m_new)?;
        v.set(&v_new)?;
        Ok(p.set(&p_new)?)
    }
}

/// In-place op on the parameter; the moments ride along in the op itself
/// because candle's in-place ops give mutable access to one buffer only.
struct Kernel<'a, T> {
    coeffs: Coefficients,
    m: RefCell<&'a mut Vec<T>>,
    v: RefCell<&'a mut Vec<T>>,
}

/// Below this many elements a parameter is updated on one thread.
const PARALLEL_MIN: usize = 1 << 15;
const CHUNK: usize = 1 << 13;

fn update<T: Float>(c: &Coefficients, p: &mut [T], m: &mut [T], v: &mut [T], g: &[T]) {
    let cast = |x: f64| T::from(x).expect("finite coefficient");
    let (decay, b1, b2) = (cast(c.decay), cast(c.beta1), cast(c.beta2));
    let (one_b1, one_b2) = (cast(1.0 - c.beta1), cast(1.0 - c.beta2));
    let (step_size, inv_bias2_sqrt, eps) =
        (cast(c.step_size), cast(1.0 / c.bias2_sqrt), cast(c.eps));
    let n = p.len();
    let (p, m, v, g) = (&mut p[..n], &mut m[..n], &mut v[..n], &g[..n]);
    for i in 0..n {
        let gi = g[i];
        let mi = b1 * m[i] + one_b1 * gi;
        let vi = b2 * v[i] + one_b2 * gi * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] = p[i] * decay - step_size * mi / (vi.sqrt() * inv_bias2_sqrt + eps);
    }
}

impl<T: Float> Kernel<'_, T> {
    fn run(&self, p: &mut [T], g: &[T]) -> candle_core::Result<()> {
        let mut m = self.m.borrow_mut();
        let mut v = self.v.borrow_mut();
        if p.len() != m.len() || g.len() != p.len() {
            candle_core::bail!("AdamW: parameter, gradient and state sizes differ");
        }
        let coeffs = self.coeffs;
        if p.len() < PARALLEL_MIN {
            update(&self.coeffs, p, &mut m[..], &mut v[..], g);
        } else {
            p.par_chunks_mut(CHUNK)
                .zip(m.par_chunks_mut(CHUNK))
                .zip(v.par_chunks_mut(CHUNK))
                .zip(g.par_chunks(CHUNK))
                .for_each(|(((p, m), v), g)| update(&coeffs, p, m, v, g));
        }
        Ok(())
    }
}

impl<T: Float> InplaceOp2 for Kernel<'_, T> {
    fn name(&self) -> &'static str {
        "adamw"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<()> {
        let (p0, p1) = contiguous(l1, "adamw")?;
        let (g0, g1) = contiguous(l2, "adamw")?;
        let g = &T::slice(s2)?[g0..g1];
        self.run(&mut T::slice_mut(s1)?[p0..p1], g)
    }
}
