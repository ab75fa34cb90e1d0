//! File formats shared by several parts of the system: safetensors weight
//! files (models, the VAE, training checkpoints, latent caches) and NumPy
//! `.npz` archives (sample batches, reference batches, statistics).

pub mod npz;
pub mod safetensors_file;
