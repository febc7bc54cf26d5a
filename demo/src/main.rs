//! keel-demo on a host: the same server the image runs as `/usr/libexec/keel-demo` (see the library).

fn main() -> std::process::ExitCode {
    keel_demo::main()
}
