//! Compiles the protocol definitions in proto/ into Rust (prost messages, tonic services) without
//! needing `protoc`: protox parses the files and provides the well-known types.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let files = protox::compile(["tfplugin5.proto", "plugin.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        // Clients serve the protocol module's own tests; nothing outside the module sees them.
        .build_client(true)
        .generate_default_stubs(true)
        .compile_fds(files)?;
    Ok(())
}
