//! MPI through the `mpi` crate (rsmpi) over the launcher's `MPI_COMM_WORLD`.

use super::{check_root, Communicator, ABORT_EXIT_CODE};
use crate::{bail, Result};
use ::mpi::collective::SystemOperation;
use ::mpi::datatype::PartitionMut;
use ::mpi::environment::Universe;
use ::mpi::ffi;
use ::mpi::topology::SimpleCommunicator;
use ::mpi::traits::{AsRaw as _, Communicator as _, CommunicatorCollectives as _, Root as _};
use ::mpi::Threading;
use std::cell::{Cell, RefCell};
use std::ffi::{c_int, c_void};
use std::io::Write;
use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicBool, Ordering};

/// MPI counts are C `int`s: longer buffers go in pieces of at most this many
/// elements (4 GiB of f32; a gradient bucket is one piece).
const CHUNK_ELEMENTS: usize = 1 << 30;

/// Set (to anything) in the environment, all-reduces send from a copy instead
/// of in place: for an MPI library whose `MPI_IN_PLACE` is not the one
/// [`in_place_address`] assumes, and for the tests of the copying path.
pub const NO_IN_PLACE_VARIABLE: &str = "DIT_MPI_NO_IN_PLACE";

/// MPI may be initialised once in a process's life, even after finalising.
static INITIALISED: AtomicBool = AtomicBool::new(false);

/// One rank of an MPI job.
///
/// Calls are made from one thread at a time (the type is not `Sync`), which
/// is what MPI's `MPI_THREAD_SERIALIZED` level allows. Dropping it without
/// [`Communicator::finish`] aborts the job (module docs of `dist`).
pub struct Mpi {
    world: SimpleCommunicator,
    rank: usize,
    world_size: usize,
    finished: Cell<bool>,
    /// `MPI_IN_PLACE` of the MPI library in use, where known (see
    /// [`in_place_address`]); otherwise all-reduces copy into `send` first.
    in_place: Option<usize>,
    send: RefCell<Vec<f32>>,
    /// `MPI_Get_library_version`'s first line.
    library: String,
    /// Finalises MPI when dropped; dropped only after `finish`.
    universe: ManuallyDrop<Universe>,
}

impl Mpi {
    /// Initialises MPI (once per process) and joins `MPI_COMM_WORLD`, whose
    /// ranks the launcher (`mpirun`, `srun`) decided.
    pub fn init() -> Result<Self> {
        if INITIALISED.swap(true, Ordering::SeqCst) {
            bail!("MPI can be initialised once per process, and it already was");
        }
        let Some((universe, threading)) = ::mpi::initialize_with_threading(Threading::Serialized)
        else {
            bail!("MPI was already initialised in this process by other code");
        };
        let world = universe.world();
        let (rank, world_size) = (world.rank() as usize, world.size() as usize);
        let library = ::mpi::environment::library_version()
            .unwrap_or_default()
            .lines()
            .next()
            .unwrap_or("")
            .trim()
            .to_string();
        let mpi = Mpi {
            world,
            rank,
            world_size,
            finished: Cell::new(false),
            in_place: in_place_address(&library)
                .filter(|_| std::env::var_os(NO_IN_PLACE_VARIABLE).is_none()),
            send: RefCell::new(Vec::new()),
            library,
            universe: ManuallyDrop::new(universe),
        };
        if threading < Threading::Serialized {
            // Every rank's library reports the same level, so every rank
            // stops here; without the job's end the others would not know.
            mpi.abort(&format!(
                "the MPI library provides thread level {threading:?}, dit needs Serialized"
            ));
        }
        Ok(mpi)
    }

    /// Fails on every rank alike unless all ranks passed the same `values`
    /// (lengths, roots): a mismatch would otherwise hang or corrupt memory.
    fn agree(&self, collective: &str, values: &[(&str, usize)]) -> Result<()> {
        // One MAX reduction of (v, -v) gives every rank the max and the min.
        let mut mine: Vec<i64> = Vec::with_capacity(2 * values.len());
        for &(_, v) in values {
            let v = i64::try_from(v).unwrap_or(i64::MAX);
            mine.extend([v, -v]);
        }
        let mut extremes = vec![0i64; mine.len()];
        self.world
            .all_reduce_into(&mine[..], &mut extremes[..], SystemOperation::max());
        for (i, &(name, v)) in values.iter().enumerate() {
            let (max, min) = (extremes[2 * i], -extremes[2 * i + 1]);
            if max != min {
                bail!(
                    "{collective}: the ranks passed different {name}s, from {min} to {max} \
                     (rank {} of {} passed {v})",
                    self.rank,
                    self.world_size
                );
            }
        }
        Ok(())
    }
}

impl Communicator for Mpi {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world_size(&self) -> usize {
        self.world_size
    }

    fn all_reduce_sum(&self, buf: &mut [f32]) -> Result<()> {
        self.agree("all_reduce_sum", &[("buffer length", buf.len())])?;
        if let Some(in_place) = self.in_place {
            for chunk in buf.chunks_mut(CHUNK_ELEMENTS) {
                // SAFETY: `in_place` is this library's MPI_IN_PLACE, `chunk`
                // is valid for `len` f32 (at most CHUNK_ELEMENTS, a C int),
                // and MPI_FLOAT is f32.
                let code = unsafe {
                    ffi::MPI_Allreduce(
                        in_place as *const c_void,
                        chunk.as_mut_ptr().cast(),
                        chunk.len() as c_int,
                        ffi::RSMPI_FLOAT,
                        ffi::RSMPI_SUM,
                        self.world.as_raw(),
                    )
                };
                if code != 0 {
                    bail!("all_reduce_sum: MPI_Allreduce failed with MPI error code {code}");
                }
            }
            return Ok(());
        }
        let mut send = self.send.borrow_mut();
        for chunk in buf.chunks_mut(CHUNK_ELEMENTS) {
            send.clear();
            send.extend_from_slice(chunk);
            self.world
                .all_reduce_into(&send[..], chunk, SystemOperation::sum());
        }
        Ok(())
    }

