fn main() -> std::process::ExitCode {
    common::cli::main("image-prune", image_prune::run)
}
