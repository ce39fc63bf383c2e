fn main() -> std::process::ExitCode {
    common::cli::main("image-history", image_history::run)
}
