//! Generates the snapshot metadata types from `proto/snapshot.proto` (needs `protoc`:
//! Debian's `protobuf-compiler`, installed by scripts/install-tools.sh).

fn main() -> std::io::Result<()> {
    let proto_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../proto");
    let schema = proto_dir.join("snapshot.proto");
    println!("cargo:rerun-if-changed={}", schema.display());
    prost_build::Config::new().compile_protos(&[schema], &[proto_dir])
}
