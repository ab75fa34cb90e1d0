//! The world of one process.

use super::{check_root, Communicator, ABORT_EXIT_CODE};
use crate::Result;
use std::io::Write;

/// A job of one rank: every collective leaves its data as it is.
#[derive(Clone, Copy, Debug, Default)]
pub struct SingleProcess;

impl Communicator for SingleProcess {
    fn rank(&self) -> usize {
        0
    }

    fn world_size(&self) -> usize {
        1
    }

    fn all_reduce_sum(&self, _buf: &mut [f32]) -> Result<()> {
        Ok(())
    }

    fn broadcast_f32(&self, _buf: &mut [f32], root: usize) -> Result<()> {
        check_root("broadcast_f32", root, 1)
    }

    fn broadcast_bytes(&self, _buf: &mut Vec<u8>, root: usize) -> Result<()> {
        check_root("broadcast_bytes", root, 1)
    }

    fn barrier(&self) -> Result<()> {
        Ok(())
    }

    fn gather_bytes(&self, blob: &[u8], root: usize) -> Result<Option<Vec<Vec<u8>>>> {
        check_root("gather_bytes", root, 1)?;
        Ok(Some(vec![blob.to_vec()]))
    }

    fn description(&self) -> String {
        "single process (no communication)".into()
    }

    fn abort(&self, message: &str) -> ! {
        eprintln!("rank 0 of 1: {message}");
        let _ = std::io::stderr().flush();
        std::process::exit(ABORT_EXIT_CODE)
    }

    fn finish(&self) -> Result<()> {
        Ok(())
    }
}
