//! Generates the protobuf types of `proto/` (the snapshot metadata note, plans, attestations;
//! needs `protoc`: Debian's `protobuf-compiler`, installed by scripts/install-tools.sh).

fn main() -> std::io::Result<()> {
    // Read when the script runs, not baked in when it is compiled: a build script compiled
    // in one checkout is reused by another that shares the target directory.
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let proto_dir = std::path::Path::new(&manifest_dir).join("../../proto");
    let schemas: Vec<_> = ["snapshot.proto", "plan.proto", "attestation.proto"]
        .iter()
        .map(|name| proto_dir.join(name))
        .collect();
    for schema in &schemas {
        println!("cargo:rerun-if-changed={}", schema.display());
    }
    let mut config = prost_build::Config::new();
    // The checkpoint part of the metadata is used as is by the host (and printed by
    // `inspect --json`), so it derives serde instead of being mirrored by hand.
    for message in [
        "Checkpoint",
        "MmFields",
        "ThreadCheckpoint",
        "Rseq",
        "SignalHandler",
        "EventFd",
        "Pipe",
        "Epoll",
        "EpollWatch",
        "TimerFd",
        "SignalFd",
        "Rlimit",
        "Capabilities",
        "PosixTimer",
        "ExternalPipe",
        "Socket",
        "SocketOption",
        "TcpRepair",
    ] {
        config.type_attribute(
            format!(".memzinc.snapshot.v1.{message}"),
            "#[derive(serde::Serialize, serde::Deserialize)]",
        );
    }
    // prost derives Eq for the others itself; SnapshotMeta (host side) compares checkpoints.
    for message in ["Checkpoint", "Epoll", "Socket"] {
        config.type_attribute(format!(".memzinc.snapshot.v1.{message}"), "#[derive(Eq)]");
    }
    config.compile_protos(&schemas, &[proto_dir])
}
