//! `dit serve` over loopback with a real HTTP client: generation equals
//! `dit sample`, progress events, cancelling, refusals, the command line;
//! and, ignored by default, the load test and the browser test.

mod api;
mod browser;
mod cli;
mod load;
mod progress;
mod refusals;
mod server_support;
