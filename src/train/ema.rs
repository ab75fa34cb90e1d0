//! Exponential moving average of the weights, `ema ← d·ema + (1 − d)·p`,
//! updated in place (no new buffers per step).

use crate::ops::float::{contiguous, Float};
use crate::ops::route::{route_for, Kernels, Route};
use crate::{bail, Context, Result};
use candle_core::{CpuStorage, InplaceOp2, Layout, Tensor, Var};
use rayon::prelude::*;
use std::collections::HashMap;

struct EmaKernel {
    decay: f64,
}

const CHUNK: usize = 1 << 13;

impl EmaKernel {
    fn run<T: Float>(&self, ema: &mut [T], p: &[T]) {
        let d = T::from(self.decay).expect("finite decay");
        let one_d = T::from(1.0 - self.decay).expect("finite decay");
        ema.par_chunks_mut(CHUNK)
            .zip(p.par_chunks(CHUNK))
            .for_each(|(e, p)| {
                for (e, &p) in e.iter_mut().zip(p) {
                    *e = d * *e + one_d * p;
                }
            });
    }
}

impl InplaceOp2 for EmaKernel {
    fn name(&self) -> &'static str {
        "ema"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<()> {
        let (e0, e1) = contiguous(l1, "ema")?;
        let (p0, p1) = contiguous(l2, "ema")?;
        if e1 - e0 != p1 - p0 {
            candle_core::bail!("ema: sizes differ");
        }
        match s1 {
            CpuStorage::F32(e) => self.run(&mut e[e0..e1], &f32::slice(s2)?[p0..p1]),
            CpuStorage::F64(e) => self.run(&mut e[e0..e1], &f64::slice(s2)?[p0..p1]),
            _ => candle_core::bail!("ema: only f32 and f64 are supported"),
        }
        Ok(())
    }
}

/// `ema ← decay·ema + (1 − decay)·param`, in place where [`route_for`] has
/// a kernel.
pub fn ema_update(ema: &Var, param: &Tensor, decay: f64) -> Result<()> {
    if ema.shape() != param.shape() {
        bail!("ema: shapes {:?} and {:?} differ", ema.dims(), param.dims());
    }
    let param = param.detach().to_dtype(ema.dtype())?.contiguous()?;
    let average = ema.as_tensor();
    match route_for(average, Kernels::CPU_FLOAT) {
        Route::CpuKernel if average.is_contiguous() => {
            Ok(average.inplace_op2(&param, &EmaKernel { decay })?)
        }
        _ => Ok(ema.set(&((average * decay)? + (param * (1.0 - decay))?)?)?),
    }
}

/// EMA copies of named parameters.
pub struct Ema {
    decay: f64,
    weights: Vec<(String, Var)>,
}

impl Ema {
    /// Starts the average at a copy of `params`.
    pub fn new(params: &[(String, Var)], decay: f64) -> Result<Self> {
        let weights = params
            .iter()
            .map(|(name, p)| Ok((name.clone(), Var::from_tensor(&p.as_tensor().copy()?)?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { decay, weights })
    }

    pub fn decay(&self) -> f64 {
        self.decay
    }

    /// Changes the decay from the next update on (EMA warm-up schedules).
    pub fn set_decay(&mut self, decay: f64) {
        self.decay = decay;
    }

    /// One update from the current parameters, given in the order (and with
    /// the names) this EMA was created with.
    pub fn update(&mut self, params: &[(String, Var)]) -> Result<()> {
        if params.len() != self.weights.len() {
            bail!(
                "ema: {} parameters given, {} tracked",
                params.len(),
                self.weights.len()
            );
        }
        for ((name, ema), (pname, p)) in self.weights.iter().zip(params) {
            if name != pname {
                bail!("ema: parameter '{pname}' given where '{name}' is tracked");
            }
            ema_update(ema, p.as_tensor(), self.decay)?;
        }
        Ok(())
    }

    /// The averaged weights by name (copies: safe to keep or save).
    pub fn tensors(&self) -> Result<HashMap<String, Tensor>> {
        self.weights
            .iter()
            .map(|(n, v)| Ok((n.clone(), v.as_tensor().detach().copy()?)))
            .collect()
    }

    /// Replaces the averaged weights (checkpoint resume); every tracked name
    /// must be present with its shape.
    pub fn load_state(&mut self, weights: &HashMap<String, Tensor>) -> Result<()> {
        for (name, ema) in &self.weights {
            let t = weights
                .get(name)
                .with_context(|| format!("EMA state lacks '{name}'"))?;
            if t.shape() != ema.shape() {
                bail!(
                    "EMA '{name}' has shape {:?}, expected {:?}",
                    t.dims(),
                    ema.dims()
                );
            }
        }
        for (name, ema) in &self.weights {
            ema.set(
                &weights[name]
                    .to_dtype(ema.dtype())?
                    .to_device(ema.device())?,
            )?;
        }
        Ok(())
    }
}
