//! The LUKS command document (fix-ec2-instance-store-luks): the script embedded in
//! template.yaml is scripts/ec2-instance-store-luks.sh verbatim, every `{{ Parameter }}` it uses
//! is declared with a pattern that keeps quotes and shell metacharacters out, and the rendered
//! script passes `bash -n` and shellcheck.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

fn script_file() -> String {
    std::fs::read_to_string(root().join("scripts/ec2-instance-store-luks.sh")).expect("scripts/ec2-instance-store-luks.sh")
}

/// The lines of the `EC2InstanceStoreLuksDocument` resource in template.yaml.
fn document_lines() -> Vec<String> {
    let template = std::fs::read_to_string(root().join("template.yaml")).expect("template.yaml");
    let mut lines = template.lines().skip_while(|l| *l != "  EC2InstanceStoreLuksDocument:");
    let mut doc = vec![lines.next().expect("template.yaml has an EC2InstanceStoreLuksDocument resource").to_string()];
    doc.extend(lines.take_while(|l| l.is_empty() || l.starts_with("   ")).map(str::to_string));
    doc
}

/// The block scalar under `runCommand: - |`, de-indented.
fn embedded_script() -> String {
    let doc = document_lines();
    let start = doc.iter().position(|l| l.trim() == "runCommand:").expect("runCommand") + 1;
    assert_eq!(doc[start].trim(), "- |", "runCommand is one literal block");
    let body = &doc[start + 1..];
    let indent = body[0].len() - body[0].trim_start().len();
    let mut out = String::new();
    for line in body {
        if !line.is_empty() && line.len() - line.trim_start().len() < indent {
            break;
        }
        out.push_str(line.get(indent..).unwrap_or(""));
        out.push('\n');
    }
    out.trim_end_matches('\n').to_string() + "\n"
}

/// (name, allowedPattern or allowedValues, default) of each document parameter.
fn parameters() -> Vec<(String, String, Option<String>)> {
    let doc = document_lines();
    let start = doc.iter().position(|l| l.trim() == "parameters:").expect("parameters") + 1;
    let mut out: Vec<(String, String, Option<String>)> = Vec::new();
    for line in &doc[start..] {
        let indent = line.len() - line.trim_start().len();
        if indent <= 8 && !line.trim().is_empty() {
            break;
        }
        let text = line.trim();
        if indent == 10 && text.ends_with(':') {
            out.push((text.trim_end_matches(':').to_string(), String::new(), None));
        } else if let Some(p) = out.last_mut() {
            if let Some(v) = text.strip_prefix("allowedPattern: ") {
                p.1 = v.trim_matches('"').replace("\\\\", "\\");
            } else if let Some(v) = text.strip_prefix("allowedValues: ") {
                p.1 = v.to_string();
            } else if let Some(v) = text.strip_prefix("default: ") {
                p.2 = Some(v.trim_matches('"').to_string());
            }
        }
    }
    out
}

fn placeholders(script: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = script;
    while let Some(i) = rest.find("{{") {
        let end = rest[i..].find("}}").expect("closing }}") + i;
        names.push(rest[i + 2..end].trim().to_string());
        rest = &rest[end + 2..];
    }
    names
}

#[test]
fn the_template_embeds_the_script_file_verbatim() {
    assert_eq!(embedded_script(), script_file(), "template.yaml must embed scripts/ec2-instance-store-luks.sh unchanged");
}

