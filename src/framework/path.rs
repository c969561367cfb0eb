//! Attribute paths: where in a resource object a diagnostic or a replacement applies.

use std::fmt;

/// One step into a value: an attribute (or nested block) name, a map key or a list index.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Step {
    Attribute(String),
    Key(String),
    Index(i64),
}

/// A path from the resource object to one of its parts, as Terraform reports it in diagnostics.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AttributePath {
    pub steps: Vec<Step>,
}

impl AttributePath {
    /// The empty path: the whole object.
    pub fn root() -> Self {
        Self::default()
    }

    /// A path to a top-level attribute.
    pub fn attr(name: &str) -> Self {
        Self::root().then_attr(name)
    }

    /// This path extended by an attribute or block name.
    pub fn then_attr(mut self, name: &str) -> Self {
        self.steps.push(Step::Attribute(name.to_string()));
        self
    }

    /// This path extended by a map key (or a set element's string value).
    pub fn then_key(mut self, key: &str) -> Self {
        self.steps.push(Step::Key(key.to_string()));
        self
    }

    /// This path extended by a list index.
    pub fn then_index(mut self, index: i64) -> Self {
        self.steps.push(Step::Index(index));
        self
    }

    pub fn is_root(&self) -> bool {
        self.steps.is_empty()
    }
}

impl fmt::Display for AttributePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, step) in self.steps.iter().enumerate() {
            match step {
                Step::Attribute(name) if i == 0 => write!(f, "{name}")?,
                Step::Attribute(name) => write!(f, ".{name}")?,
                Step::Key(key) => write!(f, "[{key:?}]")?,
                Step::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_reads_like_terraform_references() {
        let path = AttributePath::attr("condition").then_attr("title");
        assert_eq!(path.to_string(), "condition.title");
        let path = AttributePath::attr("members")
            .then_key("user:a@b.c")
            .then_index(2);
        assert_eq!(path.to_string(), "members[\"user:a@b.c\"][2]");
    }
}
