//! Gaussian diffusion: the API, fixtures from independent references, and
//! oracle tests of the samplers on Gaussian data.

#[path = "../support/mod.rs"]
mod support;

mod api;
mod fixtures;
mod oracle;
mod transport;
