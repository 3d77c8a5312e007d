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
        // The fibers switch stacks by hand (emu.cpp), returning where no call
        // was made: a shadow stack would refuse that, so this object must not
        // claim to support one.
        .flag_if_supported("-fcf-protection=none")
        .compile("zkfarm_kernels_emu");
}
