fn main() -> std::process::ExitCode {
    dit::cli::main()
}
