//! A generation request as the API receives it (JSON), checked field by
//! field into a [`GenerationSpec`] the worker can run, and the API's errors.
//!
//! Every refusal names the field and says what was expected, so a client can
//! fix its request without reading the server's code.

use super::model::ModelFacts;
use crate::sample::{resolve_classes, SamplerChoice};
use serde_json::{Map, Value};

/// How a finished job hands back its images.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseFormat {
    /// Each PNG inline, base64-encoded (the OpenAI API's default).
    B64Json,
    /// Each PNG by URL, `/v1/jobs/{id}/images/{k}.png`.
    Url,
}

/// A checked request: everything the worker needs to run it.
#[derive(Clone, Debug, PartialEq)]
pub struct GenerationSpec {
    pub class: u32,
    /// Images; image k's noise is keyed by (seed, k), as `dit sample`'s.
    pub n: usize,
    pub seed: u64,
    /// Sampling steps, as `dit sample --steps N`: respaced steps of a
    /// diffusion, grid points of a transport sampler.
    pub steps: usize,
    pub sampler: SamplerChoice,
    pub guidance_scale: f64,
    pub response_format: ResponseFormat,
}

impl GenerationSpec {
    /// Requests that may share one forward pass: the same respacing, sampler
    /// and guidance, so every step applies to all their rows alike.
    pub fn batches_with(&self, other: &GenerationSpec) -> bool {
        self.steps == other.steps
            && self.sampler == other.sampler
            && self.guidance_scale.to_bits() == other.guidance_scale.to_bits()
    }
}

/// What a request may ask for at most.
#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    /// Images per request.
    pub max_n: usize,
    /// Sampling steps per request (also at most the model's timesteps).
    pub max_steps: usize,
    /// Request body size in bytes.
    pub max_body_bytes: usize,
    /// Largest |guidance_scale|.
    pub max_guidance: f64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_n: 8,
            max_steps: 1000,
            max_body_bytes: 16 * 1024,
            max_guidance: 100.0,
        }
    }
}

/// What a request gets for the fields it leaves out.
#[derive(Clone, Debug, PartialEq)]
pub struct Defaults {
    pub n: usize,
    pub steps: usize,
    /// A sampler name of the model's family (`dit sample --sampler`'s).
    pub sampler: &'static str,
    /// 4 (the official sample.py's) for models with a null class, else 1.
    pub guidance_scale: f64,
}

/// The fields a generation request may have. `model` and `size` are accepted
/// for OpenAI clients, which always send them.
const FIELDS: [&str; 9] = [
    "prompt",
    "n",
    "seed",
    "steps",
    "guidance_scale",
    "sampler",
    "response_format",
    "model",
    "size",
];

/// An API refusal: HTTP status, message, and the request field at fault.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
    pub param: Option<String>,
    /// Seconds, for 429.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            param: None,
            retry_after: None,
        }
    }

    /// 400 about one field: "field 'n': ...".
    pub fn field(param: &str, reason: impl std::fmt::Display) -> Self {
        Self {
            status: 400,
            message: format!("field '{param}': {reason}"),
            param: Some(param.to_string()),
            retry_after: None,
        }
    }

    /// The OpenAI-style error type for the status.
    pub fn kind(&self) -> &'static str {
        match self.status {
            401 => "authentication_error",
            404 => "not_found_error",
            429 => "rate_limit_error",
            500..=599 => "server_error",
            _ => "invalid_request_error",
        }
    }
}

