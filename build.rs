//! Generates the gRPC server and client code from `proto/remote.proto`, and
//! the file descriptor set that server reflection serves.
//!
//! protoc comes from `protoc-bin-vendored`, so a machine with only the Rust
//! toolchain builds the package.

use std::{env, error::Error, path::PathBuf};

fn main() -> Result<(), Box<dyn Error>> {
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    println!("cargo:rerun-if-changed=proto/remote.proto");

    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    // Output chunks decode as `bytes::Bytes`, which slices the received
    // buffer instead of copying every chunk into a new Vec.
    config.bytes([
        ".vigie.v1.Output.data",
        ".vigie.v1.ExecuteRequest.stdin",
        ".vigie.v1.ExecuteRequest.script",
        ".vigie.v1.PutFileRequest.chunk",
        ".vigie.v1.GetFileResponse.chunk",
    ]);

    let include = protoc_bin_vendored::include_path()?;
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("vigie_descriptor.bin"))
        .compile_with_config(
            config,
            &[PathBuf::from("proto/remote.proto")],
            &[PathBuf::from("proto"), include],
        )?;

    // The desktop client's views, compiled only with the `gui` feature.
    // Debug info lets the testing backend find elements by id.
    #[cfg(feature = "gui")]
    {
        println!("cargo:rerun-if-changed=ui");
        slint_build::compile_with_config(
            "ui/main.slint",
            slint_build::CompilerConfiguration::new()
                .with_style("fluent".into())
                .with_debug_info(true),
        )?;
    }
    Ok(())
}
