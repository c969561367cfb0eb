//! terraform-provider-iaprun: a Terraform provider putting Identity-Aware Proxy in front of Cloud Run,
//! and `iaprun-emulator`, an offline emulator of the Google APIs it uses.

pub mod emulator;
