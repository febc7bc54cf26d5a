//! config/keel-config.schema.json is generated from the TOML types (`raw::Document`); this fails when they
//! changed and the file did not. Regenerate: `KEEL_UPDATE_SCHEMA=1 cargo test -p keel-config --test schema`.

use schemars::generate::SchemaSettings;
use schemars::transform::RecursiveTransform;
use serde_json::Value;

/// TOML has no null: an optional key is left out, never null. schemars writes `Option<T>` as "T or null".
fn drop_null(schema: &mut schemars::Schema) {
    let Some(obj) = schema.as_object_mut() else { return };
    if let Some(Value::Array(types)) = obj.get_mut("type") {
        types.retain(|t| t != "null");
        if let [only] = types.as_slice() {
            let only = only.clone();
            obj.insert("type".into(), only);
        }
    }
    if let Some(Value::Array(any_of)) = obj.get("anyOf") {
        let rest: Vec<Value> = any_of.iter().filter(|s| s.get("type") != Some(&"null".into())).cloned().collect();
        if let [Value::Object(only)] = rest.as_slice() {
            obj.remove("anyOf");
            obj.extend(only.clone());
        }
    }
}

#[test]
fn the_checked_in_json_schema_is_current() {
    let settings = SchemaSettings::draft2020_12().with_transform(RecursiveTransform(drop_null));
    let schema = settings.into_generator().into_root_schema_for::<keel_config::raw::Document>();
    let generated = serde_json::to_string_pretty(&schema).expect("schema serializes") + "\n";
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/keel-config.schema.json");
    if std::env::var_os("KEEL_UPDATE_SCHEMA").is_some() {
        std::fs::write(path, &generated).expect("write the schema");
    }
    let checked_in = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "config/keel-config.schema.json is out of date; run: KEEL_UPDATE_SCHEMA=1 cargo test -p keel-config --test schema"
    );
    assert!(!generated.contains("null"), "TOML has no null");
}
