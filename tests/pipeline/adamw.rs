//! The in-place AdamW and EMA: PyTorch's numbers, an f64 reference of the
//! formula, per-parameter step counts, and exact resume from saved state.

use candle_core::{DType, Device, Tensor, Var};
use dit::train::adamw::{AdamW, AdamWConfig};
use dit::train::ema::{ema_update, Ema};
use std::collections::HashMap;

const CFG: AdamWConfig = AdamWConfig {
    lr: 0.1,
    beta1: 0.9,
    beta2: 0.99,
    eps: 1e-8,
    weight_decay: 0.1,
};

/// Gradient `g` for `p` through backward of sum(p·g).
fn step_with(opt: &mut AdamW, p: &Var, g: &[f64]) {
    let g = Tensor::new(g, &Device::Cpu)
        .unwrap()
        .to_dtype(p.dtype())
        .unwrap();
    let grads = (p.as_tensor() * g)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    opt.step(&grads).unwrap();
}

const P0: [f64; 7] = [0.5, -1.0, 2.0, 0.0, -0.25, 3.0, 1e-3];
const GRADS: [[f64; 7]; 3] = [
    [0.1, -0.2, 0.3, 1.5, -2.0, 0.0, 1e-4],
    [-0.3, 0.25, 0.0, 2.0, 1.0, -0.5, 1e-4],
    [0.05, 0.5, -1.0, -3.0, 0.0, 0.7, -2e-4],
];

#[test]
fn matches_pytorch_fused_adamw() {
    // torch.optim.AdamW([p], lr=0.1, betas=(0.9, 0.99), eps=1e-8,
    // weight_decay=0.1, fused=True), three steps with GRADS (torch 2.15).
    let expected = [
        0.4637353718280792f64,
        -0.948817253112793,
        1.8222498893737793,
        -0.19692745804786682,
        -0.09749866276979446,
        2.9658875465393066,
        -0.1884726881980896,
    ];
    let expected_v = [
        0.0010140100494027138f64,
        0.0035107899457216263,
        0.010882089845836163,
        0.1516522467136383,
        0.0491039976477623,
        0.007374999579042196,
        5.970099414831509e-10,
    ];
    let (expected, expected_v) = (expected.map(|x| x as f32), expected_v.map(|x| x as f32));
    let p = Var::new(&P0.map(|x| x as f32)[..], &Device::Cpu).unwrap();
    let mut opt = AdamW::new(vec![("w".into(), p.clone())], CFG).unwrap();
    for g in GRADS {
        step_with(&mut opt, &p, &g);
    }
    let got = p.as_tensor().to_vec1::<f32>().unwrap();
    let v = opt.state().unwrap()["w.exp_avg_sq"]
        .to_vec1::<f32>()
        .unwrap();
    for i in 0..7 {
        let rel = ((got[i] - expected[i]) / expected[i].abs().max(1e-3)).abs();
        assert!(rel < 2e-6, "p[{i}] = {} vs PyTorch {}", got[i], expected[i]);
        let rel_v = ((v[i] - expected_v[i]) / expected_v[i]).abs();
        assert!(
            rel_v < 2e-6,
            "v[{i}] = {} vs PyTorch {}",
            v[i],
            expected_v[i]
        );
    }
}

/// The formula, element by element, in f64.
fn reference(steps: usize) -> Vec<f64> {
    let (mut p, mut m, mut v) = (P0.to_vec(), [0.0; 7], [0.0; 7]);
    for (t, g) in GRADS.iter().enumerate().take(steps) {
        let t = t as i32 + 1;
        for i in 0..7 {
            p[i] *= 1.0 - CFG.lr * CFG.weight_decay;
            m[i] = CFG.beta1 * m[i] + (1.0 - CFG.beta1) * g[i];
            v[i] = CFG.beta2 * v[i] + (1.0 - CFG.beta2) * g[i] * g[i];
            let denom = v[i].sqrt() / (1.0 - CFG.beta2.powi(t)).sqrt() + CFG.eps;
            p[i] -= CFG.lr / (1.0 - CFG.beta1.powi(t)) * m[i] / denom;
        }
    }
    p
}

#[test]
fn f64_matches_the_formula_and_large_tensors_match_small_ones() {
    let p = Var::new(&P0[..], &Device::Cpu).unwrap();
    let mut opt = AdamW::new(vec![("w".into(), p.clone())], CFG).unwrap();
    for g in GRADS {
        step_with(&mut opt, &p, &g);
    }
    let got = p.as_tensor().to_vec1::<f64>().unwrap();
    for (a, b) in got.iter().zip(reference(3)) {
        assert!((a - b).abs() <= 1e-14 * b.abs().max(1.0), "{a} vs {b}");
    }

    // A tensor big enough for the multi-threaded path: every element that
    // shares P0/GRADS values must end equal to the single-threaded result.
    let reps = 20_000;
    let big: Vec<f32> = (0..reps).flat_map(|_| P0.map(|x| x as f32)).collect();
    let pb = Var::new(big.as_slice(), &Device::Cpu).unwrap();
    let small = Var::new(&P0.map(|x| x as f32)[..], &Device::Cpu).unwrap();
    let mut ob = AdamW::new(vec![("b".into(), pb.clone())], CFG).unwrap();
    let mut os = AdamW::new(vec![("s".into(), small.clone())], CFG).unwrap();
    for g in GRADS {
        let gb: Vec<f64> = (0..reps).flat_map(|_| g).collect();
        step_with(&mut ob, &pb, &gb);
        step_with(&mut os, &small, &g);
    }
    let s = small.as_tensor().to_vec1::<f32>().unwrap();
    let b = pb.as_tensor().to_vec1::<f32>().unwrap();
    for (i, x) in b.iter().enumerate() {
        assert_eq!(x.to_bits(), s[i % 7].to_bits(), "element {i}");
    }
}

