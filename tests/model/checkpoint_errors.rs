//! Bad checkpoints give clear errors that name the file and the problem, never a panic.

use crate::support::model as common;

use candle_core::{DType, Device, Tensor};
use common::*;
use dit::model::checkpoint::{self, LoadOptions};
use dit::model::{Dit, DitConfig};
use std::collections::HashMap;
use std::path::Path;

fn load_error(path: &Path) -> String {
    let opts = LoadOptions {
        num_heads: Some(2),
        ..Default::default()
    };
    match Dit::load_with(path, &Device::Cpu, &opts) {
        Ok(_) => panic!("{} loaded, but it is broken", path.display()),
        Err(e) => format!("{e:#}"),
    }
}

fn assert_mentions(err: &str, parts: &[&str]) {
    for p in parts {
        assert!(err.contains(p), "error should mention '{p}': {err}");
    }
}

fn tiny_tensors() -> (DitConfig, HashMap<String, Tensor>) {
    let opts = LoadOptions {
        num_heads: Some(2),
        ..Default::default()
    };
    checkpoint::read(&fixture("tiny_state_dict.pt"), &Device::Cpu, &opts).unwrap()
}

#[test]
fn truncated_pytorch_checkpoint() {
    let bytes = std::fs::read(fixture("tiny_state_dict.pt")).unwrap();
    let path_dir = tempfile::tempdir().unwrap();
    let path = path_dir.path().join("truncated.pt");
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    assert_mentions(
        &load_error(&path),
        &["truncated.pt", "not a readable PyTorch checkpoint"],
    );
}

#[test]
fn truncated_safetensors() {
    let (cfg, tensors) = tiny_tensors();
    let path_dir = tempfile::tempdir().unwrap();
    let path = path_dir.path().join("full.safetensors");
    checkpoint::save(&path, &cfg, &tensors).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let cut_dir = tempfile::tempdir().unwrap();
    let cut = cut_dir.path().join("cut.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() - 1000]).unwrap();
    assert_mentions(&load_error(&cut), &["cut.safetensors", "truncated"]);
    std::fs::write(&cut, &bytes[..5]).unwrap();
    assert_mentions(
        &load_error(&cut),
        &["cut.safetensors", "not a readable safetensors file"],
    );
}

#[test]
fn wrong_shape_names_the_key_and_both_shapes() {
    let (cfg, mut tensors) = tiny_tensors();
    tensors.insert(
        "blocks.1.mlp.fc1.weight".into(),
        Tensor::zeros((128, 64), DType::F32, &Device::Cpu).unwrap(),
    );
    // With the configuration stored (native) and without it (inferred from shapes).
    let native_dir = tempfile::tempdir().unwrap();
    let native = native_dir.path().join("wrong_shape.safetensors");
    checkpoint::save(&native, &cfg, &tensors).unwrap();
    assert_mentions(
        &load_error(&native),
        &[
            "wrong_shape.safetensors",
            "blocks.1.mlp.fc1.weight",
            "[128, 64]",
            "[256, 64]",
        ],
    );
    let plain_dir = tempfile::tempdir().unwrap();
    let plain = plain_dir.path().join("wrong_shape_plain.safetensors");
    dit::formats::safetensors_file::write(&plain, &tensors, HashMap::new()).unwrap();
    assert_mentions(
        &load_error(&plain),
        &["blocks.1.mlp.fc1.weight", "[128, 64]", "[256, 64]"],
    );
}

#[test]
fn missing_and_unexpected_keys() {
    let (cfg, mut tensors) = tiny_tensors();
    tensors.remove("blocks.1.attn.proj.bias");
    let path_dir = tempfile::tempdir().unwrap();
    let path = path_dir.path().join("missing.safetensors");
    checkpoint::save(&path, &cfg, &tensors).unwrap();
    assert_mentions(
        &load_error(&path),
        &[
            "missing.safetensors",
            "missing parameter 'blocks.1.attn.proj.bias'",
        ],
    );

    let (cfg, mut tensors) = tiny_tensors();
    tensors.insert(
        "vae.decoder.weight".into(),
        Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap(),
    );
    let path_dir = tempfile::tempdir().unwrap();
    let path = path_dir.path().join("extra.safetensors");
    checkpoint::save(&path, &cfg, &tensors).unwrap();
    assert_mentions(
        &load_error(&path),
        &["unexpected parameter", "vae.decoder.weight"],
    );
}

#[test]
fn things_that_are_not_checkpoints() {
    let text_dir = tempfile::tempdir().unwrap();
    let text = text_dir.path().join("notes.pt");
    std::fs::write(&text, "these are not weights\n").unwrap();
    assert_mentions(
        &load_error(&text),
        &["notes.pt", "not a readable PyTorch checkpoint"],
    );

    let empty_dir = tempfile::tempdir().unwrap();
    let empty = empty_dir.path().join("empty.safetensors");
    std::fs::write(&empty, b"").unwrap();
    assert_mentions(
        &load_error(&empty),
        &["empty.safetensors", "not a readable safetensors file"],
    );

    // A real safetensors file that holds something else entirely.
    let other_dir = tempfile::tempdir().unwrap();
    let other = other_dir.path().join("other.safetensors");
    let t = HashMap::from([(
        "encoder.conv_in.weight".to_string(),
        Tensor::zeros((8, 3, 3, 3), DType::F32, &Device::Cpu).unwrap(),
    )]);
    dit::formats::safetensors_file::write(&other, &t, HashMap::new()).unwrap();
    assert_mentions(
        &load_error(&other),
        &[
            "other.safetensors",
            "missing parameter 'x_embedder.proj.weight'",
            "not a DiT checkpoint",
        ],
    );

    let folder_dir = tempfile::tempdir().unwrap();
    let folder = folder_dir.path().join("just_a_folder");
    std::fs::create_dir_all(&folder).unwrap();
    assert_mentions(&load_error(&folder), &["just_a_folder", "diffusers"]);

    assert_mentions(
        &load_error(
            &tempfile::tempdir()
                .unwrap()
                .path()
                .join("does_not_exist.pt"),
        ),
        &["does_not_exist.pt", "no such file"],
    );
}
