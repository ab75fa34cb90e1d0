//! The HTTP side: routes, the bearer-key check, JSON bodies and the event
//! stream. Handlers only parse, queue and wait; the worker does the work.
//!
//! Nothing a request carries is ever used as a file path: images live in
//! memory and are found by their job's random id.

use super::jobs::{Job, JobOutput, JobState, JobStatus, Scheduler, Watch};
use super::model::ModelFacts;
use super::page;
use super::request::{parse_generation, ApiError, Defaults, Limits, ResponseFormat};
use axum::body::{Body, BodyDataStream, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

/// How often an idle event stream sends a comment, which also finds out
/// that its client has gone.
const KEEP_ALIVE: Duration = Duration::from_secs(2);

/// How much of a body the answer does not need (over the limit, or sent
/// without the right key) is read and dropped before the refusal, and for
/// how long at most. A server that answers and closes while its
/// client is still sending resets the connection, and the client sees a
/// broken pipe instead of the reason; a client sending more than this gets
/// just that.
const DRAIN_BYTES: usize = 1 << 20;
const DRAIN_TIME: Duration = Duration::from_secs(5);

/// What every handler shares.
pub struct App {
    pub scheduler: Arc<Scheduler>,
    pub model: ModelFacts,
    pub limits: Limits,
    pub defaults: Defaults,
    /// Required as `Authorization: Bearer <key>` on `/v1/*` when set.
    pub api_key: Option<String>,
}

type Shared = State<Arc<App>>;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST);
        let body = Json(json!({
            "error": {
                "message": self.message,
                "type": self.kind(),
                "param": self.param,
            }
        }));
        let mut response = (status, body).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.status == 401 {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

pub fn router(app: Arc<App>) -> Router {
    let api = Router::new()
        .route("/v1/models", get(models))
        .route("/v1/images/generations", post(generate))
        .route("/v1/jobs", post(submit))
        .route("/v1/jobs/{id}", get(job_status).delete(cancel))
        .route("/v1/jobs/{id}/events", get(events))
        .route("/v1/jobs/{id}/images/{file}", get(image))
        .layer(middleware::from_fn_with_state(app.clone(), require_key));
    Router::new()
        .route("/", get(|| async { Html(page::INDEX) }))
        .route(
            "/page.js",
            get(|| async { text(page::SCRIPT, "text/javascript") }),
        )
        .route("/page.css", get(|| async { text(page::STYLE, "text/css") }))
        .route("/health", get(health))
        .merge(api)
        .fallback(not_found)
        .with_state(app)
}

fn text(body: &'static str, mime: &'static str) -> Response {
    let content_type = format!("{mime}; charset=utf-8");
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::new(404, format!("no such endpoint: {method} {}", uri.path()))
}

async fn require_key(State(app): Shared, request: Request, next: Next) -> Response {
    if let Some(key) = &app.api_key {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let refusal = match given {
            None => Some(ApiError::new(
                401,
                "this server needs an API key: send the header 'Authorization: Bearer <key>'",
            )),
            Some(given) if !same_secret(given.trim().as_bytes(), key.as_bytes()) => {
                Some(ApiError::new(401, "wrong API key"))
            }
            Some(_) => None,
        };
        if let Some(refusal) = refusal {
            drain(&mut request.into_body().into_data_stream(), 0).await;
            return refusal.into_response();
        }
    }
    next.run(request).await
}

/// Compares without stopping at the first difference, so response times do
/// not tell how much of a guessed key was right.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn health(State(app): Shared) -> Json<Value> {
    let load = app.scheduler.load();
    Json(json!({
        "status": "ok",
        "queue": {"waiting": load.waiting, "capacity": load.capacity},
        "running": load.running,
        "jobs": {
            "succeeded": load.counts.succeeded,
            "failed": load.counts.failed,
            "cancelled": load.counts.cancelled,
            "rejected": load.counts.rejected,
        },
        "auth_required": app.api_key.is_some(),
    }))
}