#[test]
fn every_parameter_used_is_declared_with_a_safe_pattern_and_assigned_in_single_quotes() {
    let script = script_file();
    let declared = parameters();
    let code: String = script.lines().filter(|l| !l.trim_start().starts_with('#')).collect::<Vec<_>>().join("\n");
    let used = placeholders(&code);
    assert!(used.len() >= 6, "{used:?}");
    for name in &used {
        let (_, pattern, _) = declared.iter().find(|(n, _, _)| n == name).unwrap_or_else(|| panic!("{{{{ {name} }}}} is not a parameter"));
        assert!(!pattern.is_empty(), "{name} has no allowedPattern/allowedValues");
        if let Some(list) = pattern.strip_prefix('[') {
            for value in list.trim_end_matches(']').split(',') {
                let value = value.trim().trim_matches('"');
                assert!(value.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)), "{name}: {value}");
            }
        } else {
            let re = regex::Regex::new(pattern).unwrap_or_else(|e| panic!("{name}: {pattern}: {e}"));
            for hostile in ["x'; reboot #", "$(reboot)", "`reboot`", "a b", "/dev/x;reboot", "/data\nreboot", "x\"y", ""] {
                assert!(!re.is_match(hostile), "{name}'s pattern {pattern} lets {hostile:?} through");
            }
            if name == "Device" || name == "MountPoint" {
                for traversal in ["/dev/../etc", "/mnt/./x", "/"] {
                    assert!(!re.is_match(traversal), "{name}'s pattern {pattern} lets {traversal:?} through");
                }
            }
        }
        let assignments: Vec<&str> = code.lines().filter(|l| l.contains(&format!("{{{{ {name} }}}}"))).collect();
        assert_eq!(assignments.len(), 1, "{name} is substituted once: {assignments:?}");
        let line = assignments[0];
        assert!(line.ends_with(&format!("='{{{{ {name} }}}}'")), "{name} is assigned inside single quotes: {line}");
    }
    for (name, _, _) in &declared {
        assert!(used.contains(name), "parameter {name} is declared but unused");
    }
}

/// Sample values as an operator would pass them (defaults where there is one).
fn rendered() -> String {
    let mut script = script_file();
    for (name, _, default) in parameters() {
        let value = match name.as_str() {
            "Device" => "/dev/nvme1n1".to_string(),
            "KmsKeyId" => "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab".to_string(),
            _ => default.unwrap_or_else(|| panic!("{name} needs a sample value")),
        };
        script = script.replace(&format!("{{{{ {name} }}}}"), &value);
    }
    script
}

fn write_rendered() -> PathBuf {
    let dir = std::env::var_os("CARGO_TARGET_TMPDIR").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    let path = dir.join(format!("ec2-instance-store-luks-rendered-{}.sh", std::process::id()));
    std::fs::write(&path, rendered()).expect("write the rendered script");
    path
}

#[test]
fn rendered_script_parses_with_bash() {
    let path = write_rendered();
    let out = Command::new("bash").arg("-n").arg(&path).output().expect("bash");
    assert!(out.status.success(), "bash -n: {}", String::from_utf8_lossy(&out.stderr));
}

/// shellcheck comes from the Debian package; it is installed here if missing. If that is not
/// possible the test fails and says why: a lint that silently did not run proves nothing.
fn shellcheck() -> PathBuf {
    let found = |p: &str| Command::new(p).arg("--version").output().is_ok_and(|o| o.status.success());
    if found("shellcheck") {
        return PathBuf::from("shellcheck");
    }
    let install = Command::new("apt-get").args(["install", "-y", "-qq", "shellcheck"]).env("DEBIAN_FRONTEND", "noninteractive").output();
    let retry = match install {
        Ok(o) if o.status.success() => None,
        _ => {
            let _ = Command::new("apt-get").args(["update", "-qq"]).output();
            Command::new("apt-get").args(["install", "-y", "-qq", "shellcheck"]).env("DEBIAN_FRONTEND", "noninteractive").output().err()
        }
    };
    assert!(
        found("shellcheck"),
        "shellcheck is not installed and could not be installed with `apt-get install shellcheck` ({}); \
         install the Debian package shellcheck to run this check",
        retry.map(|e| e.to_string()).unwrap_or_else(|| "apt-get ran but shellcheck is still missing".into())
    );
    PathBuf::from("shellcheck")
}

#[test]
fn rendered_script_passes_shellcheck() {
    let path = write_rendered();
    let out = Command::new(shellcheck()).args(["--shell=bash", "--severity=style"]).arg(&path).output().expect("shellcheck");
    assert!(out.status.success(), "shellcheck findings:\n{}", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn refuses_to_destroy_data_without_force() {
    let script = script_file();
    for guard in ["is mounted at", "holds data", "already holds a key", "Force=true ERASES it"] {
        assert!(script.contains(guard), "missing guard: {guard}");
    }
    // The wrapped key is stored before the device is formatted.
    let code: String = script.lines().filter(|l| !l.trim_start().starts_with('#')).collect::<Vec<_>>().join("\n");
    let put = code.find("aws ssm put-parameter").unwrap();
    let format = code.find("cryptsetup luksFormat").unwrap();
    assert!(put < format, "the key must be stored before luksFormat");
    assert!(script.contains("mktemp -p /dev/shm"), "the plaintext key only lives in RAM");
}
