//! The paper's initialisation and the presets' sizes.

use crate::support::model as common;

use candle_core::{DType, Device, Tensor};
use dit::model::params::parameter_counts;
use dit::model::{config::preset_names, Dit, DitConfig};

#[test]
fn fresh_model_outputs_exact_zeros() {
    // adaLN-Zero: zero modulation and a zero final layer make a new DiT output 0.
    for name in ["DiT-S/8", "DiT-B/8"] {
        let cfg = DitConfig::preset(name, 16).unwrap();
        let model = Dit::init(cfg.clone(), 7, &Device::Cpu, DType::F32).unwrap();
        let x = crate::support::random::normal(11, &[2, 4, 16, 16], 0.0, 1.0, DType::F32);
        let t = Tensor::new(&[10f32, 900.0], &Device::Cpu).unwrap();
        let y = Tensor::new(&[1u32, 1000], &Device::Cpu).unwrap();
        let out = model.forward(&x, &t, &y).unwrap();
        assert_eq!(out.dims(), [2, 8, 16, 16]);
        let values = out.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(
            values.iter().all(|v| *v == 0.0),
            "{name}: a fresh model must output exact zeros"
        );
    }
}

#[test]
fn initialisation_follows_the_paper() {
    let cfg = DitConfig::preset("DiT-S/8", 32).unwrap();
    let t = dit::model::params::initial_tensors(&cfg, 3, &Device::Cpu, DType::F32).unwrap();
    let stats = |name: &str| {
        let v = t[name].flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let mean = v.iter().map(|x| *x as f64).sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|x| (*x as f64 - mean).powi(2)).sum::<f64>() / v.len() as f64;
        let max = crate::support::compare::nan_max(v.iter().map(|x| x.abs() as f64));
        (mean, var.sqrt(), max)
    };
    // Xavier uniform: bound sqrt(6 / (fan_in + fan_out)), std bound/sqrt(3).
    let bound = (6.0f64 / (384.0 + 3.0 * 384.0)).sqrt();
    let (_, std, max) = stats("blocks.0.attn.qkv.weight");
    assert!(
        max <= bound && max > 0.99 * bound,
        "qkv max {max} vs bound {bound}"
    );
    assert!((std - bound / 3f64.sqrt()).abs() < 0.01 * bound);
    // The patch projection viewed as a linear (fan_in = C·p·p).
    let bound = (6.0f64 / (4.0 * 64.0 + 384.0)).sqrt();
    assert!(stats("x_embedder.proj.weight").2 <= bound);
    for name in [
        "y_embedder.embedding_table.weight",
        "t_embedder.mlp.0.weight",
        "t_embedder.mlp.2.weight",
    ] {
        let (mean, std, _) = stats(name);
        assert!(
            mean.abs() < 2e-3 && (std - 0.02).abs() < 1e-3,
            "{name}: N(0, 0.02) expected, got {mean} ± {std}"
        );
    }
    for name in [
        "blocks.3.adaLN_modulation.1.weight",
        "final_layer.linear.weight",
        "final_layer.linear.bias",
        "blocks.0.attn.qkv.bias",
    ] {
        assert_eq!(stats(name).2, 0.0, "{name} must start at zero");
    }
    // The same seed gives the same weights; another seed does not.
    let again = dit::model::params::initial_tensors(&cfg, 3, &Device::Cpu, DType::F32).unwrap();
    let other = dit::model::params::initial_tensors(&cfg, 4, &Device::Cpu, DType::F32).unwrap();
    let w = |m: &std::collections::HashMap<String, Tensor>| {
        m["blocks.0.mlp.fc1.weight"]
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    };
    assert_eq!(w(&t), w(&again));
    assert_ne!(w(&t), w(&other));
}

#[test]
fn parameter_counts_equal_the_official_ones() {
    // Published by the official release (DiT-XL/2 at 256x256, etc.).
    let official = [
        ("DiT-XL/2", 675_129_632, 674_834_720),
        ("DiT-S/2", 32_963_360, 32_865_056),
        ("DiT-B/4", 130_475_648, 130_426_496),
        ("DiT-L/8", 458_594_816, 458_578_432),
    ];
    for (name, total, trainable) in official {
        let cfg = DitConfig::preset(name, 32).unwrap();
        assert_eq!(parameter_counts(&cfg), (total, trainable), "{name}");
    }
    // All 12, against the counts of the independent PyTorch reference.
    let counts: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(common::fixture("param_counts.json")).unwrap(),
    )
    .unwrap();
    let names = preset_names();
    assert_eq!(names.len(), 12);
    for name in names {
        let cfg = DitConfig::preset(&name, 32).unwrap();
        let expected = (
            counts[&name]["total"].as_u64().unwrap() as usize,
            counts[&name]["trainable"].as_u64().unwrap() as usize,
        );
        assert_eq!(parameter_counts(&cfg), expected, "{name}");
    }
}

#[test]
fn preset_names_are_parsed_and_bad_ones_refused() {
    assert_eq!(DitConfig::preset("xl/2", 32).unwrap().hidden_size, 1152);
    assert_eq!(DitConfig::preset("DiT-B/8", 32).unwrap().num_heads, 12);
    for bad in ["DiT-M/2", "DiT-XL/3", "XL", "DiT-XL/2x"] {
        let err = DitConfig::preset(bad, 32).unwrap_err().to_string();
        assert!(err.contains(bad), "error for '{bad}' should name it: {err}");
    }
    assert!(DitConfig::preset("DiT-S/8", 12)
        .unwrap_err()
        .to_string()
        .contains("not a multiple"));
}