async fn models(State(app): Shared) -> Json<Value> {
    let m = &app.model;
    let classes: Vec<Value> = (0..m.config.num_classes as u32)
        .map(|c| {
            let synonyms = m.class_names.as_ref().map(|n| n.synonyms(c).to_vec());
            json!({"id": c, "name": m.class_name(c), "synonyms": synonyms.unwrap_or_default()})
        })
        .collect();
    let d = &app.defaults;
    let l = &app.limits;
    Json(json!({
        "object": "list",
        "data": [{
            "id": m.name,
            "object": "model",
            "owned_by": "dit",
            "description": m.config.describe().replacen("DiT", m.family, 1),
            "family": m.family,
            "config": m.config,
            "image_size": m.image_size,
            "image_channels": m.image_channels,
            "latent": m.latent,
            "max_steps": m.max_steps,
            "guidance": m.config.null_class().is_some(),
            "classes": classes,
            "samplers": m.samplers,
            "defaults": {
                "n": d.n,
                "steps": d.steps,
                "sampler": d.sampler,
                "guidance_scale": d.guidance_scale,
            },
            "limits": {
                "max_n": l.max_n,
                "max_steps": l.max_steps.min(m.max_steps),
                "max_body_bytes": l.max_body_bytes,
                "max_guidance": l.max_guidance,
            },
        }]
    }))
}

/// A body of at most the limit, as bytes; a larger one is refused (413)
/// after what the client sends of it is drained.
async fn read_body(app: &App, body: Body) -> Result<Bytes, ApiError> {
    let limit = app.limits.max_body_bytes;
    let mut stream = body.into_data_stream();
    let mut kept = Vec::new();
    while let Some(piece) = stream.next().await {
        let piece =
            piece.map_err(|e| ApiError::new(400, format!("cannot read the request body: {e}")))?;
        if kept.len() + piece.len() > limit {
            drain(&mut stream, kept.len() + piece.len()).await;
            return Err(ApiError::new(
                413,
                format!("the request body is larger than the limit of {limit} bytes"),
            ));
        }
        kept.extend_from_slice(&piece);
    }
    Ok(kept.into())
}

