//! The committed template.yaml is what the specs and deploy files make: a change to a rule,
//! a fix, a deploy.yaml or a skeleton without regenerating fails here, naming the command.

use atrest_template::{REGENERATE, generate, workspace_root};

#[test]
fn template_yaml_is_generated_from_the_current_specs_and_deploy_files() {
    let root = workspace_root();
    let fresh = generate(&root).unwrap_or_else(|e| panic!("the template cannot be generated: {e}"));
    let committed = std::fs::read_to_string(root.join("template.yaml")).expect("template.yaml");
    if committed != fresh {
        let line = committed.lines().zip(fresh.lines()).position(|(a, b)| a != b).map_or_else(
            || format!("the files differ in length ({} vs {} lines)", committed.lines().count(), fresh.lines().count()),
            |i| {
                format!(
                    "first difference at line {}:\n  committed: {}\n  generated: {}",
                    i + 1,
                    committed.lines().nth(i).unwrap_or(""),
                    fresh.lines().nth(i).unwrap_or("")
                )
            },
        );
        panic!("template.yaml is stale: run {REGENERATE}\n{line}");
    }
}
