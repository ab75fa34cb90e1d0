//! NumPy `.npz` archives: the sample batches `dit sample` writes and the ADM
//! evaluator reads (`arr_0`, uint8 `(N, H, W, 3)`), reference batches, and
//! float statistics files (`mu`, `sigma`).
//!
//! `.npy` headers are parsed and written by the `npyz` crate; the archive is
//! a zip (our `zip` dependency, with deflate, since pytorch-fid writes its
//! statistics with `np.savez_compressed`). Data are read and written as raw
//! little-endian bytes, so a 50,000-image batch streams through
//! [`for_each_row_chunk`] without being held in memory.

use crate::{bail, Context, Error, Result};
use npyz::WriterBuilder;
use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::Path;

/// The array name `numpy.savez` gives its first positional array, which
/// holds the images of a sample batch.
pub const IMAGES: &str = "arr_0";
/// The class labels `dit sample` stores beside the images.
pub const LABELS: &str = "labels";

/// Element types understood here (little-endian or byte-sized only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Element {
    U8,
    U32,
    F32,
    F64,
}

impl Element {
    fn size(self) -> usize {
        match self {
            Element::U8 => 1,
            Element::U32 | Element::F32 => 4,
            Element::F64 => 8,
        }
    }

    fn descr(self) -> &'static str {
        match self {
            Element::U8 => "|u1",
            Element::U32 => "<u4",
            Element::F32 => "<f4",
            Element::F64 => "<f8",
        }
    }

    fn from_descr(descr: &str) -> Option<Self> {
        match descr {
            "|u1" | "<u1" | "u1" | "|b1" => Some(Element::U8),
            "<u4" => Some(Element::U32),
            "<f4" => Some(Element::F32),
            "<f8" => Some(Element::F64),
            _ => None,
        }
    }
}

/// The header of one array: element type (when supported) and shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The numpy type string, e.g. `<f8` or `|u1`.
    pub descr: String,
    pub element: Option<Element>,
    pub shape: Vec<usize>,
    pub fortran_order: bool,
}

impl Header {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `(2048, 2048) <f8`-style description for error messages.
    pub fn describe(&self) -> String {
        let dims: Vec<String> = self.shape.iter().map(|d| d.to_string()).collect();
        format!("({}) {}", dims.join(", "), self.descr)
    }

    fn read(r: &mut impl Read) -> Result<Self> {
        let header = npyz::NpyHeader::from_reader(r)
            .map_err(|e| crate::err!("not a readable .npy array ({e})"))?;
        let descr = match header.dtype() {
            npyz::DType::Plain(t) => t.to_string(),
            other => bail!(
                "structured .npy arrays are not supported ({})",
                other.descr()
            ),
        };
        Ok(Header {
            element: Element::from_descr(&descr),
            descr,
            shape: header.shape().iter().map(|&d| d as usize).collect(),
            fortran_order: header.order() == npyz::Order::Fortran,
        })
    }

    /// The element type, or an error naming the unsupported one.
    fn supported(&self) -> Result<Element> {
        if self.fortran_order {
            bail!("Fortran-ordered arrays are not supported");
        }
        self.element
            .with_context(|| format!("unsupported element type {}", self.descr))
    }
}

/// An in-memory array.
#[derive(Debug, Clone, PartialEq)]
pub enum Array {
    U8 { shape: Vec<usize>, data: Vec<u8> },
    U32 { shape: Vec<usize>, data: Vec<u32> },
    F32 { shape: Vec<usize>, data: Vec<f32> },
    F64 { shape: Vec<usize>, data: Vec<f64> },
}

impl Array {
    /// A uint8 array, checking that `data` fills `shape`.
    pub fn u8(shape: Vec<usize>, data: Vec<u8>) -> Result<Self> {
        let expected: usize = shape.iter().product();
        if expected != data.len() {
            bail!(
                "an array of shape {shape:?} needs {expected} bytes, got {}",
                data.len()
            );
        }
        Ok(Array::U8 { shape, data })
    }

    pub fn shape(&self) -> &[usize] {
        match self {
            Array::U8 { shape, .. }
            | Array::U32 { shape, .. }
            | Array::F32 { shape, .. }
            | Array::F64 { shape, .. } => shape,
        }
    }

    pub fn element(&self) -> Element {
        match self {
            Array::U8 { .. } => Element::U8,
            Array::U32 { .. } => Element::U32,
            Array::F32 { .. } => Element::F32,
            Array::F64 { .. } => Element::F64,
        }
    }

