//! `dit serve`: an HTTP API and a web page for generating images.
//!
//! * [`request`]: the generation request (OpenAI images API shape), checked
//!   field by field, and the API's errors.
//! * [`jobs`]: jobs, the bounded queue, the registry of recent jobs.
//! * [`worker`]: the one thread that owns the model and runs batches of
//!   compatible jobs, publishing progress and x̂0 previews.
//! * `http`: routes, the bearer-key check, Server-Sent Events.
//! * the page (`src/serve/page/`), embedded in the binary.
//!
//! A request's images are exactly those `dit sample` draws for the same
//! checkpoint, class, seed, steps, sampler and guidance: image k's noise is
//! keyed by (seed, k) whatever else shares its batch, and its PNG is encoded
//! by the same code.

mod http;
pub mod jobs;
pub mod model;
pub mod request;
pub mod worker;

pub use jobs::BatchPolicy;
pub use model::{newest_run, ModelFacts, ServedModel};
pub use request::{Defaults, Limits};

use crate::{bail, Context, Result};
use jobs::Scheduler;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use worker::WorkerSettings;

/// The page: plain HTML, JavaScript and CSS, no build step.
mod page {
    pub const INDEX: &str = include_str!("page/index.html");
    pub const SCRIPT: &str = include_str!("page/page.js");
    pub const STYLE: &str = include_str!("page/page.css");
}

#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub addr: SocketAddr,
    /// Bearer key for `/v1/*`; required for any address but loopback.
    pub api_key: Option<String>,
    pub limits: Limits,
    /// Jobs that may wait; more are refused with 429.
    pub queue_capacity: usize,
    /// Finished jobs whose results stay readable by id.
    pub keep_finished: usize,
    pub batching: BatchPolicy,
    /// A preview every this many steps; 0: about ten per job; `usize::MAX`: none.
    pub preview_every: usize,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            api_key: None,
            limits: Limits::default(),
            queue_capacity: 32,
            keep_finished: 64,
            batching: BatchPolicy {
                combine: true,
                max_images: 16,
            },
            preview_every: 0,
        }
    }
}

/// A running server: the HTTP threads and the worker. Dropping it cancels
/// every job and stops both.
pub struct Server {
    addr: SocketAddr,
    scheduler: Arc<Scheduler>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    http: Option<JoinHandle<Result<()>>>,
    worker: Option<JoinHandle<()>>,
}

impl Server {
    /// Binds `config.addr` and starts serving `model` in the background.
    /// Refuses a non-loopback address without an API key.
    pub fn start(model: ServedModel, config: ServeConfig) -> Result<Server> {
        if !config.addr.ip().is_loopback() && config.api_key.is_none() {
            bail!(
                "--addr {}: serving beyond this machine needs --api-key <key> (or DIT_API_KEY); \
                 clients then send 'Authorization: Bearer <key>'",
                config.addr
            );
        }
        if config
            .api_key
            .as_deref()
            .is_some_and(|k| k.trim().is_empty())
        {
            bail!("--api-key: the key is empty");
        }
        if config.queue_capacity == 0 || config.limits.max_n == 0 {
            bail!("the queue capacity and the image limit per request must be at least 1");
        }
        let listener = TcpListener::bind(config.addr)
            .with_context(|| format!("--addr {}: cannot listen there", config.addr))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;

        let facts = model.facts();
        let scheduler = Arc::new(Scheduler::new(config.queue_capacity, config.keep_finished));
        let settings = WorkerSettings {
            batching: config.batching,
            preview_every: config.preview_every,
        };
        let worker_scheduler = scheduler.clone();
        let worker = std::thread::Builder::new()
            .name("dit-serve-worker".into())
            .spawn(move || worker::run(model, worker_scheduler, settings))?;

        let app = Arc::new(http::App {
            scheduler: scheduler.clone(),
            defaults: Defaults::for_model(&facts),
            model: facts,
            limits: config.limits.clone(),
            api_key: config.api_key.clone(),
        });
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("dit-serve-http")
            .enable_all()
            .build()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let http =
            std::thread::Builder::new()
                .name("dit-serve".into())
                .spawn(move || -> Result<()> {
                    let served = runtime.block_on(async move {
                        let listener = tokio::net::TcpListener::from_std(listener)?;
                        let serve = axum::serve(listener, http::router(app));
                        tokio::select! {
                            result = serve => result,
                            _ = stopped => Ok(()),
                        }
                    });
                    // Connections still open (a stream, a waiting request) end here.
                    runtime.shutdown_timeout(Duration::from_secs(1));
                    Ok(served?)
                })?;
        Ok(Server {
            addr,
            scheduler,
            stop: Some(stop),
            http: Some(http),
            worker: Some(worker),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Serves until the HTTP side fails (or the process is stopped).
    pub fn wait(mut self) -> Result<()> {
        let http = self.http.take().expect("a started server");
        http.join()
            .map_err(|_| crate::Error::msg("the HTTP server thread panicked"))?
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.scheduler.shutdown();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(http) = self.http.take() {
            let _ = http.join();
        }
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

/// Loads nothing, binds, serves until stopped: what `dit serve` runs.
/// `announce` is told the address once it is listening.
pub fn run(model: ServedModel, config: ServeConfig, announce: impl FnOnce(&Server)) -> Result<()> {
    let server = Server::start(model, config)?;
    announce(&server);
    server.wait()
}