    fn broadcast_f32(&self, buf: &mut [f32], root: usize) -> Result<()> {
        self.agree(
            "broadcast_f32",
            &[("buffer length", buf.len()), ("root rank", root)],
        )?;
        check_root("broadcast_f32", root, self.world_size)?;
        let root = self.world.process_at_rank(root as i32);
        for chunk in buf.chunks_mut(CHUNK_ELEMENTS) {
            root.broadcast_into(chunk);
        }
        Ok(())
    }

    fn broadcast_bytes(&self, buf: &mut Vec<u8>, root: usize) -> Result<()> {
        self.agree("broadcast_bytes", &[("root rank", root)])?;
        check_root("broadcast_bytes", root, self.world_size)?;
        let root = self.world.process_at_rank(root as i32);
        let mut len = buf.len() as u64;
        root.broadcast_into(&mut len);
        buf.resize(len as usize, 0);
        for chunk in buf.chunks_mut(CHUNK_ELEMENTS) {
            root.broadcast_into(chunk);
        }
        Ok(())
    }

    fn barrier(&self) -> Result<()> {
        self.world.barrier();
        Ok(())
    }

    fn gather_bytes(&self, blob: &[u8], root: usize) -> Result<Option<Vec<Vec<u8>>>> {
        // Every rank learns every length (and root), so all of them take the
        // same decision on a mismatch or an oversized total.
        let mine = [root as u64, blob.len() as u64];
        let mut all = vec![0u64; 2 * self.world_size];
        self.world.all_gather_into(&mine[..], &mut all[..]);
        let (roots, lens): (Vec<u64>, Vec<u64>) = all.chunks(2).map(|p| (p[0], p[1])).unzip();
        if roots.iter().any(|&r| r != root as u64) {
            bail!(
                "gather_bytes: the ranks passed different root ranks {roots:?} (rank {} \
                 passed {root})",
                self.rank
            );
        }
        check_root("gather_bytes", root, self.world_size)?;
        let total: u64 = lens.iter().sum();
        if total > i32::MAX as u64 {
            bail!(
                "gather_bytes: {total} bytes in all is more than one MPI gather carries \
                 ({} bytes); it is meant for small results",
                i32::MAX
            );
        }
        // An empty Rust slice points at address `align_of` (1 for bytes),
        // which is Open MPI's MPI_IN_PLACE: give MPI real addresses instead.
        let backing = [0u8; 1];
        let blob = if blob.is_empty() { &backing[..0] } else { blob };
        let root_process = self.world.process_at_rank(root as i32);
        if self.rank != root {
            root_process.gather_varcount_into(blob);
            return Ok(None);
        }
        let counts: Vec<i32> = lens.iter().map(|&l| l as i32).collect();
        let displs: Vec<i32> = counts
            .iter()
            .scan(0i32, |offset, &c| {
                let at = *offset;
                *offset += c;
                Some(at)
            })
            .collect();
        let mut out = vec![0u8; (total as usize).max(1)];
        {
            let mut partition = PartitionMut::new(&mut out[..], &counts[..], &displs[..]);
            root_process.gather_varcount_into_root(blob, &mut partition);
        }
        let blobs = displs
            .iter()
            .zip(&counts)
            .map(|(&d, &c)| out[d as usize..(d + c) as usize].to_vec())
            .collect();
        Ok(Some(blobs))
    }

    fn description(&self) -> String {
        let all_reduce = match self.in_place {
            Some(_) => "in place",
            None => "through a send buffer",
        };
        format!(
            "MPI ({}), rank {} of {}, all-reduce {all_reduce}",
            self.library, self.rank, self.world_size
        )
    }

    fn abort(&self, message: &str) -> ! {
        eprintln!("rank {} of {}: {message}", self.rank, self.world_size);
        let _ = std::io::stderr().flush();
        self.world.abort(ABORT_EXIT_CODE)
    }

    fn finish(&self) -> Result<()> {
        self.world.barrier();
        self.finished.set(true);
        Ok(())
    }
}

/// The address MPI_IN_PLACE stands for in the library named by `library`
/// (`MPI_Get_library_version`). The `mpi` crate does not export it (in C it
/// is a macro), and sending from a copy instead was several times slower for
/// a 4 MiB all-reduce between two local ranks in most paired runs with Open
/// MPI 4.1 on the (shared, noisy) 2-core test machine, e.g. 0.6 ms in place
/// against 3.6–5.7 ms from a copy (`BASELINE=1 bench/allreduce.sh`).
/// Known: Open MPI's mpi.h `((void *) 1)` and MPICH's `(void *) -1`; any
/// other library takes the copying path.
fn in_place_address(library: &str) -> Option<usize> {
    if library.starts_with("Open MPI") {
        Some(1)
    } else if library.starts_with("MPICH") {
        Some(usize::MAX)
    } else {
        None
    }
}

impl Drop for Mpi {
    fn drop(&mut self) {
        if self.finished.get() {
            // SAFETY: dropped once, here, and never used afterwards.
            unsafe { ManuallyDrop::drop(&mut self.universe) };
            return;
        }
        // Finalising here would wait for ranks that wait in a collective for
        // this one: end the job instead.
        let why = if std::thread::panicking() {
            "panicked"
        } else {
            "stopped before finish() (an error handled without abort?)"
        };
        self.abort(&format!("{why}; ending the job"));
    }
}
