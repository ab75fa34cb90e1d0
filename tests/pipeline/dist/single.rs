//! The communicator of a one-process job, and the bucketed all-reduce through
//! communicators that need no MPI.

use candle_core::{DType, Device, Tensor};
use dit::dist::{BucketedAllReduce, Communicator, Reduction, SingleProcess};
use std::cell::RefCell;

#[test]
fn single_process_collectives_leave_data_as_it_is() {
    let comm = SingleProcess;
    assert_eq!((comm.rank(), comm.world_size()), (0, 1));
    for n in [0, 1, 3, 1000003] {
        let data: Vec<f32> = (0..n).map(|i| (i as f32).sin() * 1e3).collect();
        let mut buf = data.clone();
        comm.all_reduce_sum(&mut buf).unwrap();
        assert_eq!(buf, data);
        comm.all_reduce_mean(&mut buf).unwrap();
        assert_eq!(buf, data);
        comm.broadcast_f32(&mut buf, 0).unwrap();
        assert_eq!(buf, data);
    }
    let mut bytes = b"config".to_vec();
    comm.broadcast_bytes(&mut bytes, 0).unwrap();
    assert_eq!(bytes, b"config");
    assert_eq!(
        comm.gather_bytes(b"metrics", 0).unwrap(),
        Some(vec![b"metrics".to_vec()])
    );
    comm.barrier().unwrap();
    comm.finish().unwrap();
}

#[test]
fn a_root_outside_the_world_is_refused_by_name() {
    let comm = SingleProcess;
    let err = comm.broadcast_f32(&mut [1.0], 1).unwrap_err().to_string();
    assert!(
        err.contains("broadcast_f32") && err.contains("root rank 1") && err.contains("1 ranks"),
        "{err}"
    );
    let err = comm.gather_bytes(b"x", 2).unwrap_err().to_string();
    assert!(
        err.contains("gather_bytes") && err.contains("root rank 2"),
        "{err}"
    );
}

fn tensors(sizes: &[usize]) -> Vec<Tensor> {
    sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            let values: Vec<f32> = (0..n).map(|j| (100 * i + j) as f32).collect();
            Tensor::from_vec(values, n, &Device::Cpu).unwrap()
        })
        .collect()
}

#[test]
fn buckets_close_before_the_tensor_that_would_overflow_them() {
    // 16-byte buckets hold 4 f32.
    let bucketing = BucketedAllReduce::new(16).unwrap();
    let plan = bucketing.buckets(&tensors(&[1, 2, 1, 10, 0, 1, 4, 3]));
    assert_eq!(plan, vec![0..3, 3..4, 4..6, 6..7, 7..8]);
    assert!(bucketing.buckets(&[]).is_empty());
    // A tensor larger than the bucket is a bucket of its own, even first.
    assert_eq!(bucketing.buckets(&tensors(&[9, 1])), vec![0..1, 1..2]);
    let err = BucketedAllReduce::new(3).unwrap_err().to_string();
    assert!(err.contains("at least one f32"), "{err}");
}

/// A stand-in for a job of `world` ranks that all hold the same data: the sum
/// is the data times `world`. It records each all-reduce's length.
struct IdenticalRanks {
    world: usize,
    calls: RefCell<Vec<usize>>,
}

impl Communicator for IdenticalRanks {
    fn rank(&self) -> usize {
        0
    }
    fn world_size(&self) -> usize {
        self.world
    }
    fn all_reduce_sum(&self, buf: &mut [f32]) -> dit::Result<()> {
        self.calls.borrow_mut().push(buf.len());
        buf.iter_mut().for_each(|x| *x *= self.world as f32);
        Ok(())
    }
    fn broadcast_f32(&self, _: &mut [f32], _: usize) -> dit::Result<()> {
        unreachable!()
    }
    fn broadcast_bytes(&self, _: &mut Vec<u8>, _: usize) -> dit::Result<()> {
        unreachable!()
    }
    fn barrier(&self) -> dit::Result<()> {
        unreachable!()
    }
    fn gather_bytes(&self, _: &[u8], _: usize) -> dit::Result<Option<Vec<Vec<u8>>>> {
        unreachable!()
    }
    fn description(&self) -> String {
        format!("{} identical ranks", self.world)
    }
    fn abort(&self, message: &str) -> ! {
        panic!("{message}")
    }
    fn finish(&self) -> dit::Result<()> {
        Ok(())
    }
}

#[test]
fn bucketed_all_reduce_writes_each_tensor_back_in_place() {
    let comm = IdenticalRanks {
        world: 3,
        calls: RefCell::new(Vec::new()),
    };
    let shapes: [&[usize]; 6] = [&[2, 3], &[], &[0, 4], &[5], &[1, 1, 2], &[7]];
    let originals: Vec<Tensor> = shapes
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let n: usize = s.iter().product();
            let v: Vec<f32> = (0..n).map(|j| (10 * i + j) as f32 + 0.5).collect();
            Tensor::from_vec(v, *s, &Device::Cpu).unwrap()
        })
        .collect();
    let mut reduced = originals.clone();
    // 32-byte buckets (8 f32): [6 + 1 + 0 elements], [5 + 2], [7].
    let bucketing = BucketedAllReduce::new(32).unwrap();
    bucketing.run(&comm, &mut reduced, Reduction::Sum).unwrap();
    assert_eq!(*comm.calls.borrow(), vec![7, 7, 7]);
    for (orig, got) in originals.iter().zip(&reduced) {
        assert_eq!(got.dims(), orig.dims());
        let want = (orig * 3.0)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(got.flatten_all().unwrap().to_vec1::<f32>().unwrap(), want);
    }
    // Mean of identical ranks gives the data back: (3x)/3 is exact here.
    let mut averaged = originals.clone();
    bucketing
        .run(&comm, &mut averaged, Reduction::Mean)
        .unwrap();
    for (orig, got) in originals.iter().zip(&averaged) {
        let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(flat(got), flat(orig));
    }
}

#[test]
fn bucketed_all_reduce_refuses_other_dtypes_by_tensor() {
    let mut list = vec![
        Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap(),
        Tensor::zeros((2, 2), DType::F64, &Device::Cpu).unwrap(),
    ];
    let err = BucketedAllReduce::default()
        .run(&SingleProcess, &mut list, Reduction::Mean)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("tensor 1") && err.contains("F64") && err.contains("[2, 2]"),
        "{err}"
    );
}
