//! Untrusted import ids and IAP resource names: every parser answers Ok or Err, never panics,
//! and what it accepts prints back to a name it accepts again.
#![no_main]

use iaprun::names;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(resource) = names::IapResource::parse(text) {
        let printed = resource.to_string();
        let again = names::IapResource::parse(&printed).unwrap_or_else(|e| {
            panic!("{text:?} parsed, but its display {printed:?} does not: {e}")
        });
        assert_eq!(again, resource, "{text:?}");
    }
    let _ = names::parse_service_id(text);
    let _ = names::parse_backend_service_id(text);
    let _ = iaprun::names::parse_access_binding_id(text);
    for check in [
        names::is_project,
        names::is_project_number,
        names::is_region,
        names::is_run_service,
        names::is_compute_name,
    ] {
        let _ = check(text);
    }
});
