//! The FID Inception against the TorchScript model run by PyTorch
//! (fixtures from scripts/eval_fixtures.py).

use crate::support::eval as eval_support;

use candle_core::Device;
use dit::eval::features::FeatureExtractor;
use dit::eval::images::ImageSet;
use dit::eval::inception::{import_torchscript, load_params, save_safetensors, InceptionV3};
use dit::eval::torchscript::{Attribute, TorchScriptArchive};
use dit::eval::Preprocess;
use dit::formats::npz;
use eval_support::*;

/// Runs the fixture images through the network and compares with PyTorch's
/// features; returns (worst per-image rel-L2, overall rel-L2, max |Δ|).
fn compare_features(net: InceptionV3, preprocess: Preprocess, key: &str) -> (f64, f64, f64) {
    let set = ImageSet::open(&fixture("images")).unwrap();
    let extractor = FeatureExtractor::new(net, preprocess);
    let ours = extractor.extract(&set, 4, |_| {}).unwrap();
    let theirs = npz::read(&fixture("inception_features.npz"), key).unwrap();
    assert_eq!(theirs.shape(), [ours.rows, ours.dim]);
    let theirs = theirs.to_f64();
    let ours: Vec<f64> = ours.data.iter().map(|&v| v as f64).collect();
    let worst = crate::support::compare::nan_max(
        ours.chunks(2048)
            .zip(theirs.chunks(2048))
            .map(|(a, b)| rel_l2(a, b)),
    );
    (worst, rel_l2(&ours, &theirs), max_abs_diff(&ours, &theirs))
}

#[test]
fn torchscript_reader_finds_every_parameter_and_attribute() {
    let Some(pt) = torchscript_weights() else {
        return;
    };
    let archive = TorchScriptArchive::open(&pt).unwrap();
    assert_eq!(archive.root_class, "__torch__.wrap_net.WrapNet");
    assert_eq!(archive.tensor_names().count(), 94 * 4);
    assert_eq!(
        archive.attribute("net.layers.mixed_4.tower.conv_1.padding"),
        Some(&Attribute::Ints(vec![0, 3]))
    );
    assert_eq!(
        archive.attribute("net.layers.conv.stride"),
        Some(&Attribute::Int(2))
    );
    let tensors = archive.load_all(&Device::Cpu).unwrap();
    for (name, key) in [
        ("net.layers.conv.weight", "conv1a_weight"),
        (
            "net.layers.mixed_10.tower_2_conv.var",
            "mixed_7c_branch_pool_bn_var",
        ),
    ] {
        let ours: Vec<f32> = tensors[name].flatten_all().unwrap().to_vec1().unwrap();
        let theirs = npz::read(&fixture("inception_features.npz"), key).unwrap();
        assert_eq!(tensors[name].dims(), theirs.shape(), "{name}");
        assert_eq!(
            ours,
            theirs.to_f32(),
            "{name} differs from torch's state_dict"
        );
    }
}

#[test]
fn features_match_pytorch_with_adm_preprocessing() {
    let Some(pt) = torchscript_weights() else {
        return;
    };
    let net = InceptionV3::load(&pt, &Device::Cpu).unwrap();
    let (worst, overall, max_abs) = compare_features(net, Preprocess::Adm, "adm");
    println!("adm: worst image rel-L2 {worst:.3e}, overall {overall:.3e}, max |Δ| {max_abs:.3e}");
    assert!(worst < 1e-4, "rel-L2 {worst:e} vs PyTorch");
}

#[test]
fn features_match_pytorch_with_pytorch_fid_preprocessing() {
    let Some(pt) = torchscript_weights() else {
        return;
    };
    let net = InceptionV3::load(&pt, &Device::Cpu).unwrap();
    let (worst, overall, max_abs) = compare_features(net, Preprocess::PytorchFid, "pytorch_fid");
    println!(
        "pytorch-fid: worst image rel-L2 {worst:.3e}, overall {overall:.3e}, max |Δ| {max_abs:.3e}"
    );
    assert!(worst < 1e-4, "rel-L2 {worst:e} vs PyTorch");
}

#[test]
fn converted_safetensors_hold_the_same_parameters() {
    let Some(pt) = torchscript_weights() else {
        return;
    };
    let imported = import_torchscript(&pt).unwrap();
    let dir = scratch_dir("safetensors");
    let out = dir.join("fid_inception.safetensors");
    save_safetensors(&imported, &out).unwrap();
    let reloaded = load_params(&out).unwrap();
    assert_eq!(imported.len(), reloaded.len());
    for (name, t) in &imported {
        let a: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
        let b: Vec<f32> = reloaded[name].flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(a, b, "{name}");
    }
}

#[test]
fn rejects_files_that_are_not_torchscript() {
    let dir = scratch_dir("not-torchscript");
    let text = dir.join("notes.pt");
    std::fs::write(&text, "hello").unwrap();
    let err = format!("{:#}", import_torchscript(&text).unwrap_err());
    assert!(
        err.contains("notes.pt") && err.contains("not a TorchScript archive"),
        "{err}"
    );

    // A zip without data.pkl/code/ (an .npz) is refused too.
    let err = format!(
        "{:#}",
        import_torchscript(&fixture("stats.npz")).unwrap_err()
    );
    assert!(
        err.contains("stats.npz") && err.contains("not a TorchScript archive"),
        "{err}"
    );

    // load_params accepts safetensors only when tagged as FID Inception weights.
    let other = dir.join("other.safetensors");
    let t = candle_core::Tensor::zeros(2, candle_core::DType::F32, &Device::Cpu).unwrap();
    candle_core::safetensors::save(&std::collections::HashMap::from([("x", t)]), &other).unwrap();
    let err = format!("{:#}", load_params(&other).unwrap_err());
    assert!(
        err.contains("other.safetensors") && err.contains("not an FID Inception"),
        "{err}"
    );
}
