fn main() -> std::process::ExitCode {
    common::cli::main("layer-pack", layer_pack::run)
}
