//! A crate's `deploy.yaml`: read as YAML for the values the generator looks at, and as text for
//! the parts it copies into the template (IAM policies, stack parameters, conditions), so their
//! comments and layout reach `template.yaml` as written.

use std::path::{Path, PathBuf};

use serde_yaml::Value;

pub struct Deploy {
    path: PathBuf,
    text: String,
    value: Value,
}

impl Deploy {
    pub fn load(crate_dir: &Path) -> Result<Deploy, String> {
        let path = crate_dir.join("deploy.yaml");
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        Deploy::parse(path, text)
    }

    pub fn parse(path: PathBuf, text: String) -> Result<Deploy, String> {
        let value: Value = serde_yaml::from_str(&text).map_err(|e| format!("{}: not YAML: {e}", path.display()))?;
        if !value.is_mapping() {
            return Err(format!("{}: not a YAML mapping", path.display()));
        }
        const KNOWN: &[&str] = &[
            "Condition",
            "Function",
            "ConfigRule",
            "Document",
            "Remediation",
            "Policies",
            "ParameterGroup",
            "Parameters",
            "Conditions",
            "Rules",
            "Resources",
            "Outputs",
        ];
        for key in value.as_mapping().into_iter().flat_map(|m| m.keys()) {
            let key = key.as_str().unwrap_or_default();
            if !KNOWN.contains(&key) {
                return Err(format!("{}: unknown section {key} (known: {})", path.display(), KNOWN.join(", ")));
            }
        }
        Ok(Deploy { path, text, value })
    }

    /// Where this came from, relative to the workspace (`crates/<crate>/deploy.yaml`).
    pub fn origin(&self) -> String {
        let crate_dir = self.path.parent().and_then(Path::file_name).map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        format!("crates/{crate_dir}/deploy.yaml")
    }

    pub fn error(&self, what: &str) -> String {
        format!("{}: {what}", self.origin())
    }

    fn at(&self, path: &[&str]) -> Option<&Value> {
        path.iter().try_fold(&self.value, |v, key| v.get(*key))
    }

    /// A scalar at `path`, as text.
    pub fn text(&self, path: &[&str]) -> Option<String> {
        match self.at(path)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    pub fn required_text(&self, path: &[&str]) -> Result<String, String> {
        self.text(path).ok_or_else(|| self.error(&format!("{} is missing or not text", path.join("."))))
    }

    /// The keys of the mapping at the top-level `section`.
    pub fn keys(&self, section: &str) -> Vec<String> {
        self.keys_at(&[section])
    }

    pub fn keys_at(&self, path: &[&str]) -> Vec<String> {
        self.at(path)
            .and_then(Value::as_mapping)
            .map(|m| m.keys().filter_map(|k| k.as_str().map(str::to_string)).collect())
            .unwrap_or_default()
    }

    /// The text under `path` (nested keys, two spaces per level), without its indentation and
    /// without trailing blank lines; comments inside it are kept.
    pub fn raw(&self, path: &[&str]) -> Option<String> {
        let lines: Vec<&str> = self.text.lines().collect();
        let (mut from, mut to) = (0, lines.len());
        for (depth, key) in path.iter().enumerate() {
            let head = format!("{}{key}:", " ".repeat(depth * 2));
            let at = (from..to).find(|&i| lines[i].strip_prefix(&head).is_some_and(|rest| rest.is_empty() || rest.starts_with(' ')))?;
            let rest = lines[at][head.len()..].trim();
            if !rest.is_empty() && !rest.starts_with('#') && !rest.starts_with('>') && !rest.starts_with('|') {
                return Some(rest.to_string());
            }
            // The body: every following line indented deeper than the key (blank lines and
            // comments included), up to the next line that is not.
            let indent = depth * 2;
            let mut end = at + 1;
            while end < to {
                let line = lines[end];
                let deeper = line.len() - line.trim_start().len() > indent;
                if !(line.trim().is_empty() || deeper || (line.trim_start().starts_with("- ") && indent == 0)) {
                    break;
                }
                end += 1;
            }
            from = at + 1;
            to = end;
        }
        let body: Vec<&str> = lines[from..to].to_vec();
        let body: Vec<&str> = {
            let mut b = body;
            while b.last().is_some_and(|l| l.trim().is_empty() || l.starts_with('#')) {
                b.pop();
            }
            b
        };
        let indent = body.iter().filter(|l| !l.trim().is_empty()).map(|l| l.len() - l.trim_start().len()).min().unwrap_or(0);
        Some(body.iter().map(|l| if l.len() >= indent { &l[indent..] } else { l.trim_start() }).collect::<Vec<_>>().join("\n"))
    }

    pub fn required_raw(&self, path: &[&str]) -> Result<String, String> {
        self.raw(path).ok_or_else(|| self.error(&format!("{} is missing", path.join("."))))
    }
}
