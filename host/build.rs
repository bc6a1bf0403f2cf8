//! Generates the protobuf types of `proto/` (the snapshot metadata note, plans, attestations;
//! needs `protoc`: Debian's `protobuf-compiler`, installed by scripts/install-tools.sh).

fn main() -> std::io::Result<()> {
    let proto_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../proto");
    let schemas: Vec<_> = ["snapshot.proto", "plan.proto", "attestation.proto"]
        .iter()
        .map(|name| proto_dir.join(name))
        .collect();
    for schema in &schemas {
        println!("cargo:rerun-if-changed={}", schema.display());
    }
    prost_build::Config::new().compile_protos(&schemas, &[proto_dir])
}
