fn main() -> std::process::ExitCode {
    common::cli::main("image-stack", image_stack::run)
}
