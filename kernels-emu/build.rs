//! Compiles the CUDA units as host C++ against the emulation prelude.

fn main() {
    let cuda = std::path::Path::new("../kernels/cuda");
    println!("cargo:rerun-if-changed=emu");
    println!("cargo:rerun-if-changed=../kernels/cuda");
    cc::Build::new()
        .cpp(true)
        .std("c++20")
        .file("emu/emu.cpp")
        .include(cuda)
        .include("emu")
        .opt_level(3)
        .flag_if_supported("-Wno-unknown-pragmas")
        .compile("zkfarm_kernels_emu");
}
