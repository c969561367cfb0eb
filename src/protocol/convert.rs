//! Framework types to and from their tfplugin5 wire form: schemas, diagnostics, attribute paths and
//! capabilities.

use crate::framework::{
    self, AttributePath, Block, ClientCapabilities, Diagnostic, NestedBlock, Nesting, Schema,
    Severity, Step,
};

use super::proto::tfplugin5 as wire;
use wire::attribute_path::step::Selector;
use wire::schema::nested_block::NestingMode;

/// A schema in wire form; descriptions are Markdown.
pub fn schema(schema: &Schema) -> wire::Schema {
    wire::Schema {
        version: schema.version,
        block: Some(block(&schema.block, schema.version)),
    }
}

fn block(block: &Block, version: i64) -> wire::schema::Block {
    wire::schema::Block {
        version,
        attributes: block.attributes.iter().map(attribute).collect(),
        block_types: block.blocks.iter().map(nested_block).collect(),
        description: block.description.clone(),
        description_kind: wire::StringKind::Markdown.into(),
        deprecated: block.deprecated,
    }
}

fn attribute(attribute: &framework::Attribute) -> wire::schema::Attribute {
    wire::schema::Attribute {
        name: attribute.name.clone(),
        // Serialising a serde_json::Value cannot fail.
        r#type: serde_json::to_vec(&attribute.ty.to_json()).unwrap_or_default(),
        description: attribute.description.clone(),
        required: attribute.required,
        optional: attribute.optional,
        computed: attribute.computed,
        sensitive: attribute.sensitive,
        description_kind: wire::StringKind::Markdown.into(),
        deprecated: attribute.deprecated,
        // Clients before 5.8 never see the field: it is only on the wire when true.
        write_only: attribute.write_only,
    }
}

fn nested_block(nested: &NestedBlock) -> wire::schema::NestedBlock {
    let nesting = match nested.nesting {
        Nesting::Single => NestingMode::Single,
        Nesting::List => NestingMode::List,
        Nesting::Set => NestingMode::Set,
        Nesting::Map => NestingMode::Map,
        Nesting::Group => NestingMode::Group,
    };
    wire::schema::NestedBlock {
        type_name: nested.type_name.clone(),
        // Nested blocks carry no version of their own.
        block: Some(block(&nested.block, 0)),
        nesting: nesting.into(),
        min_items: nested.min_items,
        max_items: nested.max_items,
    }
}

/// A diagnostic in wire form; a root path is sent as no path (the whole block).
pub fn diagnostic(diagnostic: &Diagnostic) -> wire::Diagnostic {
    let severity = match diagnostic.severity {
        Severity::Error => wire::diagnostic::Severity::Error,
        Severity::Warning => wire::diagnostic::Severity::Warning,
    };
    wire::Diagnostic {
        severity: severity.into(),
        summary: diagnostic.summary.clone(),
        detail: diagnostic.detail.clone(),
        attribute: diagnostic
            .path
            .as_ref()
            .filter(|p| !p.is_root())
            .map(attribute_path),
    }
}

/// Every diagnostic in wire form.
pub fn diagnostics<'a>(all: impl IntoIterator<Item = &'a Diagnostic>) -> Vec<wire::Diagnostic> {
    all.into_iter().map(diagnostic).collect()
}

/// An attribute path in wire form.
pub fn attribute_path(path: &AttributePath) -> wire::AttributePath {
    wire::AttributePath {
        steps: path
            .steps
            .iter()
            .map(|step| wire::attribute_path::Step {
                selector: Some(match step {
                    Step::Attribute(name) => Selector::AttributeName(name.clone()),
                    Step::Key(key) => Selector::ElementKeyString(key.clone()),
                    Step::Index(index) => Selector::ElementKeyInt(*index),
                }),
            })
            .collect(),
    }
}

/// An attribute path from its wire form; steps without a selector are skipped.
#[cfg(test)]
pub fn attribute_path_from_wire(path: &wire::AttributePath) -> AttributePath {
    AttributePath {
        steps: path
            .steps
            .iter()
            .filter_map(|step| {
                Some(match step.selector.as_ref()? {
                    Selector::AttributeName(name) => Step::Attribute(name.clone()),
                    Selector::ElementKeyString(key) => Step::Key(key.clone()),
                    Selector::ElementKeyInt(index) => Step::Index(*index),
                })
            })
            .collect(),
    }
}

