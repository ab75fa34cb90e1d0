//! torchvision's `ImageFolder` layout: `root/<class>/<...>/<image>`, class
//! ids in sorted folder-name order, images found recursively in each class
//! folder and ordered as torchvision orders them (by folder path, then name).

use super::{CenterCrop, DataError, Dataset, U8Image};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// File extensions read as images (compared case-insensitively).
pub const IMAGE_EXTENSIONS: [&str; 5] = ["png", "jpg", "jpeg", "webp", "bmp"];

/// Symlinked folders are followed, as torchvision does; this bounds a cycle.
const MAX_DEPTH: usize = 32;

/// A folder of class sub-folders of images, preprocessed with [`CenterCrop`]
/// to `image_size`² and converted to RGB or grayscale.
///
/// Opening only lists files (extension and existence); decoding happens in
/// [`Dataset::get`], so a corrupt file is reported when it is first loaded.
#[derive(Clone, Debug)]
pub struct ImageFolder {
    root: PathBuf,
    classes: Vec<String>,
    samples: Vec<(PathBuf, u32)>,
    crop: CenterCrop,
    channels: usize,
}

fn is_hidden(name: &str) -> bool {
    name.starts_with('.')
}

fn has_image_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

/// Visible entries of `dir`, sorted by name.
fn sorted_entries(dir: &Path) -> Result<Vec<(String, PathBuf)>, DataError> {
    let mut entries = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| DataError::io(dir, e))? {
        let entry = entry.map_err(|e| DataError::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !is_hidden(&name) {
            entries.push((name, entry.path()));
        }
    }
    entries.sort();
    Ok(entries)
}

/// Image files under `dir`, as (folder, file name, path) for sorting.
fn collect_images(
    dir: &Path,
    depth: usize,
    out: &mut Vec<(String, String, PathBuf)>,
) -> Result<(), DataError> {
    if depth > MAX_DEPTH {
        return Err(DataError::layout(
            dir,
            format!("folders nested deeper than {MAX_DEPTH} (a symlink cycle?)"),
        ));
    }
    let folder = dir.to_string_lossy().into_owned();
    for (name, path) in sorted_entries(dir)? {
        // fs::metadata follows symlinks, so a link to a folder is walked.
        match fs::metadata(&path) {
            Ok(meta) if meta.is_dir() => collect_images(&path, depth + 1, out)?,
            Ok(_) if has_image_extension(&path) => out.push((folder.clone(), name, path)),
            Ok(_) => {}
            Err(e) if has_image_extension(&path) => {
                return Err(DataError::layout(path, format!("cannot be read: {e}")))
            }
            Err(_) => {}
        }
    }
    Ok(())
}

impl ImageFolder {
    /// Lists `root`'s classes and images. Refuses, naming the path, a root
    /// that is missing or empty, one without class sub-folders, and a class
    /// folder without images. `channels` is 3 (RGB) or 1 (grayscale).
    pub fn open(
        root: impl AsRef<Path>,
        image_size: usize,
        channels: usize,
    ) -> Result<Self, DataError> {
        let root = root.as_ref().to_path_buf();
        if channels != 1 && channels != 3 {
            return Err(DataError::layout(
                &root,
                format!("channels must be 1 (grayscale) or 3 (RGB), not {channels}"),
            ));
        }
        if image_size == 0 {
            return Err(DataError::layout(&root, "image size must be positive"));
        }
        if !root.is_dir() {
            return Err(DataError::layout(
                &root,
                "is not a folder (expected root/<class>/<image> with one sub-folder per class)",
            ));
        }
        let entries = sorted_entries(&root)?;
        if entries.is_empty() {
            return Err(DataError::layout(
                &root,
                "folder is empty (expected one sub-folder per class, holding that class's images)",
            ));
        }
        let class_dirs: Vec<(String, PathBuf)> = entries
            .iter()
            .filter(|(_, p)| p.is_dir())
            .cloned()
            .collect();
        if class_dirs.is_empty() {
            return Err(DataError::layout(
                &root,
                format!(
                    "has no class sub-folders ({} files directly inside; expected \
                     root/<class>/<image> with one sub-folder per class)",
                    entries.len()
                ),
            ));
        }
        let mut classes = Vec::with_capacity(class_dirs.len());
        let mut samples = Vec::new();
        for (label, (name, dir)) in class_dirs.into_iter().enumerate() {
            let mut images = Vec::new();
            collect_images(&dir, 0, &mut images)?;
            if images.is_empty() {
                return Err(DataError::layout(
                    &dir,
                    format!(
                        "class folder holds no images (looked for .{} files)",
                        IMAGE_EXTENSIONS.join(", .")
                    ),
                ));
            }
            images.sort();
            samples.extend(images.into_iter().map(|(_, _, p)| (p, label as u32)));
            classes.push(name);
        }
        Ok(ImageFolder {
            root,
            classes,
            samples,
            crop: CenterCrop::new(image_size),
            channels,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Class name → label, for storing with checkpoints.
    pub fn class_to_index(&self) -> BTreeMap<String, u32> {
        self.classes
            .iter()
            .enumerate()
            .map(|(i, c)| (c.clone(), i as u32))
            .collect()
    }

    /// Every image path with its label, in index order.
    pub fn samples(&self) -> &[(PathBuf, u32)] {
        &self.samples
    }

    /// Decodes image `index` and converts it to the folder's channel count,
    /// before any resizing.
    pub fn decode(&self, index: usize) -> Result<U8Image, DataError> {
        let (path, _) = self.samples.get(index).ok_or(DataError::IndexOutOfRange {
            index,
            len: self.samples.len(),
        })?;
        let bad = |reason: String| DataError::BadImage {
            path: path.clone(),
            reason,
        };
        // Format from the content, not the extension, as PIL does.
        let image = image::ImageReader::open(path)
            .map_err(|e| bad(e.to_string()))?
            .with_guessed_format()
            .map_err(|e| bad(e.to_string()))?
            .decode()
            .map_err(|e| bad(e.to_string()))?;
        Ok(U8Image::from_dynamic(image, self.channels))
    }

    /// Image `index` decoded and center-cropped, still as bytes.
    pub fn load_u8(&self, index: usize) -> Result<U8Image, DataError> {
        Ok(self.crop.apply(&self.decode(index)?))
    }
}

impl Dataset for ImageFolder {
    fn len(&self) -> usize {
        self.samples.len()
    }

    fn num_classes(&self) -> usize {
        self.classes.len()
    }

    fn class_names(&self) -> &[String] {
        &self.classes
    }

    fn sample_shape(&self) -> (usize, usize, usize) {
        (self.channels, self.crop.size, self.crop.size)
    }

    fn get(&self, index: usize, flip: bool) -> Result<(Vec<f32>, u32), DataError> {
        let image = self.load_u8(index)?;
        Ok((image.to_unit_chw(flip), self.samples[index].1))
    }
}
