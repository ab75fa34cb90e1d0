//! Sample-quality metrics (FID, precision/recall) with the standard Inception network.
