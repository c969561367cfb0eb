//! Untrusted DynamicValue bytes decoded against the schema types of every resource and of the
//! provider, as msgpack and as JSON. Decoding may fail; it must never panic, and a value it
//! accepts must encode again (it really is a value of the type).
#![no_main]

use iaprun::framework::Type;
use libfuzzer_sys::fuzz_target;

// The schema types the property tests decode against too.
#[path = "../../tests/support/wire.rs"]
mod wire;

fn schema_types() -> Vec<Type> {
    let mut types = wire::schema_types();
    // The smallest types too, so short inputs reach the scalar paths.
    types.extend([
        Type::String,
        Type::Bool,
        Type::Number,
        Type::set(Type::String),
    ]);
    types
}

fuzz_target!(|data: &[u8]| {
    thread_local! {
        static TYPES: Vec<Type> = schema_types();
    }
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    TYPES.with(|types| {
        let ty = &types[usize::from(selector >> 1) % types.len()];
        let decoded = if selector & 1 == 0 {
            iaprun::protocol::decode_msgpack(bytes, ty)
        } else {
            iaprun::protocol::decode_json(bytes, ty)
        };
        if let Ok(value) = decoded {
            if let Err(e) = iaprun::protocol::encode_msgpack(&value, ty) {
                panic!("decoded {value:?} but it does not encode: {e}");
            }
        }
    });
});
