//! The go-plugin side of the process: the controller Terraform calls to shut us down, the stdio and
//! broker services it probes for, and process behaviour (SIGINT, parent exit).

use std::time::Duration;

use tokio::sync::watch;
use tonic::{Request, Response, Status};

use super::proto::plugin as wire;

/// Stops the server when Terraform closes the provider (`plugin.GRPCController/Shutdown`).
pub struct Controller {
    stop: watch::Sender<bool>,
}

impl Controller {
    /// A controller that raises `stop` on Shutdown.
    pub fn new(stop: watch::Sender<bool>) -> Self {
        Self { stop }
    }
}

#[tonic::async_trait]
impl wire::grpc_controller_server::GrpcController for Controller {
    async fn shutdown(
        &self,
        _request: Request<wire::Empty>,
    ) -> Result<Response<wire::Empty>, Status> {
        tracing::debug!(rpc = "GRPCController.Shutdown", "call");
        // The reply still goes out: the server drains in-flight calls before it stops.
        self.stop.send_replace(true);
        Ok(Response::new(wire::Empty {}))
    }
}

/// `plugin.GRPCStdio`: not offered. go-plugin treats Unimplemented as "no stdio forwarding", and
/// Terraform discards forwarded output anyway; our logs go to stderr, which it reads directly.
pub struct Stdio;

#[tonic::async_trait]
impl wire::grpc_stdio_server::GrpcStdio for Stdio {}

/// `plugin.GRPCBroker`: not offered; a provider never needs extra connections.
pub struct Broker;

#[tonic::async_trait]
impl wire::grpc_broker_server::GrpcBroker for Broker {}

/// Resolves once `stop` is raised (or its sender is gone).
pub async fn stopped(mut stop: watch::Receiver<bool>) {
    // An error means every sender is dropped: nobody can ask us to keep running either.
    let _ = stop.wait_for(|raised| *raised).await;
}

/// Ignores SIGINT for the rest of the process: a Ctrl-C in the terminal reaches the whole process
/// group, and Terraform answers it by calling Stop, which must find us alive.
pub fn ignore_interrupts() -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    // Registering replaces the default disposition (terminate) right away.
    let mut interrupts = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        while interrupts.recv().await.is_some() {
            tracing::debug!("ignoring SIGINT: Terraform sends Stop for an interrupted run");
        }
    });
    Ok(())
}

/// Registers for SIGTERM and SIGHUP now, and resolves when either arrives, so that the server
/// stops as on Shutdown and removes its socket instead of dying with it in place.
pub fn terminated() -> std::io::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut hangup = signal(SignalKind::hangup())?;
    Ok(async move {
        let name = tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = hangup.recv() => "SIGHUP",
        };
        tracing::debug!(signal = name, "shutting down");
    })
}

/// Resolves when the process that started us exits (we are re-parented), so a provider whose
/// Terraform was killed does not linger. The parent is noted on the call (before the handshake),
/// not at the first poll, so a parent that exits while we start up is noticed too.
pub fn parent_exited() -> impl std::future::Future<Output = ()> + Send + 'static {
    let parent = std::os::unix::process::parent_id();
    async move {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tick.tick().await;
            if std::os::unix::process::parent_id() != parent {
                tracing::debug!("parent process exited; shutting down");
                return;
            }
        }
    }
}
