//! `iaprun-emulator`: serve the emulated Google APIs until killed.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use iaprun::emulator::{serve_state, EmulatorState, Options};

const USAGE: &str = "\
iaprun-emulator: an offline emulator of the Google APIs used by terraform-provider-iaprun
(Cloud Run Admin v2, IAP v1, Compute v1, Service Usage, Resource Manager, OAuth token endpoint).

Usage: iaprun-emulator [--listen ADDR] [--seed FILE] [--request-log FILE] [--latency-ms N]
                       [--operation-delay-ms N] [--open]

  --listen ADDR             address to bind (default 127.0.0.1:0, a free port)
  --seed FILE               build the world in FILE (JSON: projects, Cloud Run services, load
                            balancers, IAP settings and policies) before serving; see docs/emulator.md
  --request-log FILE        append one JSON line per API request: {method, path, query, body, status}
  --latency-ms N            delay every API request by N milliseconds
  --operation-delay-ms N    long-running operations complete N milliseconds after they start
  --open                    accept API requests without an Authorization bearer token
  -h, --help                show this help

The first line on stdout is `iaprun-emulator listening on http://ADDR`. Point the provider at it with
IAPRUN_EMULATOR_HOST=ADDR. Admin API (request log, faults, reset, state): http://ADDR/__emulator/...,
see docs/emulator.md. Stops on SIGINT or SIGTERM.";

struct Args {
    listen: String,
    seed: Option<PathBuf>,
    options: Options,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
    let mut parsed = Args {
        listen: "127.0.0.1:0".to_string(),
        seed: None,
        options: Options::default(),
    };
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => {
                (flag.to_string(), Some(value.to_string()))
            }
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| -> Result<String, String> {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        let number = |name: &str, text: String| -> Result<u64, String> {
            text.parse()
                .map_err(|_| format!("{name} needs a whole number of milliseconds, got '{text}'"))
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--listen" => parsed.listen = value("--listen")?,
            "--seed" => parsed.seed = Some(PathBuf::from(value("--seed")?)),
            "--request-log" => {
                parsed.options.request_log = Some(PathBuf::from(value("--request-log")?))
            }
            "--latency-ms" => {
                parsed.options.latency_ms = number("--latency-ms", value("--latency-ms")?)?
            }
            "--operation-delay-ms" => {
                parsed.options.operation_delay_ms =
                    number("--operation-delay-ms", value("--operation-delay-ms")?)?
            }
            "--open" => parsed.options.open = true,
            other => return Err(format!("unknown argument '{other}'")),
        }
    }
    Ok(Some(parsed))
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed before this returns, so a signal
/// sent as soon as the address is printed is not lost.
#[cfg(unix)]
fn stop_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    })
}

#[cfg(not(unix))]
fn stop_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(Some(args)) => args,
        Ok(None) => {
            // A reader that stops early (`--help | head`) is no error: println! would panic.
            let _ = writeln!(std::io::stdout(), "{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("iaprun-emulator: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let listener = match tokio::net::TcpListener::bind(&args.listen).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("iaprun-emulator: cannot listen on {}: {error}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    let addr = match listener.local_addr() {
        Ok(addr) => addr,
        Err(error) => {
            eprintln!("iaprun-emulator: {error}");
            return ExitCode::FAILURE;
        }
    };
    let stop = match stop_signal() {
        Ok(stop) => stop,
        Err(error) => {
            eprintln!("iaprun-emulator: cannot install signal handlers: {error}");
            return ExitCode::FAILURE;
        }
    };
    let state = match EmulatorState::new(args.options) {
        Ok(state) => state,
        Err(error) => {
            eprintln!("iaprun-emulator: {error}");
            return ExitCode::FAILURE;
        }
    };
    // The world is complete before the address is printed: whoever waits for that line finds it.
    if let Some(seed) = &args.seed {
        match state.seed_file(seed).await {
            Ok(summary) => eprintln!("iaprun-emulator: seeded {summary} from {}", seed.display()),
            Err(error) => {
                eprintln!("iaprun-emulator: {error}");
                return ExitCode::FAILURE;
            }
        }
    }
    let mut stdout = std::io::stdout();
    let _ =
        writeln!(stdout, "iaprun-emulator listening on http://{addr}").and_then(|_| stdout.flush());
    match serve_state(listener, state, stop).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("iaprun-emulator: {error}");
            ExitCode::FAILURE
        }
    }
}
