//! Splitting a large sampling job (e.g. 50,000 images for FID) into
//! independent pieces whose outputs concatenate, in order, to the whole.

use crate::{bail, Context, Result};
use std::ops::Range;
use std::str::FromStr;

/// Shard `index` of `count` (0-based): a contiguous run of image indices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    /// The global image indices this shard produces out of `total`.
    pub fn range(&self, total: u64) -> Range<u64> {
        let at = |i: usize| total * i as u64 / self.count as u64;
        at(self.index)..at(self.index + 1)
    }
}

impl FromStr for Shard {
    type Err = crate::Error;

    /// "i/n" with 0 ≤ i < n.
    fn from_str(s: &str) -> Result<Self> {
        let (i, n) = s
            .split_once('/')
            .context("a shard is written i/n, e.g. 0/4 (shards are numbered from 0)")?;
        let index: usize = i
            .trim()
            .parse()
            .ok()
            .with_context(|| format!("shard index '{i}' is not a number"))?;
        let count: usize = n
            .trim()
            .parse()
            .ok()
            .with_context(|| format!("shard count '{n}' is not a number"))?;
        if count == 0 || index >= count {
            bail!("shard {index}/{count}: shards are numbered 0..{count}, i.e. 0/{count} … {}/{count}", count.max(1) - 1);
        }
        Ok(Shard { index, count })
    }
}
