//! Schemas: what attributes and blocks a resource or the provider block has, described for users.

use std::collections::BTreeMap;

use super::value::{Type, Value};

/// A versioned schema; the version is the state schema version used by UpgradeResourceState.
#[derive(Debug, Clone, PartialEq)]
pub struct Schema {
    pub version: i64,
    pub block: Block,
}

/// A configuration block: attributes, nested blocks and a Markdown description.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Block {
    pub description: String,
    pub attributes: Vec<Attribute>,
    pub blocks: Vec<NestedBlock>,
    pub deprecated: bool,
}

/// One attribute and how it may be set.
#[derive(Debug, Clone, PartialEq)]
pub struct Attribute {
    pub name: String,
    pub ty: Type,
    pub description: String,
    pub required: bool,
    pub optional: bool,
    pub computed: bool,
    pub sensitive: bool,
    /// Never stored in state or plan (protocol 5.8, Terraform 1.11+).
    pub write_only: bool,
    /// A change plans a replacement rather than an update.
    pub force_new: bool,
    pub deprecated: bool,
    /// The value planned when the configuration leaves the attribute null (optional+computed).
    pub default: Option<Value>,
}

/// How a nested block repeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nesting {
    Single,
    List,
    Set,
    Map,
    Group,
}

/// A nested block type (`timeouts { ... }`, `condition { ... }`).
#[derive(Debug, Clone, PartialEq)]
pub struct NestedBlock {
    pub type_name: String,
    pub block: Block,
    pub nesting: Nesting,
    pub min_items: i64,
    pub max_items: i64,
    /// A change plans a replacement rather than an update.
    pub force_new: bool,
}

impl Schema {
    pub fn new(version: i64, block: Block) -> Self {
        Self { version, block }
    }

    /// The object type a value of this schema has.
    pub fn value_type(&self) -> Type {
        self.block.value_type()
    }
}

impl Block {
    pub fn new(description: impl Into<String>) -> Self {
        Self {
            description: description.into(),
            ..Self::default()
        }
    }

    pub fn attribute(mut self, attribute: Attribute) -> Self {
        self.attributes.push(attribute);
        self
    }

    /// Adds several attributes, in order.
    pub fn attributes(mut self, attributes: impl IntoIterator<Item = Attribute>) -> Self {
        self.attributes.extend(attributes);
        self
    }

    pub fn block(mut self, block: NestedBlock) -> Self {
        self.blocks.push(block);
        self
    }

    pub fn find_attribute(&self, name: &str) -> Option<&Attribute> {
        self.attributes.iter().find(|a| a.name == name)
    }

    pub fn find_block(&self, name: &str) -> Option<&NestedBlock> {
        self.blocks.iter().find(|b| b.type_name == name)
    }

    /// The object type of this block's values: one entry per attribute and per nested block type.
    pub fn value_type(&self) -> Type {
        let mut attrs: BTreeMap<String, Type> = self
            .attributes
            .iter()
            .map(|a| (a.name.clone(), a.ty.clone()))
            .collect();
        for nested in &self.blocks {
            let inner = nested.block.value_type();
            let ty = match nested.nesting {
                Nesting::Single | Nesting::Group => inner,
                Nesting::List => Type::list(inner),
                Nesting::Set => Type::set(inner),
                Nesting::Map => Type::map(inner),
            };
            attrs.insert(nested.type_name.clone(), ty);
        }
        Type::Object(attrs)
    }

    /// An object of this block with every attribute null and every repeated block empty.
    pub fn empty_value(&self) -> Value {
        let mut obj = BTreeMap::new();
        for a in &self.attributes {
            obj.insert(a.name.clone(), Value::Null);
        }
        for b in &self.blocks {
            let v = match b.nesting {
                Nesting::Single => Value::Null,
                Nesting::Group => b.block.empty_value(),
                Nesting::List => Value::List(vec![]),
                Nesting::Set => Value::Set(vec![]),
                Nesting::Map => Value::Map(BTreeMap::new()),
            };
            obj.insert(b.type_name.clone(), v);
        }
        Value::Object(obj)
    }
}

impl Attribute {
    /// A new attribute; choose exactly one of required/optional/computed (or optional+computed).
    pub fn new(name: &str, ty: Type) -> Self {
        Self {
            name: name.to_string(),
            ty,
            description: String::new(),
            required: false,
            optional: false,
            computed: false,
            sensitive: false,
            write_only: false,
            force_new: false,
            deprecated: false,
            default: None,
        }
    }

    pub fn string(name: &str) -> Self {
        Self::new(name, Type::String)
    }

    pub fn bool(name: &str) -> Self {
        Self::new(name, Type::Bool)
    }

    pub fn number(name: &str) -> Self {
        Self::new(name, Type::Number)
    }

    pub fn string_set(name: &str) -> Self {
        Self::new(name, Type::set(Type::String))
    }

    pub fn string_list(name: &str) -> Self {
        Self::new(name, Type::list(Type::String))
    }

    pub fn description(mut self, text: impl Into<String>) -> Self {
        self.description = text.into();
        self
    }

    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }

    pub fn optional(mut self) -> Self {
        self.optional = true;
        self
    }

    pub fn computed(mut self) -> Self {
        self.computed = true;
        self
    }

    pub fn sensitive(mut self) -> Self {
        self.sensitive = true;
        self
    }

    pub fn write_only(mut self) -> Self {
        self.write_only = true;
        self
    }

    pub fn force_new(mut self) -> Self {
        self.force_new = true;
        self
    }

    /// The value used when the configuration leaves it null; the attribute must be computed.
    pub fn default(mut self, value: impl Into<Value>) -> Self {
        self.default = Some(value.into());
        self
    }
}

impl NestedBlock {
    pub fn new(type_name: &str, nesting: Nesting, block: Block) -> Self {
        Self {
            type_name: type_name.to_string(),
            block,
            nesting,
            min_items: 0,
            max_items: 0,
            force_new: false,
        }
    }

    /// A block that may appear at most once.
    pub fn single(type_name: &str, block: Block) -> Self {
        Self::new(type_name, Nesting::Single, block)
    }

    /// A change of the block's content plans a replacement.
    pub fn force_new(mut self) -> Self {
        self.force_new = true;
        self
    }
}

pub use super::timeouts::timeouts_block;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_type_covers_attributes_and_blocks() {
        let block = Block::new("r")
            .attribute(Attribute::string("name").required())
            .block(NestedBlock::new(
                "rule",
                Nesting::List,
                Block::new("x").attribute(Attribute::bool("on").optional()),
            ))
            .block(timeouts_block(true, false, true));
        let Type::Object(attrs) = block.value_type() else {
            panic!("not an object")
        };
        assert_eq!(attrs.get("name"), Some(&Type::String));
        assert!(matches!(attrs.get("rule"), Some(Type::List(_))));
        let Some(Type::Object(t)) = attrs.get("timeouts") else {
            panic!("timeouts not an object")
        };
        assert!(t.contains_key("create") && t.contains_key("delete") && !t.contains_key("update"));
        let empty = block.empty_value();
        assert_eq!(empty.get("rule"), &Value::List(vec![]));
        assert!(empty.get("timeouts").is_null());
    }
}
