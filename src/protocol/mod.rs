//! Everything that knows gRPC and tfplugin5.

/// Generated protocol types; nothing generated leaves this module.
#[allow(
    clippy::all,
    clippy::pedantic,
    missing_docs,
    unreachable_pub,
    dead_code
)]
mod proto {
    pub mod tfplugin5 {
        tonic::include_proto!("tfplugin5");
    }
    pub mod plugin {
        tonic::include_proto!("plugin");
    }
}

#[allow(dead_code)] // wired into the service in the next step
pub(crate) mod codec;
