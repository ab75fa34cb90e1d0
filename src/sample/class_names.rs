//! Turning `--class` arguments (ids or names) into labels.
//!
//! ImageNet's 1000 classes are built in, each with the synonyms of the
//! standard class index ("tabby, tabby cat"); a checkpoint trained by
//! `dit train` brings its own class names, which then take precedence.

use crate::{bail, Result};

/// The ImageNet-1k classes in label order, one line per class, synonyms
/// separated by ", ".
const IMAGENET_CLASSES: &str = include_str!("imagenet_classes.txt");

/// How many suggestions an unknown name gets.
const SUGGESTIONS: usize = 5;

/// Class names in label order; each class may have several synonyms.
#[derive(Clone, Debug)]
pub struct ClassNames {
    synonyms: Vec<Vec<String>>,
}

/// Case, surrounding space, runs of spaces and underscores (folder names)
/// do not distinguish names.
fn normalize(name: &str) -> String {
    name.replace('_', " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

impl ClassNames {
    /// The 1000 ImageNet classes.
    pub fn imagenet() -> Self {
        let synonyms = IMAGENET_CLASSES
            .lines()
            .map(|line| line.split(", ").map(str::to_string).collect())
            .collect();
        Self { synonyms }
    }

    /// One name per class, e.g. a dataset's folder names.
    pub fn from_names(names: &[String]) -> Self {
        Self {
            synonyms: names.iter().map(|n| vec![n.clone()]).collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.synonyms.len()
    }

    pub fn is_empty(&self) -> bool {
        self.synonyms.is_empty()
    }

    /// The class's first (main) name.
    pub fn name(&self, label: u32) -> Option<&str> {
        self.synonyms.get(label as usize).map(|s| s[0].as_str())
    }

    /// Every synonym of a class.
    pub fn synonyms(&self, label: u32) -> &[String] {
        self.synonyms
            .get(label as usize)
            .map_or(&[], |s| s.as_slice())
    }

    /// A label from a name, compared case-insensitively against every
    /// synonym. An unknown name is an error listing the closest names.
    pub fn lookup(&self, name: &str) -> Result<u32> {
        let wanted = normalize(name);
        let matches: Vec<u32> = (0..self.len() as u32)
            .filter(|&c| self.synonyms(c).iter().any(|s| normalize(s) == wanted))
            .collect();
        match matches.as_slice() {
            [one] => Ok(*one),
            [] => bail!(
                "unknown class '{name}'; closest: {}",
                self.suggestions(&wanted).join("; ")
            ),
            many => {
                let listed: Vec<String> = many.iter().map(|&c| self.describe(c)).collect();
                bail!(
                    "class name '{name}' is ambiguous: {}; pass the id instead",
                    listed.join(" or ")
                )
            }
        }
    }

    fn describe(&self, label: u32) -> String {
        format!("{label} ({})", self.synonyms(label).join(", "))
    }

    /// The classes holding the synonyms nearest to `wanted` by edit distance.
    fn suggestions(&self, wanted: &str) -> Vec<String> {
        let mut scored: Vec<(usize, u32)> = (0..self.len() as u32)
            .map(|c| {
                let best = self
                    .synonyms(c)
                    .iter()
                    .map(|s| edit_distance(&normalize(s), wanted))
                    .min();
                (best.unwrap_or(usize::MAX), c)
            })
            .collect();
        scored.sort();
        scored
            .into_iter()
            .take(SUGGESTIONS)
            .map(|(_, c)| self.describe(c))
            .collect()
    }
}

/// Levenshtein distance over characters.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitute = diagonal + usize::from(ca != cb);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

/// `--class` arguments → labels. Plain numbers are ids; anything else is
/// looked up in `names` (when the model has none, only ids are accepted).
pub fn resolve_classes(
    args: &[String],
    names: Option<&ClassNames>,
    num_classes: usize,
) -> Result<Vec<u32>> {
    args.iter()
        .map(|arg| {
            let arg = arg.trim();
            if let Ok(id) = arg.parse::<u32>() {
                if id as usize >= num_classes {
                    bail!("class {id} out of range: the model has {num_classes} classes (0..{})", num_classes - 1);
                }
                return Ok(id);
            }
            match names {
                Some(names) => names.lookup(arg),
                None => bail!(
                    "class '{arg}': this model's {num_classes} classes have no names (pass ids 0..{})",
                    num_classes.saturating_sub(1)
                ),
            }
        })
        .collect()
}
