//! The IDX format of MNIST and Fashion-MNIST: a big-endian header (two zero
//! bytes, a type code, the number of dimensions, then each dimension as u32)
//! followed by the values. Only unsigned bytes (type 0x08) are supported,
//! which is what image and label files use. Files may be gzipped.

use super::DataError;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use std::io::{Read, Write};
use std::path::Path;

const TYPE_U8: u8 = 0x08;
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// An n-dimensional array of bytes in IDX layout (row-major).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxFile {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

fn idx_error(source_name: &str, problem: impl Into<String>) -> DataError {
    DataError::Idx {
        source_name: source_name.to_string(),
        problem: problem.into(),
    }
}

impl IdxFile {
    /// An array of shape `dims`; refuses data whose length is not their product.
    pub fn new(dims: Vec<usize>, data: Vec<u8>) -> Result<Self, DataError> {
        let expected: usize = dims.iter().product();
        if dims.is_empty() || dims.len() > 255 || expected != data.len() {
            return Err(idx_error(
                "in memory",
                format!("shape {dims:?} does not fit {} bytes", data.len()),
            ));
        }
        if let Some(d) = dims.iter().find(|&&d| d > u32::MAX as usize) {
            return Err(idx_error("in memory", format!("dimension {d} exceeds u32")));
        }
        Ok(IdxFile { dims, data })
    }

    /// Parses IDX bytes, gunzipping first if they start with the gzip magic.
    /// `source_name` names the data in error messages.
    pub fn parse(bytes: &[u8], source_name: &str) -> Result<Self, DataError> {
        let raw;
        let bytes = if bytes.starts_with(&GZIP_MAGIC) {
            let mut out = Vec::new();
            GzDecoder::new(bytes)
                .read_to_end(&mut out)
                .map_err(|e| idx_error(source_name, format!("bad gzip stream: {e}")))?;
            raw = out;
            &raw[..]
        } else {
            bytes
        };
        if bytes.len() < 4 {
            return Err(idx_error(source_name, "shorter than the 4-byte magic"));
        }
        if bytes[0] != 0 || bytes[1] != 0 {
            return Err(idx_error(
                source_name,
                format!(
                    "bad magic {:02x} {:02x} {:02x} {:02x}: not an IDX file",
                    bytes[0], bytes[1], bytes[2], bytes[3]
                ),
            ));
        }
        if bytes[2] != TYPE_U8 {
            return Err(idx_error(
                source_name,
                format!("value type 0x{:02x} unsupported (only 0x08, u8)", bytes[2]),
            ));
        }
        let ndims = bytes[3] as usize;
        if ndims == 0 {
            return Err(idx_error(source_name, "zero dimensions"));
        }
        let header = 4 + 4 * ndims;
        if bytes.len() < header {
            return Err(idx_error(
                source_name,
                format!("header of {ndims} dimensions truncated"),
            ));
        }
        let dims: Vec<usize> = bytes[4..header]
            .chunks_exact(4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .collect();
        let expected = dims
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| idx_error(source_name, format!("shape {dims:?} overflows")))?;
        let body = &bytes[header..];
        if body.len() != expected {
            return Err(idx_error(
                source_name,
                format!(
                    "shape {dims:?} needs {expected} bytes of data, found {}",
                    body.len()
                ),
            ));
        }
        Ok(IdxFile {
            dims,
            data: body.to_vec(),
        })
    }

    /// Reads an IDX file, gzipped or not.
    pub fn read(path: impl AsRef<Path>) -> Result<Self, DataError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
        IdxFile::parse(&bytes, &path.display().to_string())
    }

    /// The uncompressed IDX encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + 4 * self.dims.len() + self.data.len());
        out.extend_from_slice(&[0, 0, TYPE_U8, self.dims.len() as u8]);
        for &d in &self.dims {
            out.extend_from_slice(&(d as u32).to_be_bytes());
        }
        out.extend_from_slice(&self.data);
        out
    }

    /// Writes the file, gzipped when `gzip` (as MNIST is distributed).
    pub fn write(&self, path: impl AsRef<Path>, gzip: bool) -> Result<(), DataError> {
        let path = path.as_ref();
        let raw = self.to_bytes();
        let bytes = if gzip {
            let mut enc = GzEncoder::new(Vec::new(), Compression::best());
            enc.write_all(&raw)
                .and_then(|_| enc.finish())
                .map_err(|e| DataError::io(path, e))?
        } else {
            raw
        };
        std::fs::write(path, bytes).map_err(|e| DataError::io(path, e))
    }

    /// Number of items (the first dimension).
    pub fn len(&self) -> usize {
        self.dims[0]
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of item `i` (everything under the first dimension).
    pub fn item(&self, i: usize) -> &[u8] {
        let size: usize = self.dims[1..].iter().product();
        &self.data[i * size..(i + 1) * size]
    }
}
