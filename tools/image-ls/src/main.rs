fn main() -> std::process::ExitCode {
    common::cli::main("image-ls", image_ls::run)
}
