//! Generic planning, done once for every resource before its own `modify_plan`:
//! computed values unknown on create, replacement when a force-new attribute changes, stable
//! computed values kept from prior state, write-only attributes never planned.

use super::path::AttributePath;
use super::schema::{Block, Nesting, Schema};
use super::value::Value;

/// The generic plan for one resource instance.
#[derive(Debug, Clone, PartialEq)]
pub struct GenericPlan {
    pub planned_state: Value,
    pub requires_replace: Vec<AttributePath>,
}

/// Plans a change from `prior` towards `proposed` (Terraform's merge of config and prior state).
/// A null `proposed` is a destroy and plans null.
pub fn plan(schema: &Schema, prior: &Value, proposed: &Value, config: &Value) -> GenericPlan {
    if proposed.is_null() {
        return GenericPlan {
            planned_state: Value::Null,
            requires_replace: vec![],
        };
    }
    let mut requires_replace = Vec::new();
    if !prior.is_null() {
        for a in schema.block.attributes.iter().filter(|a| a.force_new) {
            let before = prior.get(&a.name);
            let after = proposed.get(&a.name);
            // A null config value for an optional+computed attribute keeps the prior value: no change.
            if before != after && !(a.computed && config.get(&a.name).is_null()) {
                requires_replace.push(AttributePath::attr(&a.name));
            }
        }
        for b in schema.block.blocks.iter().filter(|b| b.force_new) {
            let after = config.get(&b.type_name);
            if prior.get(&b.type_name) != after && after.is_wholly_known() {
                requires_replace.push(AttributePath::attr(&b.type_name));
            }
        }
    }
    let fresh_object = prior.is_null() || !requires_replace.is_empty();
    let planned_state = plan_block(&schema.block, proposed, config, fresh_object);
    GenericPlan {
        planned_state,
        requires_replace,
    }
}

fn plan_block(block: &Block, proposed: &Value, config: &Value, fresh_object: bool) -> Value {
    let mut planned = proposed.clone();
    for a in &block.attributes {
        if a.write_only {
            planned.set_attr(&a.name, Value::Null);
        } else if a.computed && config.get(&a.name).is_null() && fresh_object {
            // Only computed-only or unset optional+computed values: the provider learns them at apply.
            planned.set_attr(&a.name, Value::unknown());
        }
    }
    for b in &block.blocks {
        if b.nesting == Nesting::Single && config.get(&b.type_name).is_null() {
            // Terraform proposes the prior block for a single block removed from the
            // configuration, then refuses a plan that keeps it ("config wants absence").
            planned.set_attr(&b.type_name, Value::Null);
            continue;
        }
        if matches!(b.nesting, Nesting::Single | Nesting::Group) {
            let inner = proposed.get(&b.type_name);
            if !inner.is_null() && inner.is_known() {
                let nested = plan_block(&b.block, inner, config.get(&b.type_name), fresh_object);
                planned.set_attr(&b.type_name, nested);
            }
        }
    }
    planned
}

/// Plans each attribute's default where the configuration leaves it null.
pub fn apply_defaults(block: &Block, config: &Value, planned: &mut Value) {
    if !matches!(planned, Value::Object(_)) {
        return;
    }
    for a in &block.attributes {
        if let Some(default) = &a.default {
            if config.get(&a.name).is_null() {
                planned.set_attr(&a.name, default.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::schema::{timeouts_block, Attribute};

    fn schema() -> Schema {
        Schema::new(
            0,
            Block::new("r")
                .attribute(Attribute::string("id").computed())
                .attribute(Attribute::string("service").required().force_new())
                .attribute(
                    Attribute::string("location")
                        .optional()
                        .computed()
                        .force_new(),
                )
                .attribute(Attribute::bool("flag").optional())
                .attribute(Attribute::string("secret_wo").optional().write_only())
                .block(timeouts_block(true, true, true)),
        )
    }

    fn obj(id: Value, service: &str, location: Value, flag: bool) -> Value {
        Value::object([
            ("id", id),
            ("service", Value::from(service)),
            ("location", location),
            ("flag", Value::from(flag)),
            ("secret_wo", Value::Null),
            ("timeouts", Value::Null),
        ])
    }

    #[test]
    fn create_marks_unset_computed_attributes_unknown() {
        let config = obj(Value::Null, "s", Value::Null, true);
        let mut proposed = config.clone();
        proposed.set_attr("secret_wo", Value::from("hush"));
        let plan = plan(&schema(), &Value::Null, &proposed, &config);
        assert!(plan.planned_state.get("id").is_unknown());
        assert!(plan.planned_state.get("location").is_unknown());
        assert!(
            plan.planned_state.get("secret_wo").is_null(),
            "write-only values are never planned"
        );
        assert!(plan.requires_replace.is_empty());
    }

    #[test]
    fn update_keeps_computed_values_and_replaces_on_force_new_change() {
        let prior = obj(Value::from("x"), "s", Value::from("eu"), false);
        let config = obj(Value::Null, "s", Value::Null, true);
        let proposed = obj(Value::from("x"), "s", Value::from("eu"), true);
        let p = plan(&schema(), &prior, &proposed, &config);
        assert_eq!(p.planned_state.get_str("id"), Some("x"));
        assert!(p.requires_replace.is_empty());

        let config = obj(Value::Null, "t", Value::Null, false);
        let proposed = obj(Value::from("x"), "t", Value::from("eu"), false);
        let p = plan(&schema(), &prior, &proposed, &config);
        assert_eq!(p.requires_replace, vec![AttributePath::attr("service")]);
        assert!(
            p.planned_state.get("id").is_unknown(),
            "a replacement gets a new id"
        );
    }

    #[test]
    fn a_single_block_removed_from_the_config_is_planned_null() {
        let timeouts = Value::object([
            ("create", Value::from("1m")),
            ("update", Value::Null),
            ("delete", Value::Null),
        ]);
        let mut prior = obj(Value::from("x"), "s", Value::from("eu"), false);
        prior.set_attr("timeouts", timeouts.clone());
        let config = obj(Value::Null, "s", Value::Null, false);
        // What Terraform proposes: the prior block, although the configuration has none.
        let proposed = prior.clone();
        let p = plan(&schema(), &prior, &proposed, &config);
        assert!(p.planned_state.get("timeouts").is_null());

        let mut config = config;
        config.set_attr("timeouts", timeouts.clone());
        let p = plan(&schema(), &prior, &prior, &config);
        assert_eq!(p.planned_state.get("timeouts"), &timeouts);
    }

    #[test]
    fn destroy_plans_null() {
        let prior = obj(Value::from("x"), "s", Value::from("eu"), false);
        assert_eq!(
            plan(&schema(), &prior, &Value::Null, &Value::Null).planned_state,
            Value::Null
        );
    }
}