    /// The values widened to f64 (statistics are kept in f64 whatever the file holds).
    pub fn to_f64(&self) -> Vec<f64> {
        match self {
            Array::U8 { data, .. } => data.iter().map(|&v| v as f64).collect(),
            Array::U32 { data, .. } => data.iter().map(|&v| v as f64).collect(),
            Array::F32 { data, .. } => data.iter().map(|&v| v as f64).collect(),
            Array::F64 { data, .. } => data.clone(),
        }
    }

    /// The values as f32 (features), narrowing f64.
    pub fn to_f32(&self) -> Vec<f32> {
        match self {
            Array::U8 { data, .. } => data.iter().map(|&v| v as f32).collect(),
            Array::U32 { data, .. } => data.iter().map(|&v| v as f32).collect(),
            Array::F32 { data, .. } => data.clone(),
            Array::F64 { data, .. } => data.iter().map(|&v| v as f32).collect(),
        }
    }

    fn le_bytes(&self) -> Vec<u8> {
        match self {
            Array::U8 { data, .. } => data.clone(),
            Array::U32 { data, .. } => data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            Array::F32 { data, .. } => data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            Array::F64 { data, .. } => data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }

    fn from_le_bytes(element: Element, shape: Vec<usize>, bytes: Vec<u8>) -> Self {
        fn words<const N: usize, T>(bytes: &[u8], f: fn([u8; N]) -> T) -> Vec<T> {
            bytes
                .chunks_exact(N)
                .map(|c| f(c.try_into().expect("chunk of N bytes")))
                .collect()
        }
        match element {
            Element::U8 => Array::U8 { shape, data: bytes },
            Element::U32 => Array::U32 {
                shape,
                data: words(&bytes, u32::from_le_bytes),
            },
            Element::F32 => Array::F32 {
                shape,
                data: words(&bytes, f32::from_le_bytes),
            },
            Element::F64 => Array::F64 {
                shape,
                data: words(&bytes, f64::from_le_bytes),
            },
        }
    }
}

fn open_archive(path: &Path) -> Result<zip::ZipArchive<BufReader<File>>> {
    let file = File::open(path).map_err(|e| Error::file(path, e))?;
    zip::ZipArchive::new(BufReader::new(file))
        .with_context(|| format!("{} is not an .npz file (not a zip archive)", path.display()))
}

/// Names and headers of every array in an `.npz` file, in archive order.
pub fn list(path: &Path) -> Result<Vec<(String, Header)>> {
    let mut zip = open_archive(path)?;
    let mut out = Vec::new();
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i)?;
        let Some(name) = entry.name().strip_suffix(".npy").map(str::to_string) else {
            continue;
        };
        let header = Header::read(&mut entry)
            .with_context(|| format!("reading array '{name}' of {}", path.display()))?;
        out.push((name, header));
    }
    Ok(out)
}

/// Whether the archive holds an array `name`.
pub fn contains(path: &Path, name: &str) -> Result<bool> {
    Ok(open_archive(path)?
        .index_for_name(&format!("{name}.npy"))
        .is_some())
}

/// Reads one array; the error names the file and the arrays it has.
pub fn read(path: &Path, name: &str) -> Result<Array> {
    let mut zip = open_archive(path)?;
    let entry_name = format!("{name}.npy");
    if zip.index_for_name(&entry_name).is_none() {
        let keys: Vec<&str> = zip
            .file_names()
            .filter_map(|n| n.strip_suffix(".npy"))
            .collect();
        bail!(
            "{} has no array '{name}' (it has: {})",
            path.display(),
            keys.join(", ")
        );
    }
    let mut entry = zip.by_name(&entry_name)?;
    let mut read = || -> Result<Array> {
        let header = Header::read(&mut entry)?;
        let element = header.supported()?;
        let mut bytes = vec![0u8; header.len() * element.size()];
        entry
            .read_exact(&mut bytes)
            .context("array data is truncated")?;
        Ok(Array::from_le_bytes(element, header.shape, bytes))
    };
    read().with_context(|| format!("reading array '{name}' of {}", path.display()))
}

