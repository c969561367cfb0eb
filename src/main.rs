//! terraform-provider-iaprun: the plugin binary Terraform starts.

use std::io::Write;
use std::process::ExitCode;

#[tokio::main]
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
