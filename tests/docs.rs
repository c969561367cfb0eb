//! docs/ is generated from the schemas, the examples and the check catalogue; these tests fail when it
//! is stale. `IAPRUN_UPDATE_DOCS=1 cargo test --test integration docs` rewrites it.

use std::path::Path;

use iaprun::framework::{Block, Provider};
use iaprun::provider::IaprunProvider;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn docs_match_the_schemas_and_examples() {
    let files = iaprun::docs::render_all(repo()).expect("docs render");
    let update = std::env::var_os("IAPRUN_UPDATE_DOCS").is_some();
    let mut stale = Vec::new();
    for (path, content) in &files {
        let full = repo().join(path);
        if update {
            std::fs::create_dir_all(full.parent().expect("docs path has a parent"))
                .expect("create docs dir");
            std::fs::write(&full, content).expect("write docs");
        } else if std::fs::read_to_string(&full).ok().as_deref() != Some(content.as_str()) {
            stale.push(path.clone());
        }
    }
    assert!(
        stale.is_empty(),
        "docs are stale: {stale:?}. Regenerate with: IAPRUN_UPDATE_DOCS=1 cargo test --test integration docs"
    );
    let names: Vec<&str> = files.iter().map(|(p, _)| p.as_str()).collect();
    for expected in [
        "docs/index.md",
        "docs/resources/service_iap.md",
        "docs/resources/backend_iap.md",
        "docs/resources/access_binding.md",
        "docs/checks.md",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
}

fn undescribed(block: &Block, prefix: &str, out: &mut Vec<String>) {
    if block.description.trim().is_empty() {
        out.push(format!("{prefix}(block)"));
    }
    for a in &block.attributes {
        if a.description.trim().is_empty() {
            out.push(format!("{prefix}{}", a.name));
        }
    }
    for b in &block.blocks {
        undescribed(&b.block, &format!("{prefix}{}.", b.type_name), out);
    }
}

#[test]
fn every_attribute_has_a_description() {
    let provider = IaprunProvider::default();
    let mut missing = Vec::new();
    undescribed(&provider.schema().block, "provider.", &mut missing);
    for r in provider.resources() {
        undescribed(
            &r.schema().block,
            &format!("{}.", r.type_name()),
            &mut missing,
        );
    }
    assert!(
        missing.is_empty(),
        "attributes without a description: {missing:?}"
    );
}

#[test]
fn the_checks_page_lists_every_check_with_its_fix() {
    let page = std::fs::read_to_string(repo().join("docs/checks.md")).expect("docs/checks.md");
    for check in iaprun::validation::CATALOGUE {
        assert!(
            page.contains(&format!("## {}", check.name)),
            "{} has no section",
            check.name
        );
        assert!(page.contains(check.fix), "{} fix missing", check.name);
    }
}
