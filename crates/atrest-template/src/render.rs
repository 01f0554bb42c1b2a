//! `@@name@@` placeholders filled in a skeleton, and YAML scalars written so they read back as
//! the same string.

pub struct Fill {
    text: String,
    errors: Vec<String>,
}

impl Fill {
    pub fn new(skeleton: &str) -> Fill {
        Fill { text: skeleton.to_string(), errors: Vec::new() }
    }

    /// `@@name@@` inside a line: one line of text.
    pub fn text(mut self, name: &str, value: &str) -> Fill {
        let mark = format!("@@{name}@@");
        if !self.text.contains(&mark) {
            self.errors.push(format!("no placeholder {mark}"));
        }
        if value.contains('\n') {
            self.errors.push(format!("{mark} takes one line"));
        }
        self.text = self.text.replace(&mark, value);
        self
    }

    /// `@@name@@` alone on its line: lines, indented like the placeholder. An empty block
    /// removes the line.
    pub fn block(mut self, name: &str, value: &str) -> Fill {
        let mark = format!("@@{name}@@");
        let mut out = String::with_capacity(self.text.len() + value.len());
        let mut found = false;
        for line in self.text.split_inclusive('\n') {
            let trimmed = line.trim_end_matches('\n');
            if trimmed.trim_start() == mark {
                found = true;
                let indent = &trimmed[..trimmed.len() - mark.len()];
                for v in value.lines() {
                    if v.is_empty() {
                        out.push('\n');
                    } else {
                        out.push_str(indent);
                        out.push_str(v);
                        out.push('\n');
                    }
                }
            } else {
                out.push_str(line);
            }
        }
        if !found {
            self.errors.push(format!("no line holding only {mark}"));
        }
        self.text = out;
        self
    }

    pub fn finish(self, origin: &str) -> Result<String, String> {
        let mut errors = self.errors;
        if let Some(at) = self.text.find("@@") {
            let rest = &self.text[at..];
            errors.push(format!("unfilled placeholder {}", &rest[..rest.find('\n').unwrap_or(rest.len()).min(40)]));
        }
        if errors.is_empty() { Ok(self.text) } else { Err(format!("{origin}: {}", errors.join("; "))) }
    }
}

/// `s` as a YAML scalar: plain when YAML reads it back as the same string, else double-quoted
/// (a JSON string is a valid YAML double-quoted scalar).
pub fn yaml_str(s: &str) -> String {
    let plain_chars = s.chars().all(|c| c.is_ascii_alphanumeric() || " .,;()/<>=+_'-".contains(c));
    let first_ok = s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric() || c == '/' || c == '(');
    let reserved = ["true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"].contains(&s.to_ascii_lowercase().as_str());
    let numeric = s.parse::<f64>().is_ok();
    if plain_chars && first_ok && !reserved && !numeric && !s.ends_with(' ') { s.to_string() } else { serde_json_like(s) }
}

fn serde_json_like(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_read_back_as_the_same_string() {
        for s in [
            "AES256",
            "aws:kms",
            "",
            "false",
            "true",
            "none",
            "alias/aws/rds",
            "5",
            "a: b",
            "#x",
            "\"q\"",
            "back\\slash",
            "^$|^[a-z]$",
            "(Optional) Name, or <source>-encrypted.",
        ] {
            let back: serde_yaml::Value = serde_yaml::from_str(&format!("k: {}", yaml_str(s))).unwrap();
            assert_eq!(back["k"].as_str(), Some(s), "{s:?} written as {}", yaml_str(s));
        }
    }

    #[test]
    fn blocks_take_the_placeholder_indentation_and_empty_blocks_vanish() {
        let out = Fill::new("a:\n  @@b@@\nc: @@c@@\n  @@gone@@\n")
            .block("b", "x: 1\n\ny: 2")
            .text("c", "3")
            .block("gone", "")
            .finish("t")
            .unwrap();
        assert_eq!(out, "a:\n  x: 1\n\n  y: 2\nc: 3\n");
    }

    #[test]
    fn a_missing_or_unfilled_placeholder_is_an_error() {
        assert!(Fill::new("a: @@x@@\n").finish("t").unwrap_err().contains("@@x@@"));
        assert!(Fill::new("a: 1\n").text("x", "1").finish("t").unwrap_err().contains("no placeholder"));
    }
}
