//! Renders docs/ in the Terraform Registry layout from the schemas' descriptions, the examples
//! under examples/ and the check catalogue, so the documentation cannot drift from the code.
//! `IAPRUN_UPDATE_DOCS=1 cargo test --test integration docs` rewrites docs/; the same test fails
//! when docs/ is stale.

use std::fmt::Write as _;
use std::path::Path;

use crate::framework::{Attribute, Block, MoveSources, Nesting, Provider, Schema, Type};
use crate::provider::IaprunProvider;
use crate::validation::exposure::AUDIT_RULES;
use crate::validation::CATALOGUE;

/// Every generated file: (path relative to the repository root, content).
pub fn render_all(repo: &Path) -> Result<Vec<(String, String)>, String> {
    render_provider(repo, &IaprunProvider::default())
}

/// Every generated file of `provider`'s documentation.
pub fn render_provider<P: Provider>(
    repo: &Path,
    provider: &P,
) -> Result<Vec<(String, String)>, String> {
    let mut files = vec![(
        "docs/index.md".to_string(),
        render_index(repo, &provider.schema())?,
    )];
    for resource in provider.resources() {
        let name = resource.type_name();
        let short = name.trim_start_matches("iaprun_");
        files.push((
            format!("docs/resources/{short}.md"),
            render_resource(repo, name, &resource.schema(), resource.move_sources())?,
        ));
    }
    for data_source in provider.data_sources() {
        let name = data_source.type_name();
        let short = name.trim_start_matches("iaprun_");
        files.push((
            format!("docs/data-sources/{short}.md"),
            render_data_source(repo, name, &data_source.schema())?,
        ));
    }
    files.push(("docs/checks.md".to_string(), render_checks()));
    Ok(files)
}

fn read_example(repo: &Path, relative: &str) -> Result<String, String> {
    std::fs::read_to_string(repo.join(relative))
        .map(|s| s.trim_end().to_string())
        .map_err(|e| format!("cannot read {relative}: {e}"))
}

fn first_sentence(text: &str) -> &str {
    text.split_once(". ")
        .map_or(text, |(first, _)| first)
        .trim_end_matches('.')
}

fn render_index(repo: &Path, schema: &Schema) -> Result<String, String> {
    let mut out = String::new();
    let desc = &schema.block.description;
    writeln!(
        out,
        "---\npage_title: \"iaprun Provider\"\ndescription: |-\n  {}.\n---\n",
        first_sentence(desc)
    )
    .ok();
    writeln!(out, "# iaprun Provider\n\n{desc}\n").ok();
    writeln!(
        out,
        "## Example Usage\n\n```terraform\n{}\n```\n",
        read_example(repo, "examples/provider/provider.tf")?
    )
    .ok();
    writeln!(out, "The limitation checks this provider runs at plan time are listed in [checks](checks.md).\n").ok();
    render_schema_sections(&mut out, &schema.block);
    Ok(out)
}

fn render_resource(
    repo: &Path,
    name: &str,
    schema: &Schema,
    moves: MoveSources,
) -> Result<String, String> {
    let mut out = String::new();
    let desc = &schema.block.description;
    writeln!(
        out,
        "---\npage_title: \"{name} Resource - iaprun\"\nsubcategory: \"\"\ndescription: |-\n  {}.\n---\n",
        first_sentence(desc)
    )
    .ok();
    writeln!(out, "# {name} (Resource)\n\n{desc}\n").ok();
    let example = read_example(repo, &format!("examples/resources/{name}/resource.tf"))?;
    writeln!(out, "## Example Usage\n\n```terraform\n{example}\n```\n").ok();
    render_schema_sections(&mut out, &schema.block);
    let import = read_example(repo, &format!("examples/resources/{name}/import.sh"))?;
    writeln!(
        out,
        "## Import\n\nImport is supported using the following syntax:\n\n```shell\n{import}\n```"
    )
    .ok();
    render_moves(&mut out, name, moves);
    Ok(out)
}

