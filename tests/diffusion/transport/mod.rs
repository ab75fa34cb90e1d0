//! SiT's transport: the interpolants, conversions, losses and samplers of
//! `dit::transport`, against a float64 numpy reference and an exact model.

mod api;
mod fixtures;
mod oracle;
mod oracle_support;
mod solvers;