/// Parses and checks a request body against the model and the limits.
pub fn parse_generation(
    body: &[u8],
    model: &ModelFacts,
    limits: &Limits,
    defaults: &Defaults,
) -> Result<GenerationSpec, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::new(400, format!("the request body is not valid JSON: {e}")))?;
    let Value::Object(fields) = value else {
        return Err(ApiError::new(
            400,
            "the request body must be a JSON object such as {\"prompt\": \"0\"}",
        ));
    };
    if let Some(unknown) = fields.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(ApiError::field(
            unknown,
            format!("unknown field; known fields are {}", FIELDS.join(", ")),
        ));
    }
    let class = parse_prompt(&fields, model)?;
    let n = match fields.get("n") {
        None | Some(Value::Null) => defaults.n,
        Some(v) => bounded_integer(v, "n", 1, limits.max_n as u64)? as usize,
    };
    let seed = match fields.get("seed") {
        None | Some(Value::Null) => rand::random::<u32>() as u64,
        Some(v) => v.as_u64().ok_or_else(|| {
            ApiError::field(
                "seed",
                format!("expected an integer 0 ≤ seed < 2^64, got {v}"),
            )
        })?,
    };
    let max_steps = limits.max_steps.min(model.max_steps);
    let steps = match fields.get("steps") {
        None | Some(Value::Null) => defaults.steps.min(max_steps),
        Some(v) => bounded_integer(v, "steps", 2, max_steps as u64)? as usize,
    };
    // The samplers of the model's family, `dit sample`'s names, each with
    // its defaults (DDIM's η = 0).
    let sampler = match fields.get("sampler") {
        None | Some(Value::Null) => defaults.sampler,
        Some(v) => v
            .as_str()
            .filter(|name| model.samplers.contains(name))
            .ok_or_else(|| {
                let names: Vec<String> = model.samplers.iter().map(|n| format!("{n:?}")).collect();
                ApiError::field(
                    "sampler",
                    format!(
                        "expected one of {} (a {} model's samplers), got {v}",
                        names.join(", "),
                        model.family
                    ),
                )
            })?,
    };
    let sampler = SamplerChoice::from_name(sampler, steps).expect("a known sampler name");
    let guidance_scale = match fields.get("guidance_scale") {
        None | Some(Value::Null) => defaults.guidance_scale,
        Some(v) => {
            let g = v.as_f64().filter(|g| g.is_finite()).ok_or_else(|| {
                ApiError::field(
                    "guidance_scale",
                    format!("expected a finite number, got {v}"),
                )
            })?;
            if g.abs() > limits.max_guidance {
                return Err(ApiError::field(
                    "guidance_scale",
                    format!("{g} is beyond the limit of ±{}", limits.max_guidance),
                ));
            }
            g
        }
    };
    if guidance_scale != 1.0 && model.config.null_class().is_none() {
        return Err(ApiError::field(
            "guidance_scale",
            "this model was trained without class dropout (it has no null class), so it \
             cannot be guided; use 1",
        ));
    }
    let response_format = match fields.get("response_format") {
        None | Some(Value::Null) => ResponseFormat::B64Json,
        Some(v) => match v.as_str() {
            Some("b64_json") => ResponseFormat::B64Json,
            Some("url") => ResponseFormat::Url,
            _ => {
                return Err(ApiError::field(
                    "response_format",
                    format!("expected \"b64_json\" or \"url\", got {v}"),
                ))
            }
        },
    };
    if let Some(v) = fields
        .get("model")
        .filter(|v| !v.is_null() && !v.is_string())
    {
        return Err(ApiError::field(
            "model",
            format!("expected a string, got {v}"),
        ));
    }
    if let Some(v) = fields.get("size").filter(|v| !v.is_null()) {
        let size = model.image_size;
        let ours = format!("{size}x{size}");
        if v.as_str() != Some(ours.as_str()) {
            return Err(ApiError::field(
                "size",
                format!("this model makes {ours} images only, got {v}"),
            ));
        }
    }
    Ok(GenerationSpec {
        class,
        n,
        seed,
        steps,
        sampler,
        guidance_scale,
        response_format,
    })
}

/// The class: an id (number or digits) or a name, resolved as `dit sample
/// --class` resolves it (unknown names get the closest names as suggestions).
fn parse_prompt(fields: &Map<String, Value>, model: &ModelFacts) -> Result<u32, ApiError> {
    let text = match fields.get("prompt") {
        None | Some(Value::Null) => {
            return Err(ApiError::field(
                "prompt",
                "missing; give a class name or id, e.g. \"prompt\": \"0\"",
            ))
        }
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(v) => {
            return Err(ApiError::field(
                "prompt",
                format!("expected a class name or id, got {v}"),
            ))
        }
    };
    if text.trim().is_empty() {
        return Err(ApiError::field("prompt", "empty; give a class name or id"));
    }
    let num_classes = model.config.num_classes;
    resolve_classes(&[text], model.class_names.as_ref(), num_classes)
        .map(|labels| labels[0])
        .map_err(|e| ApiError::field("prompt", e))
}

fn bounded_integer(v: &Value, name: &str, min: u64, max: u64) -> Result<u64, ApiError> {
    match v.as_u64() {
        Some(x) if (min..=max).contains(&x) => Ok(x),
        Some(x) => Err(ApiError::field(
            name,
            format!("{x} is out of range: allowed {min}..={max}"),
        )),
        None => Err(ApiError::field(
            name,
            format!("expected an integer in {min}..={max}, got {v}"),
        )),
    }
}

impl Defaults {
    /// 1 image, the family's fast sampler ([`crate::sample::DefaultSampling::fast`]:
    /// DPM-Solver++(2M) for a DiT, Heun's ODE for a SiT, 25 steps), and
    /// guidance 4 when the model can be guided; the papers' samplers are one
    /// request field away.
    pub fn for_model(model: &ModelFacts) -> Self {
        Self {
            n: 1,
            steps: model.fast_sampling.steps.min(model.max_steps),
            sampler: model.fast_sampling.sampler,
            guidance_scale: if model.config.null_class().is_some() {
                4.0
            } else {
                1.0
            },
        }
    }
}
