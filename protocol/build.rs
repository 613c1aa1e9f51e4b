//! Compiles the .proto files without protoc (protox parses them in pure Rust).
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["proto/device.proto", "proto/connector.proto"];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = protox::compile(protos, ["proto"])?;
    tonic_prost_build::configure().compile_fds(descriptors)?;
    Ok(())
}
