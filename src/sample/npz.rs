//! The `.npz` files the ADM evaluator reads: a zip holding `arr_0.npy`, a
//! uint8 array of shape (N, H, W, 3).
//!
//! An `.npy` file is a magic string, a format version, a Python-literal
//! header dict (`descr`, `fortran_order`, `shape`) padded with spaces to a
//! multiple of 64 bytes and ended by a newline, then the raw C-order data.
//! Members are stored uncompressed, as `numpy.savez` does.

use anyhow::{bail, Context, Result};
use std::io::{Read, Write};
use std::path::Path;

const MAGIC: &[u8] = b"\x93NUMPY";
/// The member name `numpy.savez` gives its first positional array.
pub const ARRAY_NAME: &str = "arr_0.npy";

/// A C-order uint8 array.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct U8Array {
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

impl U8Array {
    pub fn new(shape: Vec<usize>, data: Vec<u8>) -> Result<Self> {
        let expected: usize = shape.iter().product();
        if expected != data.len() {
            bail!(
                "an array of shape {shape:?} needs {expected} bytes, got {}",
                data.len()
            );
        }
        Ok(Self { shape, data })
    }
}

/// The `.npy` (format 1.0) header for a C-order uint8 array of `shape`.
pub fn npy_header(shape: &[usize]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    // A 1-tuple needs its trailing comma in Python syntax.
    let shape_text = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut dict = format!("{{'descr': '|u1', 'fortran_order': False, 'shape': {shape_text}, }}");
    let unpadded = MAGIC.len() + 2 + 2 + dict.len() + 1;
    dict.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    dict.push('\n');
    let mut out = Vec::with_capacity(unpadded.next_multiple_of(64));
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out
}

/// Parses an `.npy` header (versions 1–3) of a C-order uint8 array; returns
/// the shape and the header length in bytes.
pub fn parse_npy_header(bytes: &[u8]) -> Result<(Vec<usize>, usize)> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        bail!("not an .npy array (no \\x93NUMPY magic)");
    }
    let (len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (u32::from_le_bytes(bytes[8..12].try_into()?) as usize, 12),
        v => bail!("unsupported .npy format version {v}"),
    };
    let dict = std::str::from_utf8(
        bytes
            .get(start..start + len)
            .context("truncated .npy header")?,
    )?;
    let field = |key: &str| -> Result<&str> {
        let at = dict
            .find(&format!("'{key}':"))
            .with_context(|| format!(".npy header has no '{key}': {dict}"))?;
        Ok(dict[at + key.len() + 3..].trim_start())
    };
    let descr = field("descr")?;
    if !(descr.starts_with("'|u1'") || descr.starts_with("'u1'") || descr.starts_with("'<u1'")) {
        bail!("expected a uint8 array ('|u1'), the header says {dict}");
    }
    if !field("fortran_order")?.starts_with("False") {
        bail!("Fortran-order arrays are not supported");
    }
    let shape = field("shape")?;
    let inner = shape
        .strip_prefix('(')
        .and_then(|s| s.split(')').next())
        .context("malformed shape")?;
    let shape = inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .with_context(|| format!("malformed shape dimension '{s}'"))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((shape, start + len))
}

/// Writes `array` as `arr_0` of an `.npz` at `path`, atomically.
pub fn write_npz(path: &Path, array: &U8Array) -> Result<()> {
    crate::atomic_file::write_atomically(path, |tmp| {
        let file =
            std::fs::File::create(tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let mut zip = zip::ZipWriter::new(std::io::BufWriter::new(file));
        let header = npy_header(&array.shape);
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored)
            .large_file((header.len() + array.data.len()) as u64 >= u32::MAX as u64);
        zip.start_file(ARRAY_NAME, options)?;
        zip.write_all(&header)?;
        zip.write_all(&array.data)?;
        zip.finish()?.flush()?;
        Ok(())
    })
    .with_context(|| format!("writing {}", path.display()))
}

/// Reads `arr_0` of an `.npz` (it must be uint8).
pub fn read_npz(path: &Path) -> Result<U8Array> {
    let read = || -> Result<U8Array> {
        let file = std::fs::File::open(path)?;
        let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file))?;
        let mut member = zip.by_name(ARRAY_NAME).context("no arr_0 in the archive")?;
        let mut bytes = Vec::with_capacity(member.size() as usize);
        member.read_to_end(&mut bytes)?;
        let (shape, offset) = parse_npy_header(&bytes)?;
        bytes.drain(..offset);
        U8Array::new(shape, bytes)
    };
    read().with_context(|| format!("reading {}", path.display()))
}

/// Joins arrays along the first axis, in order; the other axes must agree.
pub fn concatenate(arrays: &[U8Array]) -> Result<U8Array> {
    let first = arrays.first().context("nothing to concatenate")?;
    if first.shape.is_empty() {
        bail!("cannot concatenate 0-dimensional arrays");
    }
    let mut shape = first.shape.clone();
    shape[0] = 0;
    let mut data = Vec::with_capacity(arrays.iter().map(|a| a.data.len()).sum());
    for (i, a) in arrays.iter().enumerate() {
        if a.shape.len() != first.shape.len() || a.shape[1..] != first.shape[1..] {
            bail!(
                "array {i} has shape {:?}, incompatible with {:?}",
                a.shape,
                first.shape
            );
        }
        shape[0] += a.shape[0];
        data.extend_from_slice(&a.data);
    }
    U8Array::new(shape, data)
}