/// What this server opts into: destroy plans, schema caching by the client, and moves across
/// resource types (the engine answers for types that take none over).
pub fn server_capabilities() -> wire::ServerCapabilities {
    wire::ServerCapabilities {
        plan_destroy: true,
        get_provider_schema_optional: true,
        move_resource_state: true,
    }
}

/// What the client offers; an absent message (older clients) offers nothing.
pub fn client_capabilities(capabilities: Option<&wire::ClientCapabilities>) -> ClientCapabilities {
    capabilities.map_or_else(ClientCapabilities::default, |c| ClientCapabilities {
        deferral_allowed: c.deferral_allowed,
        write_only_attributes_allowed: c.write_only_attributes_allowed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::schema::timeouts_block;
    use crate::framework::{Attribute, Type};

    fn sample() -> Schema {
        Schema::new(
            2,
            Block::new("A **resource**.")
                .attribute(
                    Attribute::string_set("members")
                        .required()
                        .description("Who."),
                )
                .attribute(
                    Attribute::string("secret_wo")
                        .optional()
                        .write_only()
                        .sensitive(),
                )
                .block(timeouts_block(true, false, true))
                .block(NestedBlock {
                    min_items: 1,
                    max_items: 3,
                    ..NestedBlock::new("rule", Nesting::List, Block::new("A rule."))
                }),
        )
    }

    #[test]
    fn schemas_carry_types_flags_nesting_and_markdown() {
        let wire = schema(&sample());
        assert_eq!(wire.version, 2);
        let block = wire.block.expect("block");
        assert_eq!(block.version, 2);
        assert_eq!(block.description, "A **resource**.");
        assert_eq!(block.description_kind, wire::StringKind::Markdown as i32);

        let members = &block.attributes[0];
        assert_eq!(members.name, "members");
        assert_eq!(members.r#type, br#"["set","string"]"#.to_vec());
        assert!(members.required && !members.optional && !members.computed);
        assert!(
            !members.write_only,
            "write_only is only set when the attribute is"
        );
        assert_eq!(members.description_kind, wire::StringKind::Markdown as i32);

        let secret = &block.attributes[1];
        assert!(secret.write_only && secret.sensitive && secret.optional);

        let timeouts = &block.block_types[0];
        assert_eq!(timeouts.type_name, "timeouts");
        assert_eq!(timeouts.nesting, NestingMode::Single as i32);
        let rule = &block.block_types[1];
        assert_eq!(rule.nesting, NestingMode::List as i32);
        assert_eq!((rule.min_items, rule.max_items), (1, 3));
        assert_eq!(
            Type::from_json(&serde_json::from_slice(&members.r#type).expect("json")),
            Ok(Type::set(Type::String))
        );
    }

    #[test]
    fn diagnostics_keep_severity_and_path_steps() {
        let path = AttributePath::attr("rule")
            .then_index(2)
            .then_attr("tags")
            .then_key("env");
        let error = diagnostic(&Diagnostic::error("Bad", "Because.").at(path.clone()));
        assert_eq!(error.severity, wire::diagnostic::Severity::Error as i32);
        assert_eq!(
            (error.summary.as_str(), error.detail.as_str()),
            ("Bad", "Because.")
        );
        let steps = error.attribute.as_ref().expect("path").steps.clone();
        assert_eq!(
            steps.into_iter().map(|s| s.selector).collect::<Vec<_>>(),
            vec![
                Some(Selector::AttributeName("rule".into())),
                Some(Selector::ElementKeyInt(2)),
                Some(Selector::AttributeName("tags".into())),
                Some(Selector::ElementKeyString("env".into())),
            ]
        );
        assert_eq!(attribute_path_from_wire(&attribute_path(&path)), path);

        let warning = diagnostic(&Diagnostic::warning("Careful", ""));
        assert_eq!(warning.severity, wire::diagnostic::Severity::Warning as i32);
        assert!(warning.attribute.is_none());
        let root = diagnostic(&Diagnostic::error("x", "y").at(AttributePath::root()));
        assert!(
            root.attribute.is_none(),
            "a root path means the whole block"
        );
    }

    #[test]
    fn capabilities() {
        let server = server_capabilities();
        assert!(server.plan_destroy && server.get_provider_schema_optional);
        assert!(server.move_resource_state, "MoveResourceState is served");
        assert_eq!(client_capabilities(None), ClientCapabilities::default());
        let offered = wire::ClientCapabilities {
            deferral_allowed: false,
            write_only_attributes_allowed: true,
        };
        assert!(client_capabilities(Some(&offered)).write_only_attributes_allowed);
    }
}
