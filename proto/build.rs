//! Generates the gRPC types with the protoc binary that the
//! `protoc-bin-vendored` crate ships, so building needs no protoc install.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os("PROTOC").is_none() {
        std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?);
    }
    tonic_prost_build::configure().compile_protos(&["zkfarm/v1/farm.proto"], &["."])?;
    Ok(())
}
