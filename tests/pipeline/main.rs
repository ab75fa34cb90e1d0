//! Jobs end to end: training (and its optimiser), latent extraction, sampling,
//! and the `dit` command line.

#[path = "../support/mod.rs"]
mod support;

mod adamw;
mod cli;
mod dist;
mod extract_latents;
mod extract_train_sample;
mod sample_class_names;
mod sample_npz;
mod sample_shards;
mod serve;
mod train_loop;
