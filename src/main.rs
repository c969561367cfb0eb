//! terraform-provider-iaprun: the plugin binary Terraform starts.

use std::io::Write;
use std::process::ExitCode;

// One thread: a call is read, answered and written on the thread that polls the socket, with no
// wake-up of another worker in between, and one allocator arena. Nothing in the provider blocks a
// thread (DNS and file reads of the HTTP clients, and the gcloud CLI that application default
// credentials may fall back to, go to tokio's blocking pool).
#[tokio::main(flavor = "current_thread")]
// `default()` keeps working when the provider struct gains fields.
#[allow(clippy::default_constructed_unit_structs)]
async fn main() -> ExitCode {
    iaprun::logging::init();
    match iaprun::protocol::serve(iaprun::provider::IaprunProvider::default()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // Plain text: whoever reads this is most likely a person who ran the binary by hand.
            let _ = writeln!(std::io::stderr(), "{error}");
            ExitCode::FAILURE
        }
    }
}
