//! The `.npz` files: what numpy's reader would see, byte for byte.

use dit::formats::npz::{self, Array};
use std::io::{Read, Write};

/// Checks the header as `numpy.lib.format.read_array_header_1_0` would:
/// returns the header dict and the offset of the data.
fn numpy_view(bytes: &[u8]) -> (String, usize) {
    assert_eq!(&bytes[..6], b"\x93NUMPY");
    assert_eq!((bytes[6], bytes[7]), (1, 0), "format 1.0");
    let len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    assert_eq!((10 + len) % 16, 0, "data must start 16-byte aligned");
    let dict = std::str::from_utf8(&bytes[10..10 + len]).unwrap();
    assert!(dict.ends_with('\n'));
    (dict.trim_end().to_string(), 10 + len)
}

/// The `'shape'` tuple of a header dict, as Python would read it: a
/// trailing comma is allowed, and required for a 1-tuple.
fn shape_of(dict: &str) -> Vec<usize> {
    let start = dict.find("'shape': (").expect("a shape") + "'shape': (".len();
    let inner = &dict[start..start + dict[start..].find(')').expect("a closed tuple")];
    let dims: Vec<usize> = inner
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| d.parse().unwrap())
        .collect();
    if dims.len() == 1 {
        assert!(inner.contains(','), "({inner}) is not a 1-tuple in Python");
    }
    dims
}

fn member(path: &std::path::Path, name: &str) -> Vec<u8> {
    let mut zip = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
    let mut member = zip.by_name(name).unwrap();
    assert_eq!(member.compression(), zip::CompressionMethod::Stored);
    let mut bytes = Vec::new();
    member.read_to_end(&mut bytes).unwrap();
    bytes
}

#[test]
fn npz_holds_images_and_labels_as_numpy_writes_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("samples.npz");
    let data: Vec<u8> = (0..2 * 4 * 5 * 3).map(|i| (i * 7 % 256) as u8).collect();
    let images = Array::u8(vec![2, 4, 5, 3], data.clone()).unwrap();
    let labels = Array::U32 {
        shape: vec![2],
        data: vec![7, 300],
    };
    npz::write(&path, &[(npz::IMAGES, &images), (npz::LABELS, &labels)]).unwrap();

    let bytes = member(&path, "arr_0.npy");
    let (dict, offset) = numpy_view(&bytes);
    assert!(dict.contains("'descr': '|u1'"), "{dict}");
    assert!(dict.contains("'fortran_order': False"), "{dict}");
    assert_eq!(shape_of(&dict), [2, 4, 5, 3], "{dict}");
    assert_eq!(&bytes[offset..], data.as_slice());

    let bytes = member(&path, "labels.npy");
    let (dict, offset) = numpy_view(&bytes);
    assert!(dict.contains("'descr': '<u4'"), "{dict}");
    assert_eq!(shape_of(&dict), [2], "{dict}");
    assert_eq!(&bytes[offset..], &[7, 0, 0, 0, 44, 1, 0, 0]);

    assert_eq!(npz::read(&path, npz::IMAGES).unwrap(), images);
    assert_eq!(npz::read(&path, npz::LABELS).unwrap(), labels);
}

#[test]
fn concatenation_checks_shapes_and_types() {
    let a = Array::u8(vec![1, 2, 2, 3], vec![1; 12]).unwrap();
    let b = Array::u8(vec![2, 2, 2, 3], vec![2; 24]).unwrap();
    let Array::U8 { shape, data } = npz::concatenate(&[a.clone(), b]).unwrap() else {
        panic!("uint8 in, uint8 out")
    };
    assert_eq!(shape, vec![3, 2, 2, 3]);
    assert_eq!(&data[..12], &[1; 12]);
    assert_eq!(&data[12..], &[2; 24]);
    let c = Array::u8(vec![1, 4, 1, 3], vec![0; 12]).unwrap();
    let err = npz::concatenate(&[a.clone(), c]).unwrap_err().to_string();
    assert!(err.contains("[1, 4, 1, 3]"), "{err}");
    let d = Array::F32 {
        shape: vec![1, 2, 2, 3],
        data: vec![0.0; 12],
    };
    assert!(npz::concatenate(&[a, d]).is_err());
}

#[test]
fn merging_shards_joins_every_array_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let shard = |name: &str, first: u8, n: usize| {
        let path = dir.path().join(name);
        let images = Array::u8(vec![n, 1, 1, 3], vec![first; n * 3]).unwrap();
        let labels = Array::U32 {
            shape: vec![n],
            data: vec![first as u32; n],
        };
        npz::write(&path, &[(npz::IMAGES, &images), (npz::LABELS, &labels)]).unwrap();
        path
    };
    let (a, b) = (shard("a.npz", 1, 2), shard("b.npz", 2, 1));
    let out = dir.path().join("all.npz");
    let merged = npz::merge_files(&[a.as_path(), b.as_path()], &out).unwrap();
    assert_eq!(
        merged,
        vec![
            ("arr_0".to_string(), vec![3, 1, 1, 3]),
            ("labels".to_string(), vec![3])
        ]
    );
    assert_eq!(
        npz::read(&out, npz::LABELS).unwrap(),
        Array::U32 {
            shape: vec![3],
            data: vec![1, 1, 2]
        }
    );
}

#[test]
fn unsupported_element_types_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("int64.npz");
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    zip.start_file("arr_0.npy", zip::write::SimpleFileOptions::default())
        .unwrap();
    let mut header = b"\x93NUMPY\x01\x00".to_vec();
    let mut dict = "{'descr': '<i8', 'fortran_order': False, 'shape': (1,), }".to_string();
    while !(10 + dict.len() + 1).is_multiple_of(64) {
        dict.push(' ');
    }
    dict.push('\n');
    header.extend((dict.len() as u16).to_le_bytes());
    header.extend(dict.bytes());
    header.extend(5i64.to_le_bytes());
    zip.write_all(&header).unwrap();
    zip.finish().unwrap();
    let err = npz::read(&path, "arr_0").unwrap_err().to_string();
    assert!(err.contains("unsupported element type <i8"), "{err}");
    let err = npz::read(&path, "labels").unwrap_err().to_string();
    assert!(
        err.contains("has no array 'labels' (it has: arr_0)"),
        "{err}"
    );
}