/// Reads and drops the rest of a body the answer does not need, up to
/// [`DRAIN_BYTES`] in all (`read` already) and for [`DRAIN_TIME`] at most.
async fn drain(stream: &mut BodyDataStream, mut read: usize) {
    let rest = async {
        while read <= DRAIN_BYTES {
            match stream.next().await {
                Some(Ok(piece)) => read += piece.len(),
                _ => break,
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME, rest).await;
}

async fn queue(app: &Arc<App>, body: Body) -> Result<Arc<Job>, ApiError> {
    let body = read_body(app, body).await?;
    let spec = parse_generation(&body, &app.model, &app.limits, &app.defaults)?;
    app.scheduler.submit(spec)
}

/// `POST /v1/images/generations`: waits for the images. The job is
/// cancelled if the client goes away first.
async fn generate(
    State(app): Shared,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let job = queue(&app, body).await?;
    let watch = Watch::new(app.scheduler.clone(), job.clone());
    let mut states = job.subscribe();
    let state = states
        .wait_for(|s| s.status.is_final())
        .await
        .map(|s| s.clone())
        .map_err(|_| ApiError::new(500, "the job was lost"))?;
    drop(watch);
    match state.status {
        JobStatus::Succeeded(output) => {
            Ok(Json(result_json(&app, &job, &output, &base_url(&headers))))
        }
        JobStatus::Cancelled { .. } => {
            Err(ApiError::new(409, format!("job {} was cancelled", job.id)))
        }
        JobStatus::Failed(message) => {
            Err(ApiError::new(500, format!("generation failed: {message}")))
        }
        _ => unreachable!("waited for a final state"),
    }
}

/// `POST /v1/jobs`: queues and answers at once with the job's id.
async fn submit(State(app): Shared, body: Body) -> Result<Response, ApiError> {
    let job = queue(&app, body).await?;
    let position = match job.state().status {
        JobStatus::Queued { position } => Some(position),
        _ => None,
    };
    let body = json!({
        "id": job.id,
        "status": "queued",
        "position": position,
        "events": format!("/v1/jobs/{}/events", job.id),
        "job": format!("/v1/jobs/{}", job.id),
    });
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

fn find(app: &App, id: &str) -> Result<Arc<Job>, ApiError> {
    app.scheduler.get(id).ok_or_else(|| {
        ApiError::new(
            404,
            format!("no job '{id}' (finished jobs are kept a while only)"),
        )
    })
}

async fn job_status(
    State(app): Shared,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let job = find(&app, &id)?;
    Ok(Json(status_json(
        &app,
        &job,
        &job.state(),
        &base_url(&headers),
    )))
}

async fn cancel(State(app): Shared, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let job = find(&app, &id)?;
    if app.scheduler.cancel(&job) {
        Ok(Json(json!({"id": job.id, "status": "cancelled"})))
    } else {
        Err(ApiError::new(
            409,
            format!("job {id} has already ended ({})", job.state().status.name()),
        ))
    }
}

/// `GET /v1/jobs/{id}/images/{k}.png`: a finished job's image, from memory.
async fn image(
    State(app): Shared,
    Path((id, file)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let job = find(&app, &id)?;
    let k: usize = file
        .strip_suffix(".png")
        .and_then(|k| k.parse().ok())
        .ok_or_else(|| {
            ApiError::new(
                404,
                format!("no image '{file}': images are named 0.png, 1.png, …"),
            )
        })?;
    let JobStatus::Succeeded(output) = job.state().status else {
        return Err(ApiError::new(
            404,
            format!(
                "job {id} has no images (it is {})",
                job.state().status.name()
            ),
        ));
    };
    let png = output
        .images
        .get(k)
        .ok_or_else(|| {
            ApiError::new(
                404,
                format!("job {id} has {} images, not {}", output.images.len(), k + 1),
            )
        })?
        .png
        .clone();
    Ok(([(header::CONTENT_TYPE, "image/png")], png).into_response())
}

/// `GET /v1/jobs/{id}/events`: Server-Sent Events. `queued`, `progress`
/// and `preview` while it runs, then one of `done`, `failed`, `cancelled`.
/// When the last stream watching a job closes before it ends, the job is
/// cancelled.
async fn events(
    State(app): Shared,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let job = find(&app, &id)?;
    let stream = EventStream {
        states: job.subscribe(),
        watch: Watch::new(app.scheduler.clone(), job),
        app,
        base: base_url(&headers),
        pending: VecDeque::new(),
        started: false,
        last_position: None,
        last_step: None,
        last_preview: None,
        ended: false,
    };
    let events = futures_util::stream::unfold(stream, |mut s| async move {
        let event = s.next().await?;
        Some((Ok(event), s))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}

/// One client's view of a job's states, as events. Holds a [`Watch`], so
/// dropping it (the client went away) may cancel the job.
struct EventStream {
    states: tokio::sync::watch::Receiver<JobState>,
    watch: Watch,
    app: Arc<App>,
    base: String,
    pending: VecDeque<Event>,
    started: bool,
    last_position: Option<usize>,
    last_step: Option<usize>,
    last_preview: Option<usize>,
    ended: bool,
}

impl EventStream {
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(event);
            }
            if self.ended {
                return None;
            }
            if self.started {
                // The job (held by the watch) keeps the sender alive.
                self.states.changed().await.ok()?;
            }
            self.started = true;
            let state = self.states.borrow_and_update().clone();
            self.queue_events(&state);
        }
    }

    fn queue_events(&mut self, state: &JobState) {
        let job = self.watch.job().clone();
        match &state.status {
            JobStatus::Queued { position } => {
                if self.last_position != Some(*position) {
                    self.last_position = Some(*position);
                    self.push("queued", json!({"id": job.id, "position": position}));
                }
            }
            JobStatus::Running {
                step,
                total,
                elapsed_seconds,
                eta_seconds,
            } => {
                if self.last_step.is_none_or(|last| *step > last) {
                    self.last_step = Some(*step);
                    self.push(
                        "progress",
                        json!({
                            "id": job.id,
                            "step": step,
                            "total": total,
                            "elapsed_seconds": elapsed_seconds,
                            "eta_seconds": eta_seconds,
                        }),
                    );
                }
                if let Some(preview) = &state.preview {
                    if self.last_preview != Some(preview.step) {
                        self.last_preview = Some(preview.step);
                        self.push(
                            "preview",
                            json!({
                                "id": job.id,
                                "step": preview.step,
                                "total": total,
                                "png": base64::engine::general_purpose::STANDARD.encode(&preview.png),
                            }),
                        );
                    }
                }
            }
            JobStatus::Succeeded(output) => {
                self.ended = true;
                let result = result_json(&self.app, &job, output, &self.base);
                self.push("done", result);
            }
            JobStatus::Failed(message) => {
                self.ended = true;
                self.push(
                    "failed",
                    json!({"id": job.id, "error": {"message": message}}),
                );
            }
            JobStatus::Cancelled { step } => {
                self.ended = true;
                self.push("cancelled", json!({"id": job.id, "step": step}));
            }
        }
    }

    fn push(&mut self, name: &str, data: Value) {
        self.pending
            .push_back(Event::default().event(name).data(data.to_string()));
    }
}

/// `http://<Host>` as the client addressed us, for image URLs; empty (so
/// URLs are relative) when the header is missing or odd.
fn base_url(headers: &HeaderMap) -> String {
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
        })
        .map_or_else(String::new, |h| format!("http://{h}"))
}

/// The OpenAI-shaped answer: `{created, data: [{b64_json | url, …}]}`,
/// with the settings and timings.
fn result_json(app: &App, job: &Job, output: &JobOutput, base: &str) -> Value {
    let spec = &job.spec;
    let data: Vec<Value> = output
        .images
        .iter()
        .map(|image| {
            let mut item = json!({
                "seed": spec.seed,
                "index": image.index,
                "class": image.class,
                "class_name": app.model.class_name(image.class),
            });
            match spec.response_format {
                ResponseFormat::B64Json => {
                    item["b64_json"] = base64::engine::general_purpose::STANDARD
                        .encode(&image.png)
                        .into()
                }
                ResponseFormat::Url => {
                    item["url"] =
                        format!("{base}/v1/jobs/{}/images/{}.png", job.id, image.index).into()
                }
            }
            item
        })
        .collect();
    json!({
        "id": job.id,
        "created": job.created,
        "data": data,
        "settings": {
            "class": spec.class,
            "n": spec.n,
            "seed": spec.seed,
            "steps": spec.steps,
            "sampler": spec.sampler.name(),
            "guidance_scale": spec.guidance_scale,
        },
        "timing": {
            "wait_seconds": output.wait_seconds,
            "run_seconds": output.run_seconds,
            "batch_images": output.batch_images,
        },
    })
}

fn status_json(app: &App, job: &Job, state: &JobState, base: &str) -> Value {
    let mut body = json!({
        "id": job.id,
        "created": job.created,
        "status": state.status.name(),
    });
    match &state.status {
        JobStatus::Queued { position } => body["position"] = json!(position),
        JobStatus::Running {
            step,
            total,
            eta_seconds,
            ..
        } => {
            body["step"] = json!(step);
            body["total"] = json!(total);
            body["eta_seconds"] = json!(eta_seconds);
        }
        JobStatus::Succeeded(output) => body["result"] = result_json(app, job, output, base),
        JobStatus::Failed(message) => body["error"] = json!({"message": message}),
        JobStatus::Cancelled { step } => body["step"] = json!(step),
    }
    body
}
