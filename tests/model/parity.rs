//! The model against an independent PyTorch reference (scripts/model_fixtures.py)
//! at f32: relative L2 < 1e-5 and max |Δ| < 1e-4 on forward and forward_with_cfg.

use crate::support::model as common;

use candle_core::{DType, Device};
use common::*;
use dit::diffusion::{ClassifierFreeGuidance, GuidanceChannels};
use dit::model::{Dit, DitConfig, LoadOptions, WeightSet};
use std::collections::HashMap;

fn check_io(tag: &str, model: &Dit, io: &HashMap<String, candle_core::Tensor>, out_key: &str) {
    let out = model.forward(&io["x"], &io["t"], &labels(io, "y")).unwrap();
    assert_close(&format!("{tag} forward"), &out, &io[out_key]);
}

fn check_cfg(tag: &str, model: &Dit, io: &HashMap<String, candle_core::Tensor>) {
    for (channels, key) in [
        (GuidanceChannels::Official, "cfg_out_official"),
        (GuidanceChannels::All, "cfg_out_all"),
    ] {
        let guidance = ClassifierFreeGuidance::new(4.0, channels);
        let out = model
            .forward_with_cfg(&io["cfg_x"], &io["cfg_t"], &labels(io, "cfg_y"), &guidance)
            .unwrap();
        assert_close(
            &format!("{tag} forward_with_cfg {channels:?}"),
            &out,
            &io[key],
        );
    }
}

fn preset_parity(name: &str, fixture_name: &str) {
    let cfg = DitConfig::preset(name, 16).unwrap();
    let model = Dit::from_tensors(cfg.clone(), &det_tensors(&cfg, DType::F32)).unwrap();
    let io = load_io(fixture_name);
    check_io(name, &model, &io, "out");
    check_cfg(name, &model, &io);
}

#[test]
fn dit_s8_matches_pytorch() {
    preset_parity("DiT-S/8", "dit_s8_io.safetensors");
}

#[test]
fn dit_b4_matches_pytorch() {
    preset_parity("DiT-B/4", "dit_b4_io.safetensors");
}

fn tiny_opts() -> LoadOptions {
    // The tiny model's 32-wide heads cannot be inferred from shapes alone.
    LoadOptions {
        num_heads: Some(2),
        ..Default::default()
    }
}

#[test]
fn tiny_released_state_dict_matches_pytorch() {
    let model = Dit::load_with(fixture("tiny_state_dict.pt"), &Device::Cpu, &tiny_opts()).unwrap();
    let io = load_io("tiny_io.safetensors");
    check_io("tiny .pt", &model, &io, "out");
    check_cfg("tiny .pt", &model, &io);
}

#[test]
fn tiny_train_checkpoint_loads_ema_by_default_and_raw_on_request() {
    let io = load_io("tiny_io.safetensors");
    let ema = Dit::load_with(fixture("tiny_train.pt"), &Device::Cpu, &tiny_opts()).unwrap();
    check_io("train.py ema", &ema, &io, "ema_out");
    let raw_opts = LoadOptions {
        weights: WeightSet::Raw,
        ..tiny_opts()
    };
    let raw = Dit::load_with(fixture("tiny_train.pt"), &Device::Cpu, &raw_opts).unwrap();
    check_io("train.py model", &raw, &io, "out");
}

#[test]
fn every_format_gives_identical_outputs() {
    let io = load_io("tiny_io.safetensors");
    let (x, t, y) = (&io["x"], &io["t"], &labels(&io, "y"));
    let reference =
        Dit::load_with(fixture("tiny_state_dict.pt"), &Device::Cpu, &tiny_opts()).unwrap();
    let expected = reference.forward(x, t, y).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let native = dir.path().join("tiny.safetensors");
    let (cfg, tensors) =
        dit::model::checkpoint::read(&fixture("tiny_state_dict.pt"), &Device::Cpu, &tiny_opts())
            .unwrap();
    dit::model::checkpoint::save(&native, &cfg, &tensors).unwrap();

    let loaded = [
        (
            "plain safetensors",
            Dit::load_with(
                fixture("tiny_plain.safetensors"),
                &Device::Cpu,
                &tiny_opts(),
            ),
        ),
        (
            "train.py raw",
            Dit::load_with(
                fixture("tiny_train.pt"),
                &Device::Cpu,
                &LoadOptions {
                    weights: WeightSet::Raw,
                    ..tiny_opts()
                },
            ),
        ),
        // These two carry their configuration: no options needed.
        (
            "diffusers folder",
            Dit::load(fixture("tiny_diffusers"), &Device::Cpu),
        ),
        ("native safetensors", Dit::load(&native, &Device::Cpu)),
    ];
    for (what, model) in loaded {
        let model = model.unwrap_or_else(|e| panic!("{what}: {e:#}"));
        assert_eq!(model.config(), reference.config(), "{what}: configuration");
        let out = model.forward(x, t, y).unwrap();
        assert_eq!(
            errors(&out, &expected).0,
            0.0,
            "{what}: outputs differ from the .pt model"
        );
    }
}
