//! Gradients through the whole model: every trainable parameter receives a
//! finite, non-zero gradient that matches PyTorch (f32 fixtures) and central
//! finite differences (f64).

use crate::support::model as common;

use candle_core::{DType, Device, Tensor, Var};
use common::*;
use dit::model::params::param_specs;
use dit::model::{Dit, DitConfig, LoadOptions};
use std::collections::HashMap;

fn tiny_config() -> DitConfig {
    DitConfig {
        input_size: 8,
        patch_size: 2,
        in_channels: 4,
        hidden_size: 64,
        depth: 2,
        num_heads: 2,
        mlp_ratio: 4.0,
        class_dropout_prob: 0.1,
        num_classes: 10,
        learn_sigma: true,
    }
}

/// sum(model(x, t, y) · R), the fixture script's loss.
fn loss(model: &Dit, io: &HashMap<String, Tensor>, dtype: DType) -> Tensor {
    let cfg = model.config();
    let n = cfg.out_channels() * cfg.input_size * cfg.input_size * 2;
    let r = Tensor::from_vec(det_uniform("loss-weights", n, 0), n, &Device::Cpu).unwrap();
    let r = r
        .reshape((2, cfg.out_channels(), cfg.input_size, cfg.input_size))
        .unwrap()
        .to_dtype(dtype)
        .unwrap();
    let x = io["x"].to_dtype(dtype).unwrap();
    let out = model.forward(&x, &io["t"], &labels(io, "y")).unwrap();
    (out * r).unwrap().sum_all().unwrap()
}

#[test]
fn gradients_cover_every_parameter_and_match_pytorch() {
    let opts = LoadOptions {
        num_heads: Some(2),
        ..Default::default()
    };
    let (cfg, tensors) =
        dit::model::checkpoint::read(&fixture("tiny_state_dict.pt"), &Device::Cpu, &opts).unwrap();
    let io = load_io("tiny_io.safetensors");
    let mut vars = HashMap::new();
    let mut inputs = HashMap::new();
    for (name, t) in tensors {
        if name == "pos_embed" {
            inputs.insert(name, t);
        } else {
            let v = Var::from_tensor(&t).unwrap();
            inputs.insert(name.clone(), v.as_tensor().clone());
            vars.insert(name, v);
        }
    }
    let model = Dit::from_tensors(cfg.clone(), &inputs).unwrap();
    let l = loss(&model, &io, DType::F32);
    let (_, rel) = errors(&l.reshape(1).unwrap(), &io["loss"]);
    assert!(rel < 1e-5, "loss differs from PyTorch: rel {rel:.3e}");
    let grads = l.backward().unwrap();

    let trainable: Vec<_> = param_specs(&cfg)
        .into_iter()
        .filter(|s| s.trainable)
        .collect();
    assert_eq!(trainable.len(), vars.len());
    let mut worst = (0.0f64, String::new());
    for spec in trainable {
        let g = grads
            .get(vars[&spec.name].as_tensor())
            .unwrap_or_else(|| panic!("no gradient reached '{}'", spec.name));
        let values = g.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(
            values.iter().all(|v| v.is_finite()),
            "'{}' has a non-finite gradient",
            spec.name
        );
        assert!(
            values.iter().any(|v| *v != 0.0),
            "'{}' has an all-zero gradient",
            spec.name
        );
        let (max, rel) = errors(g, &io[&format!("grad.{}", spec.name)]);
        if rel > worst.0 {
            worst = (rel, spec.name.clone());
        }
        assert!(
            rel < 1e-4,
            "'{}': gradient vs PyTorch rel L2 {rel:.3e}, max |Δ| {max:.3e}",
            spec.name
        );
    }
    println!(
        "worst gradient rel L2 vs PyTorch: {:.3e} ({})",
        worst.0, worst.1
    );
}

#[test]
fn gradients_match_finite_differences_in_f64() {
    let cfg = tiny_config();
    let io = load_io("tiny_io.safetensors");
    let base = det_tensors(&cfg, DType::F64);
    let vars: HashMap<String, Var> = base
        .iter()
        .map(|(k, t)| (k.clone(), Var::from_tensor(t).unwrap()))
        .collect();
    let inputs: HashMap<String, Tensor> = vars
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
        .collect();
    let model = Dit::from_tensors(cfg.clone(), &inputs).unwrap();
    let grads = loss(&model, &io, DType::F64).backward().unwrap();

    let h = 1e-5;
    let probes = [
        ("x_embedder.proj.weight", 5),
        ("x_embedder.proj.bias", 3),
        ("t_embedder.mlp.0.weight", 100),
        ("t_embedder.mlp.2.bias", 7),
        ("y_embedder.embedding_table.weight", 3 * 64 + 5),
        ("blocks.0.attn.qkv.weight", 1000),
        ("blocks.0.attn.qkv.weight", 64 * 64 + 17),
        ("blocks.1.attn.proj.weight", 33),
        ("blocks.0.mlp.fc1.weight", 2000),
        ("blocks.1.mlp.fc2.bias", 9),
        ("blocks.1.adaLN_modulation.1.weight", 4000),
        ("blocks.0.adaLN_modulation.1.bias", 300),
        ("final_layer.linear.weight", 50),
        ("final_layer.adaLN_modulation.1.weight", 700),
    ];
    for (name, index) in probes {
        let flat = base[name].flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let shifted = |delta: f64| {
            let mut v = flat.clone();
            v[index] += delta;
            let mut t = base.clone();
            t.insert(
                name.to_string(),
                Tensor::from_vec(v, base[name].dims(), &Device::Cpu).unwrap(),
            );
            let m = Dit::from_tensors(cfg.clone(), &t).unwrap();
            loss(&m, &io, DType::F64).to_scalar::<f64>().unwrap()
        };
        let fd = (shifted(h) - shifted(-h)) / (2.0 * h);
        let g = grads
            .get(vars[name].as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap()[index];
        let rel = (g - fd).abs() / fd.abs().max(1e-3);
        println!("{name}[{index}]: autograd {g:.8e}, finite difference {fd:.8e}, rel {rel:.2e}");
        assert!(
            rel < 1e-4,
            "{name}[{index}]: autograd {g} vs finite difference {fd}"
        );
    }
}
