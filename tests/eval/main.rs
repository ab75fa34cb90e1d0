//! Evaluation: the FID Inception network, statistics, Fréchet distance,
//! precision/recall, image sets and `dit eval`.

#[path = "../support/mod.rs"]
mod support;

mod cli;
mod frechet;
mod images;
mod inception;
mod precision_recall;
mod stats;
mod throughput;