/// Streams the rows (first-axis slices) of a uint8 array in chunks of at
/// most `rows_per_chunk`, so that 50k-image batches need not fit in memory.
/// `f` gets the header and the bytes of whole rows.
pub fn for_each_row_chunk(
    path: &Path,
    name: &str,
    rows_per_chunk: usize,
    mut f: impl FnMut(&Header, &[u8]) -> Result<()>,
) -> Result<()> {
    let mut zip = open_archive(path)?;
    let mut entry = zip
        .by_name(&format!("{name}.npy"))
        .with_context(|| format!("{} has no array '{name}'", path.display()))?;
    let header = Header::read(&mut entry)
        .with_context(|| format!("reading array '{name}' of {}", path.display()))?;
    if header.element != Some(Element::U8) || header.fortran_order || header.shape.is_empty() {
        bail!(
            "array '{name}' of {} is {}, expected C-ordered uint8",
            path.display(),
            header.describe()
        );
    }
    let row_bytes: usize = header.shape[1..].iter().product();
    let mut remaining = header.shape[0];
    let mut buf = Vec::new();
    while remaining > 0 {
        let rows = remaining.min(rows_per_chunk.max(1));
        buf.resize(rows * row_bytes, 0);
        entry
            .read_exact(&mut buf)
            .with_context(|| format!("array '{name}' of {} is truncated", path.display()))?;
        f(&header, &buf)?;
        remaining -= rows;
    }
    Ok(())
}

/// Writes arrays to an uncompressed `.npz` (what `np.savez` writes; numpy
/// and the ADM evaluator read it), atomically: a crash or a full disk never
/// leaves a half-written file under `path`.
pub fn write(path: &Path, arrays: &[(&str, &Array)]) -> Result<()> {
    let bytes: u64 = arrays
        .iter()
        .map(|(_, a)| (a.shape().iter().product::<usize>() * a.element().size()) as u64)
        .sum();
    crate::atomic_file::write_atomically(path, |tmp| {
        let file = File::create(tmp).map_err(|e| Error::file(tmp, e))?;
        let mut zip = zip::ZipWriter::new(std::io::BufWriter::new(file));
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored)
            .large_file(bytes >= u32::MAX as u64 / 2);
        for (name, array) in arrays {
            zip.start_file(format!("{name}.npy"), options)?;
            let dtype = npyz::DType::Plain(
                array
                    .element()
                    .descr()
                    .parse()
                    .expect("a valid numpy type string"),
            );
            let shape: Vec<u64> = array.shape().iter().map(|&d| d as u64).collect();
            let out = npyz::WriteOptions::new_header_only()
                .dtype(dtype)
                .shape(&shape)
                .writer(&mut zip)
                .write_header_only()?;
            out.write_all(&array.le_bytes())?;
        }
        zip.finish()?.flush()?;
        Ok(())
    })
    .with_context(|| format!("writing {}", path.display()))
}

/// Joins uint8 arrays along the first axis, in order; the other axes must agree.
pub fn concatenate(arrays: &[Array]) -> Result<Array> {
    let first = arrays.first().context("nothing to concatenate")?;
    if first.shape().is_empty() {
        bail!("cannot concatenate 0-dimensional arrays");
    }
    let mut shape = first.shape().to_vec();
    shape[0] = 0;
    let mut bytes = Vec::new();
    for (i, a) in arrays.iter().enumerate() {
        if a.element() != first.element()
            || a.shape().len() != first.shape().len()
            || a.shape()[1..] != first.shape()[1..]
        {
            bail!(
                "array {i} is {:?} {:?}, incompatible with {:?} {:?}",
                a.element(),
                a.shape(),
                first.element(),
                first.shape()
            );
        }
        shape[0] += a.shape()[0];
        bytes.extend(a.le_bytes());
    }
    Ok(Array::from_le_bytes(first.element(), shape, bytes))
}

/// Joins the `.npz` files of a sharded sampling run, in the order given:
/// every array of the first file (images, labels) is concatenated along its
/// first axis with the same-named arrays of the others. Returns the joined
/// arrays' names and shapes.
pub fn merge_files(shards: &[&Path], output: &Path) -> Result<Vec<(String, Vec<usize>)>> {
    let first = shards.first().context("no .npz files to merge")?;
    let names: Vec<String> = list(first)?.into_iter().map(|(name, _)| name).collect();
    let mut merged = Vec::with_capacity(names.len());
    for name in &names {
        let parts = shards
            .iter()
            .map(|p| read(p, name))
            .collect::<Result<Vec<_>>>()?;
        let joined = concatenate(&parts).with_context(|| {
            let files: Vec<String> = shards.iter().map(|p| p.display().to_string()).collect();
            format!("merging '{name}' of {}", files.join(", "))
        })?;
        merged.push((name.as_str(), joined));
    }
    let refs: Vec<(&str, &Array)> = merged.iter().map(|(n, a)| (*n, a)).collect();
    write(output, &refs)?;
    Ok(merged
        .iter()
        .map(|(n, a)| (n.to_string(), a.shape().to_vec()))
        .collect())
}