#[test]
fn parameters_without_gradient_are_not_stepped() {
    let a = Var::new(&[1.0f32, 2.0][..], &Device::Cpu).unwrap();
    let b = Var::new(&[3.0f32, 4.0][..], &Device::Cpu).unwrap();
    let mut opt = AdamW::new(vec![("a".into(), a.clone()), ("b".into(), b.clone())], CFG).unwrap();
    step_with(&mut opt, &a, &[0.5, -0.5]);
    assert_eq!(b.as_tensor().to_vec1::<f32>().unwrap(), vec![3.0, 4.0]);
    let state = opt.state().unwrap();
    assert_eq!(state["a.step"].to_scalar::<f64>().unwrap(), 1.0);
    assert_eq!(state["b.step"].to_scalar::<f64>().unwrap(), 0.0);
    assert_ne!(a.as_tensor().to_vec1::<f32>().unwrap(), vec![1.0, 2.0]);
}

#[test]
fn resuming_from_saved_state_is_exact() {
    let dev = Device::Cpu;
    let normal = |seed| crate::support::random::normal(seed, &[37, 5], 0.0, 1.0, DType::F32);
    let init = normal(0);
    let grads: Vec<Tensor> = (1..6).map(normal).collect();
    let run = |p: &Var, opt: &mut AdamW, gs: &[Tensor]| {
        for g in gs {
            let l = (p.as_tensor() * g).unwrap().sum_all().unwrap();
            opt.step(&l.backward().unwrap()).unwrap();
        }
    };
    let straight = Var::from_tensor(&init).unwrap();
    let mut opt = AdamW::new(vec![("w".into(), straight.clone())], CFG).unwrap();
    run(&straight, &mut opt, &grads);

    let first = Var::from_tensor(&init).unwrap();
    let mut opt1 = AdamW::new(vec![("w".into(), first.clone())], CFG).unwrap();
    run(&first, &mut opt1, &grads[..3]);
    let saved: HashMap<String, Tensor> = opt1.state().unwrap();
    drop(opt1);
    let resumed = Var::from_tensor(&first.as_tensor().copy().unwrap()).unwrap();
    let mut opt2 = AdamW::new(vec![("w".into(), resumed.clone())], CFG).unwrap();
    opt2.load_state(&saved).unwrap();
    assert_eq!(opt2.step_count(), 3);
    run(&resumed, &mut opt2, &grads[3..]);

    let a = straight
        .as_tensor()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let b = resumed
        .as_tensor()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()));

    let mut bad = saved.clone();
    bad.insert(
        "w.exp_avg".into(),
        Tensor::zeros((5, 37), DType::F32, &dev).unwrap(),
    );
    assert!(opt2.load_state(&bad).is_err());
    bad.remove("w.exp_avg");
    assert!(opt2.load_state(&bad).is_err());
}

#[test]
fn ema_is_the_exponential_average_in_place() {
    let dev = Device::Cpu;
    let p = Var::new(&[1.0f32, -2.0, 4.0][..], &dev).unwrap();
    let params = vec![("w".to_string(), p.clone())];
    let mut ema = Ema::new(&params, 0.9).unwrap();
    p.set(&Tensor::new(&[2.0f32, 0.0, 4.0][..], &dev).unwrap())
        .unwrap();
    ema.update(&params).unwrap();
    let got = ema.tensors().unwrap()["w"].to_vec1::<f32>().unwrap();
    let want = [0.9 * 1.0 + 0.1 * 2.0, 0.9 * -2.0, 4.0];
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() < 1e-6, "{g} vs {w}");
    }
    // The free function on a large f64 tensor (the threaded path).
    let e = Var::from_tensor(&Tensor::ones(100_003, DType::F64, &dev).unwrap()).unwrap();
    let x = Tensor::arange(0f64, 100_003.0, &dev).unwrap();
    ema_update(&e, &x, 0.75).unwrap();
    let v = e.as_tensor().to_vec1::<f64>().unwrap();
    assert!(v
        .iter()
        .enumerate()
        .all(|(i, &y)| y == 0.75 + 0.25 * i as f64));

    let mut other = Ema::new(&params, 0.5).unwrap();
    other.load_state(&ema.tensors().unwrap()).unwrap();
    assert_eq!(other.tensors().unwrap()["w"].to_vec1::<f32>().unwrap(), got);
    let wrong = vec![("v".to_string(), p.clone())];
    assert!(ema.update(&wrong).is_err());
}
