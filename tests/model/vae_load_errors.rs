//! Loading refuses broken or mismatched VAE weights with messages that name
//! the file, the key and both shapes.

use candle_core::{Device, Tensor};
use dit::vae::{Vae, VaeConfig};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn tiny() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vae/tiny")
}

fn tiny_weights_file() -> PathBuf {
    tiny().join("diffusion_pytorch_model.safetensors")
}

/// A fresh temporary folder for one test, removed when dropped.
fn scratch(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("dit-vae-{name}-"))
        .tempdir()
        .unwrap()
}

/// A VAE folder holding the tiny config and `tensors`.
fn folder_with(name: &str, tensors: &HashMap<String, Tensor>) -> tempfile::TempDir {
    let dir = scratch(name);
    std::fs::copy(tiny().join("config.json"), dir.path().join("config.json")).unwrap();
    candle_core::safetensors::save(
        tensors,
        dir.path().join("diffusion_pytorch_model.safetensors"),
    )
    .unwrap();
    dir
}

fn tiny_tensors() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(tiny_weights_file(), &Device::Cpu).unwrap()
}

fn load_error(path: &Path) -> String {
    let err = Vae::load(path, &Device::Cpu).expect_err("loading should fail");
    let msg = format!("{err:#}");
    println!("{msg}");
    msg
}

#[test]
fn missing_key_is_named_with_its_shape() {
    let mut tensors = tiny_tensors();
    tensors.remove("decoder.up_blocks.1.resnets.0.conv_shortcut.weight");
    let msg = load_error(folder_with("missing", &tensors).path());
    assert!(
        msg.contains("'decoder.up_blocks.1.resnets.0.conv_shortcut.weight' is missing")
            && msg.contains("[16, 32, 1, 1]"),
        "{msg}"
    );
}

#[test]
fn wrong_shape_names_key_expected_and_found() {
    let mut tensors = tiny_tensors();
    let key = "encoder.mid_block.attentions.0.to_k.weight";
    tensors.insert(
        key.into(),
        Tensor::zeros((32, 16), candle_core::DType::F32, &Device::Cpu).unwrap(),
    );
    let msg = load_error(folder_with("shape", &tensors).path());
    assert!(
        msg.contains(key) && msg.contains("[32, 16]") && msg.contains("expected [32, 32]"),
        "{msg}"
    );
}

#[test]
fn bare_file_without_config_is_checked_against_the_sd_default() {
    let dir = scratch("bare");
    let file = dir.path().join("vae.safetensors");
    std::fs::copy(tiny_weights_file(), &file).unwrap();
    let msg = load_error(&file);
    assert!(
        msg.contains("'encoder.conv_in.weight' has shape [16, 3, 3, 3], expected [128, 3, 3, 3]"),
        "{msg}"
    );
}

#[test]
fn unexpected_keys_are_listed() {
    let mut tensors = tiny_tensors();
    tensors.insert(
        "loss.logvar".into(),
        Tensor::zeros(1, candle_core::DType::F32, &Device::Cpu).unwrap(),
    );
    let msg = load_error(folder_with("unexpected", &tensors).path());
    assert!(
        msg.contains("unexpected parameter(s)") && msg.contains("loss.logvar"),
        "{msg}"
    );
}

#[test]
fn truncated_file_is_reported_as_truncated() {
    let bytes = std::fs::read(tiny_weights_file()).unwrap();
    let dir = scratch("truncated");
    std::fs::copy(tiny().join("config.json"), dir.path().join("config.json")).unwrap();
    std::fs::write(
        dir.path().join("diffusion_pytorch_model.safetensors"),
        &bytes[..bytes.len() / 2],
    )
    .unwrap();
    let msg = load_error(dir.path());
    assert!(
        msg.contains("not a readable safetensors file") && msg.contains("truncated"),
        "{msg}"
    );
}

#[test]
fn non_safetensors_file_is_rejected() {
    let dir = scratch("not-safetensors");
    let file = dir.path().join("vae.safetensors");
    std::fs::write(&file, b"PK\x03\x04 this is a zip, not safetensors").unwrap();
    let msg = load_error(&file);
    assert!(msg.contains("not a readable safetensors file"), "{msg}");
}

#[test]
fn folder_without_weights_is_rejected() {
    let msg = load_error(scratch("empty").path());
    assert!(msg.contains("neither config.json"), "{msg}");
}

#[test]
fn unsupported_block_types_are_rejected() {
    let config: VaeConfig = serde_json::from_str(
        r#"{"block_out_channels": [32, 64], "norm_num_groups": 8,
            "down_block_types": ["DownEncoderBlock2D", "AttnDownEncoderBlock2D"],
            "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D"]}"#,
    )
    .unwrap();
    let msg = format!("{:#}", config.validate().unwrap_err());
    assert!(msg.contains("AttnDownEncoderBlock2D"), "{msg}");
}

#[test]
fn wrong_input_channels_are_rejected() {
    let vae = Vae::load(tiny(), &Device::Cpu).unwrap();
    let gray = Tensor::zeros((1, 1, 32, 32), candle_core::DType::F32, &Device::Cpu).unwrap();
    let msg = format!("{:#}", vae.encode(&gray).unwrap_err());
    assert!(
        msg.contains("(N, 3, H, W)") && msg.contains("[1, 1, 32, 32]"),
        "{msg}"
    );
}
