//! Helpers shared by the test binaries: fixture generators and loaders, the
//! error measures every numeric claim is stated in, and running the binary.
#![allow(dead_code)]

pub mod compare;
pub mod eval;
pub mod model;
pub mod random;
