fn main() -> std::process::ExitCode {
    common::cli::main("layer-diff", layer_diff::run)
}