/// The `moved` blocks a resource type accepts from other types, when it accepts any.
fn render_moves(out: &mut String, name: &str, moves: MoveSources) {
    if moves.is_empty() {
        return;
    }
    let list = |items: &[&str]| {
        items
            .iter()
            .map(|i| format!("`{i}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    writeln!(
        out,
        "\n## Moving from other resource types\n\nWith Terraform 1.8 or later, a `moved` block can hand {name} an existing resource of {} of one of these types: {}. Nothing is destroyed or created: the grant stays in the IAM policy, and the plan shows the move and no change when the configuration matches the policy. Terraform 1.7 and earlier cannot move resources across types (1.0 has no `moved` blocks at all): remove the old resource from the state (`terraform state rm`) and import this one instead. See the guide [Migrating from the google provider's IAP IAM resources](../guides/migrating-from-google.md).",
        moves.providers.join(" or "),
        list(moves.types)
    )
    .ok();
}

fn render_data_source(repo: &Path, name: &str, schema: &Schema) -> Result<String, String> {
    let mut out = String::new();
    let desc = &schema.block.description;
    writeln!(
        out,
        "---\npage_title: \"{name} Data Source - iaprun\"\nsubcategory: \"\"\ndescription: |-\n  {}.\n---\n",
        first_sentence(desc)
    )
    .ok();
    writeln!(out, "# {name} (Data Source)\n\n{desc}\n").ok();
    let example = read_example(
        repo,
        &format!("examples/data-sources/{name}/data-source.tf"),
    )?;
    writeln!(out, "## Example Usage\n\n```terraform\n{example}\n```\n").ok();
    render_schema_sections(&mut out, &schema.block);
    Ok(out.trim_end().to_string() + "\n")
}

fn type_label(ty: &Type) -> String {
    match ty {
        Type::String => "String".into(),
        Type::Number => "Number".into(),
        Type::Bool => "Boolean".into(),
        Type::List(e) => format!("List of {}", type_label(e)),
        Type::Set(e) => format!("Set of {}", type_label(e)),
        Type::Map(e) => format!("Map of {}", type_label(e)),
        Type::Object(_) => "Object".into(),
        Type::Tuple(_) => "Tuple".into(),
    }
}

fn attribute_line(a: &Attribute) -> String {
    let mut tags = vec![type_label(&a.ty)];
    if a.sensitive {
        tags.push("Sensitive".into());
    }
    if a.write_only {
        tags.push("Write-only".into());
    }
    format!("- `{}` ({}) {}", a.name, tags.join(", "), a.description)
}

fn render_schema_sections(out: &mut String, block: &Block) {
    writeln!(out, "## Schema\n").ok();
    render_block_body(out, block, "");
}

fn render_block_body(out: &mut String, block: &Block, anchor_prefix: &str) {
    let required: Vec<&Attribute> = block.attributes.iter().filter(|a| a.required).collect();
    let optional: Vec<&Attribute> = block.attributes.iter().filter(|a| a.optional).collect();
    let read_only: Vec<&Attribute> = block
        .attributes
        .iter()
        .filter(|a| a.computed && !a.optional)
        .collect();
    for (title, attrs) in [("Required", &required), ("Optional", &optional)] {
        let blocks: Vec<_> = block
            .blocks
            .iter()
            .filter(|b| (b.min_items > 0) == (title == "Required"))
            .collect();
        if attrs.is_empty() && blocks.is_empty() {
            continue;
        }
        writeln!(out, "### {title}\n").ok();
        for a in attrs {
            writeln!(out, "{}", attribute_line(a)).ok();
        }
        for b in blocks {
            let anchor = format!("nestedblock--{anchor_prefix}{}", b.type_name);
            let nesting = match b.nesting {
                Nesting::Single | Nesting::Group => "Block",
                Nesting::List => "Block List",
                Nesting::Set => "Block Set",
                Nesting::Map => "Block Map",
            };
            writeln!(
                out,
                "- `{}` ({nesting}, {title}) {} (see [below for nested schema](#{anchor}))",
                b.type_name, b.block.description
            )
            .ok();
        }
        writeln!(out).ok();
    }
    if !read_only.is_empty() {
        writeln!(out, "### Read-Only\n").ok();
        for a in read_only {
            writeln!(out, "{}", attribute_line(a)).ok();
        }
        writeln!(out).ok();
    }
    for b in &block.blocks {
        let anchor = format!("nestedblock--{anchor_prefix}{}", b.type_name);
        writeln!(
            out,
            "<a id=\"{anchor}\"></a>\n### Nested Schema for `{}{}`\n",
            anchor_prefix.replace("--", "."),
            b.type_name
        )
        .ok();
        render_block_body(out, &b.block, &format!("{anchor_prefix}{}--", b.type_name));
    }
}

/// When the checks run, the one-run fix path and composing with the google provider (DESIGN.md §5).
const WHEN_CHECKS_RUN: &str = r#"## When checks run

- **At validate**: the checks that need only the configuration (`member_format`, `public_member`).
- **At plan**, on every plan of an access resource: `binding_conflict`, which compares it with the other access resources planned in the same run (`terraform validate` sees one resource at a time, so it cannot).
- **At plan**, against what exists:
  - a create, or a change the configuration asks for: an error finding fails the plan;
  - a resource that exists and whose configuration did not change (a refresh, the repair of drift, the plan Terraform runs before `terraform destroy`): findings are shown as warnings, so they never block a destroy or an unrelated change;
  - an object that does not exist yet, because the configuration creates it in the same run (a reference or `depends_on` orders the two): no finding. Values derived from it are `(known after apply)` and the plan shows the create.
- **At apply**, right before the first change (agent provisioning, the IAP flag, a grant, a binding): every live check runs again on a fresh read, and an error finding stops the apply with nothing changed. `target_missing` is reported only here: the object is still missing when the resource is about to change it. Access resources on one IAP resource share that read: once it finds the target, the rest of the apply takes it as there, and a policy write that then finds it gone reads it again and stops on `target_missing`.
- **A check that cannot run**: when a read it needs fails (permission denied, an API error, retries run out), a warning says which check did not run, Google's error, and what to do; the plan and the apply go on. `ignore_checks` with that check's name turns the warning off too. The reads: for `double_iap` on `iaprun_service_iap`, the serverless NEGs and backend services of the project (a disabled Compute Engine API is no failure: no load balancer can exist in that project); for `iap_api_disabled`, the state of iap.googleapis.com from Service Usage; for `no_organization`, the project from Resource Manager; for `public_invoker` and `missing_invoker`, the IAM policy of each Cloud Run service IAP protects (a refused read). A project that is not found is an error of the project read itself, before any check.
- **Destroy** never runs the checks. One case to know: a plain `terraform destroy` first plans the whole configuration, and a resource whose create was stopped by a finding (so it is not in the state) is planned as a create again, which stops on the same finding. `terraform destroy -refresh=false` skips that plan.

## Fixing a finding in the same run: `checks_after`

A finding that the same run fixes (turning Cloud CDN off, changing the ingress, granting the invoker in another resource) would fail the plan, because the plan sees the objects as they are now. Give the IAP resource the value that changes, in `checks_after`:

```hcl
resource "google_compute_backend_service" "app" {
  name       = "app-backend"
  enable_cdn = false # was true: cdn_enabled until this is applied
  # ...
}

resource "iaprun_backend_iap" "app" {
  backend_service = google_compute_backend_service.app.name
  checks_after    = [tostring(google_compute_backend_service.app.enable_cdn)]
}
```

While any value of `checks_after` is unknown at plan, or differs from the value recorded by the last apply (always so on create), the live checks do not run at plan. They run at apply, after the resources the values come from (the reference orders them), on a fresh read, before this resource changes anything. The path defers the checks; it never skips them: if the run does not fix the finding, the apply stops on it with nothing changed. Leave `checks_after` in place: once its value stops changing, plans check as usual. Any value works, for example the `id` of a `terraform_data` with `triggers_replace` on what the fix changes.

## Moving between direct and load-balancer IAP in one run

`double_iap` looks at what the run plans for the other IAP layer, not only at what is on now. Moving a service from direct IAP to a load balancer is one edit: remove its `iaprun_service_iap` (and the bindings on its `iap_resource_name`), add `iaprun_backend_iap` on the backend service in front of it (and the bindings on the new `iap_resource_name`), apply once. The reverse move is the same edit the other way. Terraform plans and applies the removal of one layer and the creation of the other in no set order, so:

- **At plan**, a layer that a resource planned in this run removes is no finding. For a resource that turns its own layer on (a create, a replacement, or IAP found off), a layer that is on now and that nothing planned so far keeps or removes is a warning ("This run may still remove that IAP"): Terraform may plan the removal after the new resource, and before Terraform 1.3 it never shows a provider a planned destroy, so the plan cannot tell yet. (Where both layers are on already, the double IAP stands and is reported as any other finding.) When one layer goes on in this run while a resource of the configuration keeps the other on (or turns it on too), the plan fails on `double_iap` whichever of the two Terraform plans first, even on the one that does not change.
- **At apply**, right before the first change, the new resource waits while the other layer is still on, or while this run is removing it (the old resource's destroy, grant release included): it reads again as soon as that destroy finishes, and every few seconds, up to its `create` timeout. The old layer goes off before the new one goes on, the new resource records the agent's invoker grant it adds, and the next plan is empty. If the layer stays on (nothing in the run removes it: direct IAP turned on outside Terraform, or a backend another configuration manages), the apply stops on `double_iap` when the timeout runs out, with nothing changed; set a shorter `timeouts { create = "..." }` to learn it sooner, or turn the other layer off first.

This works on every supported Terraform release; from 1.3 on, the plan usually sees the removal and shows no warning.

## Composing with `google_cloud_run_v2_service`

The google provider's `iap_enabled` on `google_cloud_run_v2_service` is Optional but not Computed, and its update sends the whole service. Left unset, it means "IAP off": every apply that changes the service for another reason (a new image) turns IAP off again, the next refresh of `iaprun_service_iap` shows the drift, and its apply turns IAP back on. IAP flips on alternate applies, and is off in between. The two must agree:

- set `iap_enabled = true` on the `google_cloud_run_v2_service` too (then `iaprun_service_iap` adds what the google provider does not: the agent's grant, the checks and the IAP resource name for bindings), or
- add `lifecycle { ignore_changes = [iap_enabled] }` to it, so the google provider keeps the value it reads.

Reference the service (`service = google_cloud_run_v2_service.app.name`) so Terraform creates it before `iaprun_service_iap`. For its part, `iaprun_service_iap` writes the service only when `iapEnabled` must change, with the service's etag (a concurrent change by the google provider makes it re-read, never overwrite), and it never claims the agent's grant when one exists already (for example from `google_cloud_run_service_iam_binding`): destroying it leaves that grant alone.

"#;

fn render_checks() -> String {
    let mut out = String::from(
        "---\npage_title: \"Plan-time checks - iaprun\"\ndescription: |-\n  The known limitations of IAP in front of Cloud Run that the provider checks at plan time.\n---\n\n",
    );
    out.push_str("# Plan-time checks\n\nEvery resource of this provider checks the setup it manages against the known limitations of Identity-Aware Proxy in front of Cloud Run, at `terraform plan` and again at apply, right before the first change (see [When checks run](#when-checks-run)). Each finding is a diagnostic on the attribute at fault. Turn a check off for one resource with `ignore_checks = [\"NAME\"]`; an unknown name is an error.\n\n");
    out.push_str(WHEN_CHECKS_RUN);
    out.push_str("## The checks\n\n");
    out.push_str("| name | severity | what it catches |\n|---|---|---|\n");
    for c in CATALOGUE {
        writeln!(
            out,
            "| [`{}`](#{}) | {} | {} |",
            c.name,
            c.name,
            c.severity.as_str(),
            c.catches
        )
        .ok();
    }
    out.push('\n');
    for c in CATALOGUE {
        writeln!(
            out,
            "## {}\n\n- Severity: {}\n- Catches: {}\n- What breaks: {}\n- Source: {}\n- Fix: {}\n- Ignore: `ignore_checks = [\"{}\"]`\n",
            c.name, c.severity.as_str(), c.catches, c.consequence, c.source, c.fix, c.name
        )
        .ok();
    }
    out.push_str("## Audit-only rules\n\nThe [`iaprun_audit`](data-sources/audit.md) data source applies the checks above to every Cloud Run service of a project, and two rules that need the whole project in view. No resource reports them, so `ignore_checks` does not take their names.\n\n");
    for c in AUDIT_RULES {
        writeln!(
            out,
            "### {}\n\n- Severity: {}\n- Catches: {}\n- What breaks: {}\n- Source: {}\n- Fix: {}\n",
            c.name,
            c.severity.as_str(),
            c.catches,
            c.consequence,
            c.source,
            c.fix
        )
        .ok();
    }
    out.trim_end().to_string() + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::testing::Fake;

    #[test]
    fn data_sources_render_under_docs_data_sources() {
        let repo = std::env::temp_dir().join(format!("iaprun-docs-{}", std::process::id()));
        for (path, text) in [
            ("examples/provider/provider.tf", "provider \"fake\" {}"),
            (
                "examples/resources/fake_thing/resource.tf",
                "resource \"fake_thing\" \"x\" {}",
            ),
            (
                "examples/resources/fake_thing/import.sh",
                "terraform import fake_thing.x x",
            ),
            (
                "examples/data-sources/fake_echo/data-source.tf",
                "data \"fake_echo\" \"x\" {\n  input = \"hi\"\n}",
            ),
        ] {
            let full = repo.join(path);
            std::fs::create_dir_all(full.parent().expect("parent")).expect("dir");
            std::fs::write(full, text).expect("example");
        }
        let files = render_provider(&repo, &Fake::default()).expect("renders");
        let _ = std::fs::remove_dir_all(&repo);
        let (_, page) = files
            .iter()
            .find(|(p, _)| p == "docs/data-sources/fake_echo.md")
            .expect("data source page");
        assert!(page.contains("# fake_echo (Data Source)"), "{page}");
        assert!(page.contains("input = \"hi\""), "{page}");
        assert!(
            page.contains("- `input` (String) The text to echo."),
            "{page}"
        );
        assert!(
            page.contains("### Read-Only\n\n- `output` (String)"),
            "{page}"
        );
        assert!(!page.contains("## Import"), "{page}");
        let (_, thing) = files
            .iter()
            .find(|(p, _)| p == "docs/resources/fake_thing.md")
            .expect("resource page");
        assert!(
            thing.contains("## Import") && !thing.contains("## Moving"),
            "a type that takes nothing over says nothing of moves: {thing}"
        );
    }
}
