//! Test-only provider, resource and data source that exercise the engine without Google.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::schema::timeouts_block;
use super::{
    typed_data_source, AnyDataSource, AnyResource, ApplyRequest, ApplyResponse, Attr, Attribute,
    AttributePath, Block, ConfigureRequest, DataSource, DeleteRequest, Diagnostic, Diagnostics,
    ImportResponse, NestedBlock, Nesting, Provider, ReadRequest, ReadResponse, Schema,
    ValidateRequest, Value,
};

/// A provider with one resource type, `fake_thing`, whose behaviour depends on its name.
#[derive(Default)]
pub struct Fake {
    pub stopped: AtomicBool,
}

pub struct Thing;

/// The names of the `fake_thing`s whose destroy the engine planned, in this test process.
pub static DESTROYS_PLANNED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

pub fn thing_schema() -> Schema {
    Schema::new(
        1,
        Block::new("A thing.")
            .attribute(Attribute::string("id").computed())
            .attribute(Attribute::string("name").required().force_new())
            .attribute(Attribute::string("secret_wo").optional().write_only())
            .block(NestedBlock::new(
                "rule",
                Nesting::List,
                Block::new("A rule.").attribute(Attribute::number("port").optional()),
            ))
            .block(timeouts_block(true, false, true)),
    )
}

#[tonic::async_trait]
impl AnyResource<()> for Thing {
    fn type_name(&self) -> &'static str {
        "fake_thing"
    }
    fn schema(&self) -> Schema {
        thing_schema()
    }
    fn validate(&self, req: &ValidateRequest) -> Diagnostics {
        let mut d = Diagnostics::new();
        if req.config.get_str("name") == Some("invalid") {
            d.attribute_error(AttributePath::attr("name"), "Bad name", "Pick another.");
        }
        d
    }
    async fn plan_destroy(&self, _: &(), prior_state: &Value) {
        let name = prior_state.get_str("name").unwrap_or_default().to_string();
        DESTROYS_PLANNED
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(name);
    }
    async fn create(&self, _: &(), req: ApplyRequest) -> ApplyResponse {
        let mut state = req.planned_state;
        let id = format!("id-{}", state.get_str("name").unwrap_or_default());
        state.set_attr("id", Value::from(id));
        ApplyResponse {
            state,
            private: b"p1".to_vec(),
            ..Default::default()
        }
    }
    async fn read(&self, _: &(), req: ReadRequest) -> ReadResponse {
        let mut state = req.state;
        match state.get_str("name") {
            Some("gone") => state = Value::Null,
            Some("unknowable") => state.set_attr("id", Value::unknown()),
            // Left null by mistake: the service must turn it into an empty list.
            _ => state.set_attr("rule", Value::Null),
        }
        ReadResponse {
            state,
            ..Default::default()
        }
    }
    async fn update(&self, _: &(), req: ApplyRequest) -> ApplyResponse {
        ApplyResponse {
            state: req.planned_state,
            private: req.planned_private,
            ..Default::default()
        }
    }
    async fn delete(&self, _: &(), _: DeleteRequest) -> ApplyResponse {
        ApplyResponse::default()
    }
    async fn import(&self, _: &(), id: &str) -> ImportResponse {
        ImportResponse {
            state: Value::object([("id", Value::from(id)), ("name", Value::from(id))]),
            ..Default::default()
        }
    }
}

#[tonic::async_trait]
impl Provider for Fake {
    type Context = ();
    fn schema(&self) -> Schema {
        Schema::new(
            0,
            Block::new("Fake.").attribute(Attribute::string("project").optional()),
        )
    }
    fn validate(&self, config: &Value) -> Diagnostics {
        let mut d = Diagnostics::new();
        if config.get_str("project") == Some("bad") {
            d.attribute_error(AttributePath::attr("project"), "Bad project", "Fix it.");
        }
        d
    }
    async fn configure(&self, _: ConfigureRequest) -> Result<(), Diagnostics> {
        Ok(())
    }
    fn resources(&self) -> Vec<Arc<dyn AnyResource<()>>> {
        vec![Arc::new(Thing)]
    }
    fn data_sources(&self) -> Vec<Arc<dyn AnyDataSource<()>>> {
        vec![typed_data_source(Echo)]
    }
    fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
    }
}

/// The test-only data source `fake_echo`: its output is its input, upper-cased.
pub struct Echo;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct EchoModel {
    pub input: Attr<String>,
    pub output: Attr<String>,
}

#[async_trait::async_trait]
impl DataSource<()> for Echo {
    type Model = EchoModel;
    const TYPE_NAME: &'static str = "fake_echo";

    fn schema() -> Schema {
        let input = Attribute::string("input").required();
        let output = Attribute::string("output").computed();
        Schema::new(
            0,
            Block::new("Echoes its input.")
                .attribute(input.description("The text to echo."))
                .attribute(output.description("The text, upper-cased.")),
        )
    }

    fn validate(config: &EchoModel) -> Diagnostics {
        match config.input.get() {
            Some(text) if text.is_empty() => Diagnostic::error("Empty input", "Give some text.")
                .at(AttributePath::attr("input"))
                .into(),
            _ => Diagnostics::new(),
        }
    }

    async fn read(&self, _: &(), mut config: EchoModel) -> Result<EchoModel, Diagnostics> {
        config.output = Attr::Known(config.input.as_deref().unwrap_or_default().to_uppercase());
        Ok(config)
    }
}
