//! Training data: Fashion-MNIST, IDX files, image folders, preprocessing and the loader.

#[path = "../support/mod.rs"]
mod support;

mod fashion_mnist;
mod idx;
mod image_folder;
mod loader;
mod preprocess;
