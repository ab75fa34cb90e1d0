//! Gaussian diffusion (improved-DDPM / ADM formulation as used by DiT).
